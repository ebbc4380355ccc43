//! `api_key` mode: each tenant holds keys of its own; the proxy holds only their SHA-256
//! digests, in a watched file, so a key is rotated by listing old and new and revoked
//! by deleting its line.
//!
//! ```toml
//! [keys]
//! "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" = "alice"
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use http::HeaderName;
use regex::Regex;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthFailure, TenantId};

#[derive(Debug)]
pub struct ApiKeySettings {
    /// `key_header`; `Authorization` takes `Bearer <key>`.
    pub header: HeaderName,
    pub path: PathBuf,
    pub keys: Arc<ApiKeys>,
}

#[derive(Default)]
pub struct ApiKeys {
    by_digest: HashMap<[u8; 32], TenantId>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.by_digest.len())
    }
}

impl ApiKeys {
    /// The keys file; every tenant id must pass the same rules as a header's.
    pub fn parse(text: &str, pattern: Option<&Regex>) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            keys: toml::Table,
        }
        let file: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut by_digest = HashMap::with_capacity(file.keys.len());
        for (n, (digest, tenant)) in file.keys.iter().enumerate() {
            // Entries are named by position only: a raw key pasted by mistake must not
            // end up in logs and admin answers.
            let shown = format!("entry {} of [keys]", n + 1);
            let bytes: [u8; 32] = hex::decode(digest)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    format!("{shown}: a key is listed by the 64 hex digits of its SHA-256 digest, not by the key itself")
                })?;
            let tenant = tenant
                .as_str()
                .ok_or_else(|| format!("{shown}: the tenant must be a string"))?;
            let tenant = TenantId::parse(tenant, pattern)
                .map_err(|e| format!("{shown}: the tenant id {tenant:?} is not acceptable: {e}"))?;
            if by_digest.insert(bytes, tenant).is_some() {
                return Err(format!("{shown}: listed twice (in another letter case)"));
            }
        }
        Ok(Self { by_digest })
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The tenant `key` belongs to. The key is hashed first, so how long the lookup
    /// takes depends on its digest, never on how much of a real key it shares; the
    /// match itself is compared in constant time.
    pub fn tenant_of(&self, key: &[u8]) -> Result<&TenantId, AuthFailure> {
        let digest: [u8; 32] = Sha256::digest(key).into();
        match self.by_digest.get_key_value(&digest) {
            Some((listed, tenant)) if bool::from(listed.ct_eq(&digest)) => Ok(tenant),
            _ => Err(AuthFailure::UnknownKey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    #[test]
    fn keys_map_to_their_tenants_by_digest() {
        let file = format!(
            "[keys]\n\"{}\" = \"alice\"\n\"{}\" = \"alice\"\n\"{}\" = \"bob\"\n",
            digest("old-alice"),
            digest("new-alice").to_uppercase(),
            digest("bob-key")
        );
        let keys = ApiKeys::parse(&file, None).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.tenant_of(b"old-alice").unwrap().as_str(), "alice");
        assert_eq!(keys.tenant_of(b"new-alice").unwrap().as_str(), "alice");
        assert_eq!(keys.tenant_of(b"bob-key").unwrap().as_str(), "bob");
        assert_eq!(
            keys.tenant_of(b"bob-key ").unwrap_err(),
            AuthFailure::UnknownKey
        );
    }

    #[test]
    fn a_bad_file_says_which_entry() {
        let pattern = Regex::new("^(?:[a-z]+)$").unwrap();
        let bad = |text: &str| ApiKeys::parse(text, Some(&pattern)).unwrap_err();
        assert!(bad("[keys]\n\"abc\" = \"alice\"\n").contains("64 hex digits"));
        let d = digest("k");
        assert!(bad(&format!("[keys]\n\"{d}\" = 1\n")).contains("must be a string"));
        assert!(bad(&format!("[keys]\n\"{d}\" = \"Alice!\"\n")).contains("not acceptable"));
        let twice = format!(
            "[keys]\n\"{d}\" = \"a\"\n\"{}\" = \"b\"\n",
            d.to_uppercase()
        );
        assert!(bad(&twice).contains("listed twice"));
        assert!(bad("[other]\n").contains("unknown field"));
        assert!(
            !bad("[keys]\n\"tg_live_rawkey\" = \"alice\"\n").contains("tg_live"),
            "a raw key pasted by mistake is never printed"
        );
    }
}
