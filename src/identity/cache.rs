//! Tokens already verified, so that an app sending the same token on every request
//! pays for one signature check per token, not per request (RS256 is about 28 µs,
//! ES256 about 74 µs of a worker's time; a hit is a SHA-256 of the token and a map
//! lookup). Only successes are kept; the times are checked again on every hit, and an
//! entry is only used with the very key set that verified it.

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::jwt::Verified;

/// Bounded: when full it is emptied, so a flood of distinct valid tokens costs
/// verification time, never memory.
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct TokenCache {
    entries: DashMap<[u8; 32], Entry>,
}

#[derive(Clone)]
pub struct Entry {
    pub verified: Verified,
    pub exp: f64,
    pub nbf: Option<f64>,
    /// The [`KeySet::generation`](super::keys::KeySet) that verified the token.
    pub keys: u64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache")
    }
}

impl TokenCache {
    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The entry for this token if the key set `keys` verified it.
    pub fn get(&self, key: &[u8; 32], keys: u64) -> Option<Entry> {
        let entry = self.entries.get(key)?;
        (entry.keys == keys).then(|| entry.clone())
    }

    /// Forgets every token (benchmarks measure the uncached path with it).
    pub fn clear(&self) {
        self.entries.clear();
    }

    pub fn insert(&self, key: [u8; 32], entry: Entry) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(key, entry);
    }
}
