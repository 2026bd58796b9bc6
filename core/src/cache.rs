//! Verified-token cache: signature checks are the expensive part of a request, and agents
//! reuse one token for many calls. A token verified once is remembered, by its [`TokenKey`],
//! until it expires. Bounded (`limits.max_cached_tokens`). The same structure remembers agent
//! tokens refused for good (`Runtime::rejected`) and policy answers by the key of their
//! input (`Runtime::decisions`, `decision_cache`). Belongs to one configuration: a new
//! configuration starts with an empty cache.
//!
//! When full, the oldest entry not used since it was last considered goes (second chance):
//! a token in steady use survives a stream of tokens seen once, such as an agent that mints
//! a fresh token per call.

use siphasher::sip128::{Hasher128, SipHasher24};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

pub const DEFAULT_CAPACITY: usize = 1024;

/// A presented token's key in the token caches (and a remembered answer's, from its input:
/// `decision_cache::InputReads::key`): SipHash-2-4 of its bytes, 128 bits, under a key secret
/// to the VM ([`SecretHasher`]).
///
/// Not SHA-256: a token is hashed on every request, and in Wasm SipHash takes about a tenth of
/// the time. Collision resistance against the key's holder is not needed here. An entry holds
/// what verifying the token that made it produced, so a token that collided with it would get
/// that token's verified identity (or its refusal), which only someone holding that token's
/// bytes could aim at, and they could present the token itself. The secret key puts even
/// chance collisions out of an attacker's control: 2^-128 per pair of tokens. A remembered
/// answer is another matter: whoever sends both requests could search for two that collide,
/// one allowed and one not, if they knew the key; so answers are remembered only under a key
/// the host's randomness made (`Runtime::with_secret_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey(u128);

/// SipHash-2-4 with a 128-bit output under one VM's secret key: a keyed pseudo-random
/// function, for the [`TokenKey`]s of tokens, agents and remembered answers, and for
/// decision ids (`record::DecisionIds`).
#[derive(Clone)]
pub struct SecretHasher {
    key: [u8; 16],
}

impl SecretHasher {
    /// `key`: random bytes from the host, once per VM.
    pub fn new(key: [u8; 16]) -> Self {
        Self { key }
    }

    pub fn digest(&self, bytes: &[u8]) -> [u8; 16] {
        let mut hasher = SipHasher24::new_with_key(&self.key);
        hasher.write(bytes);
        hasher.finish128().as_bytes()
    }

    pub fn key(&self, token: &[u8]) -> TokenKey {
        TokenKey(u128::from_le_bytes(self.digest(token)))
    }
}

/// Remembers what verifying a token produced (`T`: the agent, or a transaction), or a
/// policy's answer, by its [`TokenKey`].
pub struct TokenCache<T> {
    capacity: usize,
    entries: HashMap<TokenKey, Cached<T>>,
    /// Eviction candidates, oldest first; entries used since they were queued go round again.
    order: VecDeque<TokenKey>,
}

struct Cached<T> {
    value: T,
    /// Used since it was (re)queued in `order`.
    used: Cell<bool>,
    /// The issuer whose keys verified the token.
    issuer: String,
    /// Unix seconds after which the token is expired (its `exp` plus the clock skew).
    valid_until_s: u64,
}

impl<T> Default for TokenCache<T> {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl<T> TokenCache<T> {
    /// A capacity of 0 disables caching.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether anything can be remembered at all (a capacity above 0).
    pub fn remembers(&self) -> bool {
        self.capacity > 0
    }

    pub fn get(&self, key: &TokenKey, now_s: u64) -> Option<&T> {
        let entry = self.entries.get(key).filter(|e| now_s < e.valid_until_s)?;
        entry.used.set(true);
        Some(&entry.value)
    }

    pub fn insert(&mut self, key: TokenKey, issuer: &str, value: T, valid_until_s: u64) {
        if self.capacity == 0 {
            return;
        }
        let entry = Cached {
            value,
            used: Cell::new(false),
            issuer: issuer.to_owned(),
            valid_until_s,
        };
        if let Some(existing) = self.entries.get_mut(&key) {
            *existing = entry;
            return;
        }
        self.evict_one_if_full();
        self.order.push_back(key);
        self.entries.insert(key, entry);
    }

