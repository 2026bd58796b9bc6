//! Per-VM mutable state of one configuration: the verified-token caches, remembered
//! verdicts and the fetched key sets of remote issuers. `Compiled` never changes after
//! `on_configure`; this does.

use crate::cache::{SecretHasher, TokenCache};
use crate::config::{KeySource, Loaded};
use crate::input::AgentInputs;
use crate::policy::Verdict;
use crate::reason::Reason;
use crate::remote::{FetchResponse, KeyStore, KeyWork, SharedStore};
use crate::token::{Agent, Grant, Transaction};

pub struct Runtime {
    /// Verified agent tokens.
    pub cache: TokenCache<Agent>,
    /// Verified transaction tokens.
    pub transactions: TokenCache<Transaction>,
    /// Verified grants.
    pub grants: TokenCache<Grant>,
    /// Agent tokens refused for good (a failed signature, an expired token, ...).
    pub rejected: TokenCache<Reason>,
    /// Transaction tokens refused for good, likewise: an agent sending forged ones with each
    /// request costs one signature check per token, not one per request.
    pub rejected_transactions: TokenCache<Reason>,
    /// Grants refused for good, likewise.
    pub rejected_grants: TokenCache<Reason>,
    /// Verdicts the policy allowed to be remembered (`cache_seconds`), by input key: none
    /// until [`Runtime::with_secret_key`].
    pub decisions: TokenCache<Verdict>,
    /// The room `decisions` gets with a secret key (`limits.max_cached_decisions`).
    decisions_room: usize,
    /// Keys presented tokens in every token cache above, remembered verdicts' inputs, and
    /// agents in `agent_inputs`.
    pub hasher: SecretHasher,
    /// Agents' input objects, remembered while the same agent keeps asking.
    pub agent_inputs: AgentInputs,
    pub keys: KeyStore,
    /// Agent-token cache lookups since the host last took them (for its metrics).
    pub cache_stats: CacheStats,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Tokens (agent, transaction, grant) refused again from memory, without a signature
    /// check.
    pub rejected: u64,
    /// Verdicts answered from memory, and looked for there in vain.
    pub decision_hits: u64,
    pub decision_misses: u64,
}

impl Runtime {
    /// Fresh state for `loaded`. `vm_nonce` tells this VM's fetch leases apart from other
    /// VMs' (random per VM). The caches are keyed from the nonce, and no policy answer is
    /// remembered, until [`Runtime::with_secret_key`] gives them a secret key.
    pub fn new(loaded: &Loaded, vm_nonce: u64) -> Self {
        let remotes = match loaded {
            Loaded::Empty => Vec::new(),
            Loaded::Ready(compiled) => compiled
                .key_issuers()
                .map(|issuer| match &issuer.keys {
                    KeySource::Remote(remote) => Some(remote.clone()),
                    KeySource::Local(_) => None,
                })
                .collect(),
        };
        let (capacity, decisions) = match loaded {
            Loaded::Empty => (0, 0),
            Loaded::Ready(compiled) => (compiled.max_cached_tokens, compiled.max_cached_decisions),
        };
        Runtime {
            cache: TokenCache::with_capacity(capacity),
            transactions: TokenCache::with_capacity(capacity),
            grants: TokenCache::with_capacity(capacity),
            rejected: TokenCache::with_capacity(capacity),
            rejected_transactions: TokenCache::with_capacity(capacity),
            rejected_grants: TokenCache::with_capacity(capacity),
            decisions: TokenCache::with_capacity(0),
            decisions_room: decisions,
            keys: KeyStore::new(remotes, vm_nonce),
            cache_stats: CacheStats::default(),
            hasher: SecretHasher::new(u128::from(vm_nonce).to_le_bytes()),
            agent_inputs: AgentInputs::with_capacity(capacity),
        }
    }

    /// Keys the caches with `key`, random bytes the host gave the VM once, and makes room for
    /// remembered answers. Tokens do not need the key secret to be told apart, but remembered
    /// answers do (`cache::TokenKey` says why): without one, none is remembered.
    pub fn with_secret_key(mut self, key: [u8; 16]) -> Self {
        self.hasher = SecretHasher::new(key);
        self.decisions = TokenCache::with_capacity(self.decisions_room);
        self
    }

    /// Periodic key work (see [`KeyStore::tick`]).
    pub fn tick(&mut self, store: &dyn SharedStore, now_ms: u64) -> KeyWork {
        let work = self.keys.tick(store, now_ms);
        self.forget_changed(&work);
        work
    }

    /// Installs key sets other VMs already fetched, without starting a fetch (for
    /// `on_configure`, where not every host allows outbound calls).
    pub fn adopt(&mut self, store: &dyn SharedStore) -> KeyWork {
        let work = self.keys.adopt(store);
        self.forget_changed(&work);
        work
    }

    /// The answer to a key fetch (see [`KeyStore::on_response`]).
    pub fn on_key_response(
        &mut self,
        token: u32,
        response: &FetchResponse,
        store: &dyn SharedStore,
        now_ms: u64,
    ) -> KeyWork {
        let work = self.keys.on_response(token, response, store, now_ms);
        self.forget_changed(&work);
        work
    }

    /// Tokens verified with a key set that has since changed may have used a key that is gone:
    /// verify them again.
    fn forget_changed(&mut self, work: &KeyWork) {
        for issuer in &work.issuer_names_changed {
            self.cache.forget_issuer(issuer);
            self.transactions.forget_issuer(issuer);
            self.grants.forget_issuer(issuer);
            self.rejected.forget_issuer(issuer);
            self.rejected_transactions.forget_issuer(issuer);
            self.rejected_grants.forget_issuer(issuer);
        }
    }
}
