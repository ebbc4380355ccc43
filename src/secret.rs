//! Secrets from the config: compared in constant time, never printed.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct Secret {
    // Comparing digests keeps the comparison constant-time even when the lengths
    // differ, so a caller cannot learn the secret's length from timing.
    digest: [u8; 32],
}

impl Secret {
    pub fn new(value: &str) -> Self {
        Self {
            digest: Sha256::digest(value.as_bytes()).into(),
        }
    }

    pub fn matches(&self, candidate: &[u8]) -> bool {
        let candidate: [u8; 32] = Sha256::digest(candidate).into();
        self.digest.ct_eq(&candidate).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}
