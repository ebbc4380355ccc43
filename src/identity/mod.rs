//! Stage 1: who is calling. Header mode reads the end-user id from one header; jwt and
//! api_key modes verify a credential and take the tenant from it. Every mode fails
//! closed on anything ambiguous: a blank, malformed or unverified id is never "no
//! tenant".

use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use regex::Regex;

use crate::hygiene;

pub mod api_key;
pub mod cache;
pub mod compile;
mod failure;
mod header;
pub mod jwt;
pub mod keys;
pub mod remote;

pub use api_key::ApiKeySettings;
pub use compile::{IdentityMode, IdentitySpec};
pub use failure::AuthFailure;
pub use jwt::JwtSettings;

pub const MAX_TENANT_BYTES: usize = 256;

/// Tenant ids `tenantgate verify` keeps for its canaries: refused from every client, so
/// a canary's namespace is never a real user's.
pub const CANARY_PREFIX: &str = "tenantgate-canary-";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTenant {
    #[error("the identity header is empty; send the end-user's id")]
    Empty,
    #[error("it is longer than 256 bytes")]
    TooLong,
    #[error("it is not valid UTF-8")]
    NotUtf8,
    #[error("it contains a control character")]
    Control,
    #[error("it has leading or trailing whitespace; trim it")]
    Padded,
    #[error("it contains a comma, which intermediaries use to merge repeated headers")]
    Comma,
    #[error("it does not match the configured [tenant] pattern")]
    Pattern,
    #[error("ids starting with tenantgate-canary- are reserved for tenantgate verify")]
    Reserved,
    #[error("its encoded form is longer than [tenant] max_encoded")]
    EncodedTooLong,
    #[error("the identity header arrived more than once; send it exactly once")]
    Repeated,
    #[error("a look-alike of the identity header (another spelling, or `_` for `-`) was sent; use the exact header name")]
    LookAlike,
    #[error("the Connection header names the identity header; do not mark it hop-by-hop")]
    NamedInConnection,
}

/// A validated end-user id, exactly as the app sent it. Shared, not copied: a request
/// hands it to its trail, its audit line, its permit and its usage row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// SPEC 2: 1-256 bytes of UTF-8, no control characters, no leading or trailing
    /// whitespace, no comma, and the configured pattern if any.
    pub fn parse(text: &str, pattern: Option<&Regex>) -> Result<Self, InvalidTenant> {
        if text.is_empty() {
            return Err(InvalidTenant::Empty);
        }
        if text.len() > MAX_TENANT_BYTES {
            return Err(InvalidTenant::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(InvalidTenant::Control);
        }
        if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
            return Err(InvalidTenant::Padded);
        }
        if text.contains(',') {
            return Err(InvalidTenant::Comma);
        }
        if pattern.is_some_and(|p| !p.is_match(text)) {
            return Err(InvalidTenant::Pattern);
        }
        if text.starts_with(CANARY_PREFIX) {
            return Err(InvalidTenant::Reserved);
        }
        Ok(Self(Arc::from(text)))
    }

    /// A `tenantgate verify` canary (`label` is `a` or `b`): made only inside the
    /// process, never parsed from a request.
    pub fn canary(label: &str) -> Self {
        Self(Arc::from(format!("{CANARY_PREFIX}{label}")))
    }

    pub fn is_canary(&self) -> bool {
        self.0.starts_with(CANARY_PREFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id itself, shared (for the audit line, which knows no `TenantId`).
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whose limits and usage a request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Tenant(TenantId),
    /// Unscoped shared calls and privileged calls: the project's bucket.
    Project,
}

impl Caller {
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Self::Tenant(t) => Some(t),
            Self::Project => None,
        }
    }
}

/// `[identity]` compiled: the tenant header every mode reads, and what proves the
/// caller is who the request says.
#[derive(Debug)]
pub struct IdentitySettings {
    pub header: HeaderName,
    /// Matched in full against every tenant id.
    pub pattern: Option<Regex>,
    pub proof: Proof,
    /// `[identity] trust_network`: header mode may serve beyond loopback.
    pub trust_network: bool,
    /// The key file this mode read, if any, as it read.
    pub key_file: Option<crate::spec::WatchedFile>,
}

#[derive(Debug)]
pub enum Proof {
    /// The app in the pod is trusted to name the user in `header`.
    Header,
    Jwt(JwtSettings),
    ApiKey(ApiKeySettings),
}

/// Why stage 1 refused a request; `refusal.rs` maps each to its status and code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error(transparent)]
    InvalidTenant(InvalidTenant),
    #[error(transparent)]
    Unauthenticated(AuthFailure),
    #[error("the tenant header names another tenant than the credential")]
    Mismatch,
    #[error("the jwks_url keys have not been fetched yet")]
    KeysUnavailable,
}

/// Set as a request extension by `tenantgate verify`'s runner, inside the process: the
/// request is the canary's. A client cannot set an extension, so it cannot be forged.
#[derive(Debug, Clone)]
pub struct CanaryCaller(pub TenantId);

/// Who a request is from, once stage 1 has checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub tenant: Option<TenantId>,
    pub how: How,
}

