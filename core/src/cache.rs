//! Verified-token cache: signature checks are the expensive part of a request, and agents
//! reuse one token for many calls. A token verified once is remembered, by its SHA-256, until
//! it expires. Bounded; only successes are cached. Belongs to one configuration: a new
//! configuration starts with an empty cache.

use std::collections::{HashMap, VecDeque};

pub const DEFAULT_CAPACITY: usize = 1024;

/// Remembers what verifying a token produced (`T`: the agent, or a transaction).
pub struct TokenCache<T> {
    capacity: usize,
    entries: HashMap<[u8; 32], Cached<T>>,
    /// Insertion order, for evicting the oldest entry when full.
    order: VecDeque<[u8; 32]>,
}

struct Cached<T> {
    value: T,
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

    pub fn key(token: &[u8]) -> [u8; 32] {
        hmac_sha256::Hash::hash(token)
    }

    pub fn get(&self, key: &[u8; 32], now_s: u64) -> Option<&T> {
        self.entries
            .get(key)
            .filter(|e| now_s < e.valid_until_s)
            .map(|e| &e.value)
    }

    pub fn insert(&mut self, key: [u8; 32], issuer: &str, value: T, valid_until_s: u64) {
        if self.capacity == 0 {
            return;
        }
        let entry = Cached {
            value,
            issuer: issuer.to_owned(),
            valid_until_s,
        };
        if let Some(existing) = self.entries.get_mut(&key) {
            *existing = entry;
            return;
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        self.order.push_back(key);
        self.entries.insert(key, entry);
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

    #[test]
    fn entries_expire_and_capacity_holds() {
        let mut cache = TokenCache::with_capacity(2);
        let (a, b, c) = (
            TokenCache::<&str>::key(b"a"),
            TokenCache::<&str>::key(b"b"),
            TokenCache::<&str>::key(b"c"),
        );
        cache.insert(a, "iss", "a", 100);
        assert_eq!(cache.get(&a, 99), Some(&"a"));
        assert!(cache.get(&a, 100).is_none(), "expired at valid_until");
        cache.insert(b, "iss", "b", 100);
        cache.insert(c, "other", "c", 100);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&a, 0).is_none(), "oldest evicted");
        assert!(cache.get(&c, 0).is_some());
        cache.forget_issuer("iss");
        assert_eq!((cache.len(), cache.get(&c, 0)), (1, Some(&"c")));
        let mut disabled = TokenCache::with_capacity(0);
        disabled.insert(a, "iss", "a", 100);
        assert!(disabled.is_empty());
    }
}
