//! Stage 1: who is calling. Header mode reads the end-user id from one header and fails
//! closed on anything ambiguous: a blank or malformed id is never "no tenant".

use http::{HeaderMap, HeaderName};
use regex::Regex;

use crate::hygiene;

pub mod compile;

pub use compile::{IdentityMode, IdentitySpec};

pub const MAX_TENANT_BYTES: usize = 256;

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
    #[error("its encoded form is longer than [tenant] max_encoded")]
    EncodedTooLong,
    #[error("the identity header arrived more than once; send it exactly once")]
    Repeated,
    #[error("a look-alike of the identity header (another spelling, or `_` for `-`) was sent; use the exact header name")]
    LookAlike,
    #[error("the Connection header names the identity header; do not mark it hop-by-hop")]
    NamedInConnection,
}

/// A validated end-user id, exactly as the app sent it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(String);

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
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
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

#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub header: HeaderName,
    /// Matched in full against every tenant id.
    pub pattern: Option<Regex>,
}

impl IdentitySettings {
    /// True for the identity header and every spelling some component might treat as
    /// it: any letter case, `_` for `-` (CGI-style servers fold them together).
    pub fn is_lookalike(&self, name: &str) -> bool {
        hygiene::same_header_loosely(name, self.header.as_str())
    }

    /// Reads the tenant from the request headers: `Ok(None)` when the identity header is
    /// absent altogether (the route's scope decides whether that is acceptable).
    pub fn read(&self, headers: &HeaderMap) -> Result<Option<TenantId>, InvalidTenant> {
        if headers
            .keys()
            .any(|name| *name != self.header && self.is_lookalike(name.as_str()))
        {
            return Err(InvalidTenant::LookAlike);
        }
        if hygiene::connection_tokens(headers).any(|token| self.is_lookalike(token)) {
            return Err(InvalidTenant::NamedInConnection);
        }
        let mut values = headers.get_all(&self.header).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(InvalidTenant::Repeated);
        }
        let text = std::str::from_utf8(value.as_bytes()).map_err(|_| InvalidTenant::NotUtf8)?;
        TenantId::parse(text, self.pattern.as_ref()).map(Some)
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
        let pattern = Regex::new("^(?:[a-z]+)$").unwrap();
        assert_eq!(
            TenantId::parse("Bob", Some(&pattern)),
            Err(InvalidTenant::Pattern)
        );
    }
}