/// How the tenant was learned, for `explain` and the audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    Nobody,
    Header,
    Jwt(jwt::Verified),
    ApiKey,
    /// A `tenantgate verify` canary.
    Canary,
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nobody => f.write_str("no tenant"),
            Self::Header => f.write_str("the tenant header (header mode)"),
            Self::Jwt(v) => match &v.kid {
                Some(kid) => write!(f, "a JWT verified with {:?} key {kid:?}", v.alg),
                None => write!(f, "a JWT verified with an {:?} key", v.alg),
            },
            Self::ApiKey => f.write_str("an API key listed in keys_file"),
            Self::Canary => f.write_str("a tenantgate verify canary"),
        }
    }
}

impl IdentitySettings {
    /// True for the identity header and every spelling some component might treat as
    /// it: any letter case, `_` for `-` (CGI-style servers fold them together).
    pub fn is_lookalike(&self, name: &str) -> bool {
        hygiene::same_header_loosely(name, self.header.as_str())
    }

    /// Whether this identity may serve a listener at `addr` (`client_certs`: clients
    /// must show a certificate): header mode trusts the tenant header from anyone who
    /// can reach the port.
    pub fn may_serve(&self, addr: std::net::SocketAddr, client_certs: bool) -> bool {
        !matches!(self.proof, Proof::Header)
            || self.trust_network
            || addr.ip().is_loopback()
            || client_certs
    }

    /// The header that carries the credential, outside header mode.
    pub fn credential_header(&self) -> Option<&HeaderName> {
        match &self.proof {
            Proof::Header => None,
            Proof::Jwt(jwt) => Some(&jwt.header),
            Proof::ApiKey(keys) => Some(&keys.header),
        }
    }

    /// Stage 1: the tenant, verified in jwt and api_key modes, at `now` (Unix
    /// seconds). A tenant header next to a credential must name the same tenant.
    pub async fn identify(&self, headers: &HeaderMap, now: f64) -> Result<Identity, Rejected> {
        let claimed = header::read_tenant(self, headers).map_err(Rejected::InvalidTenant)?;
        let credential = |name: &HeaderName| {
            header::credential(headers, name).map_err(Rejected::Unauthenticated)
        };
        let (tenant, how) = match &self.proof {
            Proof::Header => {
                let how = if claimed.is_some() {
                    How::Header
                } else {
                    How::Nobody
                };
                return Ok(Identity {
                    tenant: claimed,
                    how,
                });
            }
            Proof::Jwt(jwt) => {
                let Some(token) = credential(&jwt.header)? else {
                    return without_credential(claimed, &jwt.header);
                };
                let verified = jwt.verify(token, now).await?;
                let tenant = TenantId::parse(&verified.tenant, self.pattern.as_ref())
                    .map_err(Rejected::InvalidTenant)?;
                (tenant, How::Jwt(verified))
            }
            Proof::ApiKey(keys) => {
                let Some(key) = credential(&keys.header)? else {
                    return without_credential(claimed, &keys.header);
                };
                let tenant = keys.keys.tenant_of(key.as_bytes());
                (
                    tenant.map_err(Rejected::Unauthenticated)?.clone(),
                    How::ApiKey,
                )
            }
        };
        if claimed.as_ref().is_some_and(|claimed| *claimed != tenant) {
            return Err(Rejected::Mismatch);
        }
        Ok(Identity {
            tenant: Some(tenant),
            how,
        })
    }
}

/// A verified mode's request without a credential: nobody, unless it names a tenant
/// in the header, which alone proves nothing.
fn without_credential(
    claimed: Option<TenantId>,
    credential: &HeaderName,
) -> Result<Identity, Rejected> {
    match claimed {
        Some(_) => Err(Rejected::Unauthenticated(AuthFailure::Unverified(
            credential.clone(),
        ))),
        None => Ok(Identity {
            tenant: None,
            how: How::Nobody,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_id_rules() {
        assert!(TenantId::parse("alice", None).is_ok());
        assert!(TenantId::parse("Ålice ünïcode", None).is_ok());
        assert_eq!(TenantId::parse("", None), Err(InvalidTenant::Empty));
        assert_eq!(TenantId::parse(" alice", None), Err(InvalidTenant::Padded));
        assert_eq!(
            TenantId::parse("alice\u{a0}", None),
            Err(InvalidTenant::Padded)
        );
        assert_eq!(TenantId::parse("a\tb", None), Err(InvalidTenant::Control));
        assert_eq!(
            TenantId::parse("a\u{85}b", None),
            Err(InvalidTenant::Control)
        );
        assert_eq!(TenantId::parse("a,b", None), Err(InvalidTenant::Comma));
        assert!(TenantId::parse(&"x".repeat(256), None).is_ok());
        assert_eq!(
            TenantId::parse(&"x".repeat(257), None),
            Err(InvalidTenant::TooLong)
        );
        assert_eq!(
            TenantId::parse("tenantgate-canary-a", None),
            Err(InvalidTenant::Reserved)
        );
        assert!(TenantId::canary("a").is_canary());
        let pattern = Regex::new("^(?:[a-z]+)$").unwrap();
        assert_eq!(
            TenantId::parse("Bob", Some(&pattern)),
            Err(InvalidTenant::Pattern)
        );
    }
}
