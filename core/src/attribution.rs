//! Attribution: from the request's credentials to one accountable identity. The agent token
//! says who the agent is and for whom it acts; a transaction token, when configured, says
//! which task it is on; the registry says whether it may act at all and who owns it; the
//! revocation lists can void any of it. Every step can deny with its own reason.

use crate::cache::{SecretHasher, TokenCache, TokenKey};
use crate::config::{Compiled, KeySource};
use crate::input::HeaderPairs;
use crate::reason::Reason;
use crate::remote::{KeyLookup, KeyStore};
use crate::revocation::{Presented, Revoked};
use crate::runtime::Runtime;
use crate::token::{
    authenticate, extract_token, unverified_text_claim, verify_grant, verify_transaction, Agent,
    Grant, Transaction,
};

/// The grants a request presented: those that apply to it, and those dropped, with why.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GrantSet {
    pub valid: Vec<Grant>,
    pub dropped: Vec<DroppedGrant>,
}

/// A presented grant that does not apply (README, "grants").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DroppedGrant {
    /// Absent when the grant could not be read.
    pub jti: Option<String>,
    pub reason: &'static str,
}

/// Why a request is not attributed to an identity that may act, with as much of the identity
/// as was established (so even denials are attributed).
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub reason: Reason,
    pub agent: Option<Box<Agent>>,
    pub revoked: Option<Revoked>,
}

impl From<Reason> for Denial {
    fn from(reason: Reason) -> Self {
        Denial {
            reason,
            agent: None,
            revoked: None,
        }
    }
}

/// The agent behind the request, with delegation, task, registry standing and owner, or the
/// reason it may not act.
pub fn attribute(
    compiled: &Compiled,
    runtime: &mut Runtime,
    headers: &HeaderPairs,
    now_ms: u64,
) -> Result<Agent, Denial> {
    let token = extract_token(compiled, headers)?;
    let mut agent = verified_agent(compiled, runtime, token, now_ms)?;
    let deny = |reason: Reason, agent: &Agent| Denial {
        reason,
        agent: Some(Box::new(agent.clone())),
        revoked: None,
    };
    if let Err(reason) = apply_transaction(compiled, runtime, headers, &mut agent, now_ms) {
        return Err(deny(reason, &agent));
    }
    if let Some(registry) = &compiled.registry {
        if let Some(owner) = registry.owner_of(&agent.id) {
            agent.owner = Some(owner.to_owned());
        }
        match registry.check(&agent.id, agent.purpose.as_deref()) {
            Ok(registered) => agent.registered = Some(registered),
            Err(reason) => return Err(deny(reason, &agent)),
        }
    }
    let revoked = compiled.revocations.check(&Presented {
        issuer: &agent.issuer,
        kid: agent.kid.as_deref(),
        jti: agent.jti.as_deref(),
        agent_id: &agent.id,
        owner: agent.owner.as_deref(),
        delegation: &agent.delegation,
    });
    if let Some((reason, revoked)) = revoked {
        return Err(Denial {
            reason,
            agent: Some(Box::new(agent)),
            revoked: Some(revoked),
        });
    }
    Ok(agent)
}

/// The agent of a token, from the cache or by verification (then remembered). A refused
/// token is remembered too (see [`stays_refused`]), so a client repeating one costs no
/// second signature check.
fn verified_agent(
    compiled: &Compiled,
    runtime: &mut Runtime,
    token: &[u8],
    now_ms: u64,
) -> Result<Agent, Reason> {
    let token = HashedToken::new(compiled, &runtime.hasher, token)?;
    let (agent, hit) = verified_or_refused(
        compiled,
        (&mut runtime.cache, &mut runtime.rejected),
        &mut runtime.cache_stats.rejected,
        &runtime.keys,
        &token,
        now_ms,
        |agent: &Agent| agent.issuer.as_str(),
        authenticate,
    )?;
    if hit {
        runtime.cache_stats.hits += 1;
    } else {
        runtime.cache_stats.misses += 1;
    }
    Ok(agent)
}

/// A presented token, its size checked and its key in every token cache taken once.
struct HashedToken<'a> {
    bytes: &'a [u8],
    key: TokenKey,
}

impl<'a> HashedToken<'a> {
    /// Size first: no cache hashes arbitrarily large junk.
    fn new(compiled: &Compiled, hasher: &SecretHasher, bytes: &'a [u8]) -> Result<Self, Reason> {
        if bytes.len() > compiled.max_token_bytes {
            return Err(Reason::TokenTooLarge);
        }
        Ok(HashedToken {
            bytes,
            key: hasher.key(bytes),
        })
    }
}

