//! Why a credential was not accepted: each reason is a 401 `unauthenticated` with a
//! sentence that names the fix, and a bounded label for
//! `tenantgate_authentication_failures_total{reason}`.

use http::HeaderName;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("this route is per-user: send a credential in the {0} header")]
    Missing(HeaderName),
    #[error("the tenant header alone proves nothing in this identity mode; send the credential in {0} (the tenant is read from it)")]
    Unverified(HeaderName),
    #[error("the credential is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token's algorithm is not accepted for its key (alg none, or another family than the key's)")]
    Algorithm,
    #[error("the token names a key (kid) this proxy does not know")]
    UnknownKid,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has no exp claim; tokens must expire")]
    NoExpiry,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the token's issuer (iss) is not the configured one")]
    Issuer,
    #[error("the token's audience (aud) does not include the configured one")]
    Audience,
    #[error("the token has no usable tenant claim (a string or an integer at [identity] claim)")]
    Claim,
    #[error("the API key is not known (never issued, or revoked)")]
    UnknownKey,
    #[error("[admin] token is not configured, so the admin API is closed")]
    AdminClosed,
    #[error("send Authorization: Bearer <[admin] token>")]
    AdminToken,
}

impl AuthFailure {
    /// Every label [`reason`](Self::reason) can return, exported at zero.
    pub const REASONS: &'static [&'static str] = &[
        "missing",
        "unverified_tenant_header",
        "malformed",
        "algorithm",
        "unknown_kid",
        "signature",
        "no_exp",
        "expired",
        "not_yet_valid",
        "issuer",
        "audience",
        "claim",
        "unknown_key",
        "admin",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing(_) => "missing",
            Self::Unverified(_) => "unverified_tenant_header",
            Self::Malformed(_) => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKid => "unknown_kid",
            Self::Signature => "signature",
            Self::NoExpiry => "no_exp",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Claim => "claim",
            Self::UnknownKey => "unknown_key",
            Self::AdminClosed | Self::AdminToken => "admin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_for_the_metrics() {
        let header = HeaderName::from_static("authorization");
        let every = [
            AuthFailure::Missing(header.clone()),
            AuthFailure::Unverified(header),
            AuthFailure::Malformed(""),
            AuthFailure::Algorithm,
            AuthFailure::UnknownKid,
            AuthFailure::Signature,
            AuthFailure::NoExpiry,
            AuthFailure::Expired,
            AuthFailure::NotYetValid,
            AuthFailure::Issuer,
            AuthFailure::Audience,
            AuthFailure::Claim,
            AuthFailure::UnknownKey,
            AuthFailure::AdminClosed,
        ];
        for failure in every {
            assert!(
                AuthFailure::REASONS.contains(&failure.reason()),
                "{failure:?}"
            );
        }
    }
}