    /// Second chance: a used entry is requeued with its mark cleared, the first unused one
    /// goes. Each entry is requeued at most once per call, so the work stays bounded by the
    /// capacity (and is one step when entries are not reused).
    fn evict_one_if_full(&mut self) {
        let mut requeued = 0;
        while self.entries.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                return;
            };
            let used = self.entries.get(&oldest).is_some_and(|e| e.used.take());
            if used && requeued < self.capacity {
                requeued += 1;
                self.order.push_back(oldest);
            } else {
                self.entries.remove(&oldest);
            }
        }
    }

    /// Drops every token of `issuer` (its key set changed).
    pub fn forget_issuer(&mut self, issuer: &str) {
        self.entries.retain(|_, cached| cached.issuer != issuer);
        let entries = &self.entries;
        self.order.retain(|key| entries.contains_key(key));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: &[u8]) -> TokenKey {
        SecretHasher::new([1; 16]).key(token)
    }

    #[test]
    fn token_keys_depend_on_every_byte_and_on_the_vm_secret() {
        let token = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl".to_vec();
        let mut keys = std::collections::HashSet::new();
        keys.insert(key(&token));
        for at in 0..token.len() {
            let mut changed = token.clone();
            changed[at] ^= 1;
            assert!(keys.insert(key(&changed)), "byte {at}");
        }
        let mut longer = token.clone();
        longer.push(0);
        assert!(keys.insert(key(&longer)));
        assert_ne!(SecretHasher::new([2; 16]).key(&token), key(&token));
        assert_eq!(SecretHasher::new([1; 16]).key(&token), key(&token));
    }

    #[test]
    fn entries_expire_and_capacity_holds() {
        let mut cache = TokenCache::with_capacity(2);
        let (a, b, c) = (key(b"a"), key(b"b"), key(b"c"));
        cache.insert(a, "iss", "a", 100);
        assert_eq!(cache.get(&a, 99), Some(&"a"));
        assert!(cache.get(&a, 100).is_none(), "expired at valid_until");
        cache.insert(b, "iss", "b", 100);
        cache.insert(c, "other", "c", 100);
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&b, 0).is_none(),
            "the oldest unused entry evicted"
        );
        assert!(
            cache.get(&a, 0).is_some(),
            "`a` was used, so it had a second chance"
        );
        assert!(cache.get(&c, 0).is_some());
        cache.forget_issuer("iss");
        assert_eq!((cache.len(), cache.get(&c, 0)), (1, Some(&"c")));
        let mut disabled = TokenCache::with_capacity(0);
        disabled.insert(a, "iss", "a", 100);
        assert!(disabled.is_empty());
    }

    #[test]
    fn a_token_in_use_outlives_a_stream_of_one_off_tokens() {
        let key = |i: u32| key(&i.to_be_bytes());
        let mut cache = TokenCache::with_capacity(4);
        cache.insert(key(0), "iss", 0, 100);
        for i in 1..1000 {
            assert_eq!(
                cache.get(&key(0), 0),
                Some(&0),
                "the steady token, round {i}"
            );
            cache.insert(key(i), "iss", i, 100);
            assert!(cache.len() <= 4);
        }
        // The one-off tokens came and went oldest first.
        assert!(cache.get(&key(995), 0).is_none());
        assert!(cache.get(&key(999), 0).is_some());
        // Once it is no longer used, the steady token is evicted like any other.
        for i in 1000..1004 {
            cache.insert(key(i), "iss", i, 100);
        }
        assert!(cache.get(&key(0), 0).is_none());
    }

    #[test]
    fn when_every_entry_is_in_use_the_oldest_still_goes() {
        let key = |i: u32| key(&i.to_be_bytes());
        let mut cache = TokenCache::with_capacity(3);
        for i in 0..3 {
            cache.insert(key(i), "iss", i, 100);
        }
        for i in 0..3 {
            assert!(cache.get(&key(i), 0).is_some());
        }
        cache.insert(key(3), "iss", 3, 100);
        assert_eq!(cache.len(), 3);
        assert!(
            cache.get(&key(0), 0).is_none(),
            "oldest evicted after one round"
        );
        assert!((1..4).all(|i| cache.get(&key(i), 0).is_some()));
    }
}