/// Verification through a cache of verified tokens, the first of `caches`; true when it
/// answered. A remembered token is only as good as the keys that verified it. A refusal that
/// would stand again ([`stays_refused`]) is remembered in the second and answered from there
/// (counted in `refused_again`): a client repeating a refused token costs no second
/// signature check.
#[allow(clippy::too_many_arguments)]
fn verified_or_refused<T: Clone>(
    compiled: &Compiled,
    caches: (&mut TokenCache<T>, &mut TokenCache<Reason>),
    refused_again: &mut u64,
    fetched: &KeyStore,
    token: &HashedToken,
    now_ms: u64,
    issuer_of: impl Fn(&T) -> &str,
    verify: impl Fn(&Compiled, &KeyStore, &[u8], u64) -> Result<(T, u64), Reason>,
) -> Result<(T, bool), Reason> {
    let (verified, refused) = caches;
    let now_s = now_ms / 1000;
    if let Some(reason) = refused.get(&token.key, now_s) {
        *refused_again += 1;
        return Err(*reason);
    }
    if let Some(value) = verified.get(&token.key, now_s) {
        if remote_keys_expired(compiled, fetched, issuer_of(value), now_ms) {
            return Err(Reason::KeysUnavailable);
        }
        return Ok((value.clone(), true));
    }
    match verify(compiled, fetched, token.bytes, now_ms) {
        Ok((value, expired_from_s)) => {
            verified.insert(token.key, issuer_of(&value), value.clone(), expired_from_s);
            Ok((value, false))
        }
        Err(reason) => {
            remember_refusal(compiled, refused, token, reason, now_s);
            Err(reason)
        }
    }
}

/// How long a refused token is answered from memory. A changed key set of its
/// issuer forgets it sooner (`Runtime::forget_changed`); a new configuration starts empty.
const REJECTED_SECONDS: u64 = 600;

/// Remembers a refused token (agent, transaction, grant) when the refusal would stand again.
/// Only tokens naming a configured issuer: their refusals are the ones that cost a signature
/// check, and the entry then holds the configuration's issuer name, never a string the
/// sender chose.
fn remember_refusal(
    compiled: &Compiled,
    rejected: &mut TokenCache<Reason>,
    token: &HashedToken,
    reason: Reason,
    now_s: u64,
) {
    if !stays_refused(reason) {
        return;
    }
    let issuer = unverified_text_claim(token.bytes, "iss")
        .and_then(|iss| compiled.key_issuers().find(|i| i.issuer == iss));
    if let Some(issuer) = issuer {
        rejected.insert(
            token.key,
            &issuer.issuer,
            reason,
            now_s.saturating_add(REJECTED_SECONDS),
        );
    }
}

/// Whether a token refused for `reason` would be refused again for it, whatever the clock
/// and the fetched keys say (a changed key set forgets the token anyway). Most such refusals
/// cost a signature check: a failed signature, and every claim checked after it (expired,
/// too long-lived, another audience, claims the identity mapping rejects).
fn stays_refused(reason: Reason) -> bool {
    !matches!(
        reason,
        Reason::TokenNotYetValid | Reason::KeysUnavailable | Reason::KeyUnknown
    )
}

fn remote_keys_expired(compiled: &Compiled, fetched: &KeyStore, issuer: &str, now_ms: u64) -> bool {
    compiled.key_issuers().enumerate().any(|(index, i)| {
        i.issuer == issuer
            && matches!(i.keys, KeySource::Remote(_))
            && matches!(fetched.lookup(index, now_ms), KeyLookup::Unavailable)
    })
}

