//! `[store]` (SPEC 8): where usage, ownership and provisioning marks are kept, how
//! often usage is written, and, with `kind = "redis"`, the Redis every replica shares.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::spec::units::Dur;
use crate::spec::{key, Errors};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Embedded,
    Redis,
}

/// What a decision that needs Redis does while Redis cannot be reached (SPEC 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Each replica limits alone, at the limit divided by `replicas`.
    #[default]
    LocalFallback,
    /// The rate limit is not enforced.
    FailOpen,
    /// Limited requests are refused with 503 `limits_unavailable`.
    FailClosed,
}

impl OnStoreError {
    pub fn name(self) -> &'static str {
        match self {
            Self::LocalFallback => "local_fallback",
            Self::FailOpen => "fail_open",
            Self::FailClosed => "fail_closed",
        }
    }
}

/// `[store]` as the file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSpec {
    pub kind: StoreKind,
    pub path: PathBuf,
    pub flush: Dur,
    pub url: Option<String>,
    pub on_store_error: OnStoreError,
    pub replicas: u32,
    pub timeout: Dur,
    pub key_prefix: String,
    /// The CA that signed Redis's certificate, for `rediss://` behind a private CA.
    pub ca_file: Option<PathBuf>,
}

impl Default for StoreSpec {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            path: "data/".into(),
            flush: Dur(Duration::from_secs(1)),
            url: None,
            on_store_error: OnStoreError::default(),
            replicas: 1,
            timeout: Dur(Duration::from_millis(100)),
            key_prefix: "tenantgate".to_owned(),
            ca_file: None,
        }
    }
}

/// Opened at start (a change needs a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub path: PathBuf,
    pub flush: Duration,
    pub redis: Option<RedisSettings>,
}

/// `kind = "redis"`: one Redis (or Valkey) that every replica shares.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` for TLS.
    pub url: String,
    pub on_error: OnStoreError,
    /// How many replicas share the limits, for `local_fallback`.
    pub replicas: u32,
    /// Every Redis call's budget, connecting included.
    pub timeout: Duration,
    /// Every key starts with it, so several deployments can share one Redis.
    pub key_prefix: String,
    /// PEM roots for `rediss://` instead of the webpki roots.
    pub ca_file: Option<PathBuf>,
}

impl RedisSettings {
    /// The url without its password, for logs and `check`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.redacted_url())
            .field("on_error", &self.on_error)
            .field("replicas", &self.replicas)
            .field("timeout", &self.timeout)
            .field("key_prefix", &self.key_prefix)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A url fit for logs: `scheme://user:secret@host` -> `scheme://user:***@host`, and
/// the value of a `pass` or `password` query parameter (`redis+unix://`) hidden.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The password ends at the last `@` before the path, even one with a `/` in it.
    let path_start = rest.rfind('@').map_or(0, |at| at + 1);
    let authority_end = rest[path_start..]
        .find(['/', '?'])
        .map_or(rest.len(), |i| path_start + i);
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or("");
            format!("{user}:***{}", &authority[at..])
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        None => tail.to_owned(),
        Some((path, query)) => {
            let hidden: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if matches!(name, "pass" | "password") => format!("{name}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", hidden.join("&"))
        }
    };
    format!("{scheme}://{authority}{tail}")
}

const MAX_REPLICAS: u32 = 1024;

pub fn compile(spec: &StoreSpec, errors: &mut Errors) -> StoreSettings {
    let at = |name: &str| vec![key("store"), key(name)];
    let redis = match (spec.kind, &spec.url) {
        (StoreKind::Embedded, _) => None,
        (StoreKind::Redis, None) => {
            errors.add(
                at("url"),
                "kind = \"redis\" needs url = \"redis://host:6379\" (or rediss:// for TLS)",
            );
            None
        }
        (StoreKind::Redis, Some(url)) => {
            if let Err(e) = redis::Client::open(url.as_str()) {
                // The crate's message may quote the url; ours never shows the password.
                errors.add(
                    at("url"),
                    format!(
                        "{} is not a Redis url ({}); write redis://[user:password@]host:port[/db] or rediss://",
                        redact_url(url),
                        e.category()
                    ),
                );
            }
            // An empty path is unset, as SPEC 5 writes unset TLS files.
            let ca_file = spec.ca_file.clone().filter(|p| !p.as_os_str().is_empty());
            if ca_file.is_some() && !url.starts_with("rediss://") {
                errors.add(
                    at("ca_file"),
                    "ca_file is the CA of Redis's TLS certificate: it needs a rediss:// url",
                );
            }
            Some(RedisSettings {
                url: url.clone(),
                on_error: spec.on_store_error,
                replicas: spec.replicas,
                timeout: spec.timeout.0,
                key_prefix: spec.key_prefix.clone(),
                ca_file,
            })
        }
    };
    if !(1..=MAX_REPLICAS).contains(&spec.replicas) {
        errors.add(
            at("replicas"),
            format!("replicas is how many sidecars share the limits: 1 to {MAX_REPLICAS}"),
        );
    }
    let timeout = spec.timeout.0;
    if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(10) {
        errors.add(at("timeout"), "timeout must be from 1ms to 10s");
    }
    let prefix_ok = !spec.key_prefix.is_empty()
        && spec.key_prefix.len() <= 64
        && spec
            .key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if !prefix_ok {
        errors.add(
            at("key_prefix"),
            "key_prefix is 1 to 64 letters, digits, _ - . or : (braces would move keys between cluster slots)",
        );
    }
    StoreSettings {
        path: spec.path.clone(),
        flush: spec.flush.0,
        redis,
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url as redact;

    #[test]
    fn a_password_never_shows() {
        assert_eq!(
            redact("redis://app:s3cret@redis:6379/2"),
            "redis://app:***@redis:6379/2"
        );
        assert_eq!(redact("rediss://:s3cret@r/0"), "rediss://:***@r/0");
        assert_eq!(redact("redis://r:6379"), "redis://r:6379");
        assert_eq!(redact("redis://:a/b@c@r:1/0"), "redis://:***@r:1/0");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
    }
}
