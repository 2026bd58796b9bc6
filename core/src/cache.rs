//! Verified-token cache: signature checks are the expensive part of a request, and agents
//! reuse one token for many calls. A token verified once is remembered, by its SHA-256, until
//! it expires. Bounded; only successes are cached. Belongs to one configuration: a new
//! configuration starts with an empty cache.

use crate::token::Agent;
use std::collections::{HashMap, VecDeque};

pub const DEFAULT_CAPACITY: usize = 1024;

pub struct TokenCache {
    capacity: usize,
    entries: HashMap<[u8; 32], CachedAgent>,
    /// Insertion order, for evicting the oldest entry when full.
    order: VecDeque<[u8; 32]>,
}

struct CachedAgent {
    agent: Agent,
    /// Unix seconds after which the token is expired (its `exp` plus the clock skew).
    valid_until_s: u64,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl TokenCache {
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

    pub fn get(&self, key: &[u8; 32], now_s: u64) -> Option<&Agent> {
        self.entries
            .get(key)
            .filter(|e| now_s < e.valid_until_s)
            .map(|e| &e.agent)
    }

    pub fn insert(&mut self, key: [u8; 32], agent: Agent, valid_until_s: u64) {
        if self.capacity == 0 {
            return;
        }
        if let Some(existing) = self.entries.get_mut(&key) {
            *existing = CachedAgent {
                agent,
                valid_until_s,
            };
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
        self.entries.insert(
            key,
            CachedAgent {
                agent,
                valid_until_s,
            },
        );
    }

    /// Drops every token of `issuer` (its key set changed).
    pub fn forget_issuer(&mut self, issuer: &str) {
        self.entries
            .retain(|_, cached| cached.agent.issuer != issuer);
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

    fn agent(id: &str) -> Agent {
        Agent {
            id: id.to_owned(),
            issuer: "iss".to_owned(),
            owner: None,
            kid: None,
            jti: None,
            claims: Default::default(),
        }
    }

    #[test]
    fn entries_expire_and_capacity_holds() {
        let mut cache = TokenCache::with_capacity(2);
        let (a, b, c) = (
            TokenCache::key(b"a"),
            TokenCache::key(b"b"),
            TokenCache::key(b"c"),
        );
        cache.insert(a, agent("a"), 100);
        assert_eq!(cache.get(&a, 99).map(|x| x.id.as_str()), Some("a"));
        assert!(cache.get(&a, 100).is_none(), "expired at valid_until");
        cache.insert(b, agent("b"), 100);
        cache.insert(c, agent("c"), 100);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&a, 0).is_none(), "oldest evicted");
        assert!(cache.get(&c, 0).is_some());
        let mut disabled = TokenCache::with_capacity(0);
        disabled.insert(a, agent("a"), 100);
        assert!(disabled.is_empty());
    }
}