/// With transaction tokens configured: the token of the header (required or not), verified
/// and bound to the agent. Its `txn` becomes the task, its `scope` the purpose.
fn apply_transaction(
    compiled: &Compiled,
    runtime: &mut Runtime,
    headers: &HeaderPairs,
    agent: &mut Agent,
    now_ms: u64,
) -> Result<(), Reason> {
    let Some(config) = &compiled.transaction_tokens else {
        return Ok(());
    };
    let mut values = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(config.header.as_bytes()))
        .map(|(_, value)| value.trim_ascii());
    let token = match (values.next(), values.next()) {
        (None, _) if config.required => return Err(Reason::TxnTokenMissing),
        (None, _) => return Ok(()),
        // Repeated, or folded into one comma-joined value: never pick one.
        (Some(_), Some(_)) => return Err(Reason::TxnTokenInvalid),
        (Some(value), None) if value.is_empty() || value.contains(&b',') => {
            return Err(Reason::TxnTokenInvalid)
        }
        (Some(value), None) => value,
    };
    let (transaction, _) = HashedToken::new(compiled, &runtime.hasher, token)
        .and_then(|token| {
            verified_or_refused(
                compiled,
                (
                    &mut runtime.transactions,
                    &mut runtime.rejected_transactions,
                ),
                &mut runtime.cache_stats.rejected,
                &runtime.keys,
                &token,
                now_ms,
                |transaction: &Transaction| transaction.issuer.as_str(),
                verify_transaction,
            )
        })
        .map_err(|reason| match reason {
            Reason::KeysUnavailable => reason,
            _ => Reason::TxnTokenInvalid,
        })?;
    // Binding: the transaction is about the same subject as the agent token.
    if transaction.subject != agent.subject {
        return Err(Reason::TxnTokenMismatch);
    }
    agent.task = Some(transaction.id);
    if transaction.purpose.is_some() {
        agent.purpose = transaction.purpose;
    }
    agent.task_context = transaction.context;
    Ok(())
}

/// The grants of the request's grant header(s): each verified (through the cache), then
/// checked against this request's agent, task, revocations and clock. Never denies the
/// request: a grant that does not apply is dropped, with its reason, and the policy decides
/// without it.
pub fn collect_grants(
    compiled: &Compiled,
    runtime: &mut Runtime,
    headers: &HeaderPairs,
    agent: &Agent,
    now_ms: u64,
) -> GrantSet {
    let mut set = GrantSet::default();
    let Some(config) = &compiled.grants else {
        return set;
    };
    // Repeated headers, or several comma-separated tokens in one: a JWT has no comma.
    let tokens = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(config.header.as_bytes()))
        .flat_map(|(_, value)| value.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty());
    for (index, token) in tokens.enumerate() {
        if index >= config.max_per_request {
            // One entry for all of them: a request's record (and the work on it) stays
            // bounded however many the client sends.
            set.dropped.push(DroppedGrant {
                jti: None,
                reason: "too_many",
            });
            break;
        }
        let verified = HashedToken::new(compiled, &runtime.hasher, token).and_then(|token| {
            verified_or_refused(
                compiled,
                (&mut runtime.grants, &mut runtime.rejected_grants),
                &mut runtime.cache_stats.rejected,
                &runtime.keys,
                &token,
                now_ms,
                |grant: &Grant| grant.issuer.as_str(),
                verify_grant,
            )
        });
        let grant = match verified {
            Ok((grant, _)) => grant,
            Err(reason) => {
                // A grant refused only for its window was signed by the approval service, so
                // its `jti` is worth recording; any other failure leaves nothing to trust.
                let window_only = matches!(
                    reason,
                    Reason::TokenExpired | Reason::TokenNotYetValid | Reason::TokenLifetimeExceeded
                );
                set.dropped.push(DroppedGrant {
                    jti: window_only
                        .then(|| unverified_text_claim(token, "jti"))
                        .flatten(),
                    reason: grant_drop_reason(reason),
                });
                continue;
            }
        };
        let skew_ns = config.issuer.clock_skew_seconds * 1_000_000_000;
        let now_ns = now_ms * 1_000_000;
        let reason = if grant.agent != agent.id {
            Some("other_agent")
        } else if grant.task.is_some() && grant.task != agent.task {
            Some("other_task")
        } else if compiled.revocations.revokes_jti(&grant.jti) {
            Some("revoked")
        } else if now_ns >= grant.expires_at_ns.saturating_add(skew_ns) {
            Some("expired")
        } else {
            None
        };
        match reason {
            Some(reason) => set.dropped.push(DroppedGrant {
                jti: Some(grant.jti),
                reason,
            }),
            None => set.valid.push(grant),
        }
    }
    set
}

/// Why a grant that failed verification is dropped.
fn grant_drop_reason(reason: Reason) -> &'static str {
    match reason {
        Reason::TokenExpired => "expired",
        Reason::TokenNotYetValid => "not_yet_valid",
        Reason::TokenLifetimeExceeded => "too_long",
        Reason::KeysUnavailable => "keys_unavailable",
        Reason::TokenTooLarge => "too_large",
        _ => "invalid",
    }
}
