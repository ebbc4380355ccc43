//! Every refusal tenantgate decides, mapped to its HTTP status, its SPEC code and a
//! sentence that names the fix. This is the only place that mapping lives.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{self, ProxyBody};
use crate::hygiene;
use crate::identity::{AuthFailure, InvalidTenant, Rejected};
use crate::path::BadPath;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this route is per-user: send the end-user's id in the {header} header")]
    TenantRequired { header: String },
    #[error("the tenant id is not acceptable: {0}")]
    InvalidTenant(InvalidTenant),
    #[error("the request path is not canonical: {0}; send a plain path without dot segments, empty segments or encoded separators")]
    BadPath(BadPath),
    #[error("the request is refused: {0}")]
    BadRequest(String),
    #[error(
        "the request names another user than the caller; a user may only reach their own data"
    )]
    TenantMismatch,
    #[error("the request body is larger than [limits] max_body")]
    BodyTooLarge,
    #[error("unsupported body: {0}")]
    UnsupportedMediaType(&'static str),
    #[error("no route allows {method} on this path; routes are deny-by-default, add one to the config if this call is intended")]
    RouteNotAllowed { method: String },
    #[error("route {route:?} denies this call on purpose")]
    RouteDenied { route: String },
    #[error("this route is privileged: send the privileged token in X-Tenantgate-Token")]
    PrivilegedRequired,
    #[error("tenant is blocked by the operator; ask them to set blocked = false for it")]
    TenantBlocked,
    #[error("authentication failed: {0}")]
    Unauthenticated(AuthFailure),
    #[error("the identity provider's keys have not been fetched yet (jwks_url); retry shortly")]
    IdentityUnavailable,
    #[error("no such admin endpoint; see SPEC section 9 for the list")]
    AdminNotFound,
    /// An opaque id the caller does not own: owned by nobody or by someone else, and
    /// the answer does not say which.
    #[error("no such object")]
    NotOwned,
    #[error(
        "the upstream could not be reached; check [upstream] url and that the backend is running"
    )]
    UpstreamUnavailable,
    #[error("the upstream did not answer within [upstream] timeout")]
    UpstreamTimeout,
    #[error("the upstream's answer was withheld: it could not be checked for other users' data, or it carried some")]
    IsolationViolation,
    #[error("the upstream's answer is larger than [limits] max_response_body")]
    ResponseTooLarge,
    #[error("this user's rate limit is used up; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("this user already has max_concurrent requests in flight; retry when one finishes")]
    TooManyInFlight,
    #[error("the daily quota is used up; it resets at midnight UTC, in {retry_after} s")]
    QuotaExceeded { retry_after: u64 },
    #[error("the usage store could not be read or written; retry shortly")]
    StoreUnavailable,
    #[error("this user's limits live in the shared store, which cannot be reached, and [store] on_store_error = \"fail_closed\"; retry shortly")]
    LimitsUnavailable,
    #[error("the tenant still has requests in flight after [listen] shutdown_grace; nothing was erased, retry shortly")]
    TenantBusy,
    #[error(
        "too many large bodies are being handled at once ([limits] max_buffered); retry shortly"
    )]
    Overloaded,
    #[error(
        "tenantgate failed to handle this request; it is logged, and it is not the caller's fault"
    )]
    Internal,
}

impl From<Rejected> for Refusal {
    fn from(rejected: Rejected) -> Self {
        match rejected {
            Rejected::InvalidTenant(invalid) => Self::InvalidTenant(invalid),
            Rejected::Unauthenticated(failure) => Self::Unauthenticated(failure),
            Rejected::Mismatch => Self::TenantMismatch,
            Rejected::KeysUnavailable => Self::IdentityUnavailable,
        }
    }
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TenantRequired { .. }
            | Self::InvalidTenant(_)
            | Self::BadPath(_)
            | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TenantMismatch => StatusCode::FORBIDDEN,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::AdminNotFound | Self::NotOwned => StatusCode::NOT_FOUND,
            Self::RouteNotAllowed { .. }
            | Self::RouteDenied { .. }
            | Self::PrivilegedRequired
            | Self::TenantBlocked => StatusCode::FORBIDDEN,
            Self::UpstreamUnavailable | Self::IsolationViolation | Self::ResponseTooLarge => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::StoreUnavailable
            | Self::LimitsUnavailable
            | Self::Overloaded
            | Self::TenantBusy
            | Self::IdentityUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RateLimited { .. } | Self::TooManyInFlight | Self::QuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
        }
    }

    /// Every code [`code`](Self::code) can return.
    pub const CODES: &'static [&'static str] = &[
        "tenant_required",
        "invalid_tenant",
        "bad_path",
        "bad_request",
        "tenant_mismatch",
        "body_too_large",
        "unsupported_media_type",
        "route_not_allowed",
        "privileged_required",
        "tenant_blocked",
        "unauthenticated",
        "identity_unavailable",
        "not_found",
        "upstream_unavailable",
        "upstream_timeout",
        "isolation_violation",
        "response_too_large",
        "rate_limited",
        "quota_exceeded",
        "store_unavailable",
        "limits_unavailable",
        "tenant_busy",
        "overloaded",
        "internal_error",
    ];

    /// The stable machine-readable code of SPEC section 7.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TenantRequired { .. } => "tenant_required",
            Self::InvalidTenant(_) => "invalid_tenant",
            Self::BadPath(_) => "bad_path",
            Self::BadRequest(_) => "bad_request",
            Self::TenantMismatch => "tenant_mismatch",
            Self::BodyTooLarge => "body_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RouteNotAllowed { .. } | Self::RouteDenied { .. } => "route_not_allowed",
            Self::PrivilegedRequired => "privileged_required",
            Self::TenantBlocked => "tenant_blocked",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::IdentityUnavailable => "identity_unavailable",
            Self::AdminNotFound | Self::NotOwned => "not_found",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::IsolationViolation => "isolation_violation",
            Self::ResponseTooLarge => "response_too_large",
            Self::RateLimited { .. } | Self::TooManyInFlight => "rate_limited",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::StoreUnavailable => "store_unavailable",
            Self::LimitsUnavailable => "limits_unavailable",
            Self::TenantBusy => "tenant_busy",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal_error",
        }
    }

    /// The SPEC 7 body: `{"error": {"code": ..., "message": ...}}`.
    pub fn body_json(&self) -> String {
        serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string() }
        })
        .to_string()
    }

    pub fn to_response(&self) -> Response<ProxyBody> {
        let mut response = Response::new(body::full(Bytes::from(self.body_json())));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let headers = response.headers_mut();
        match self {
            Self::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after } | Self::QuotaExceeded { retry_after } => {
                headers.insert(header::RETRY_AFTER, hygiene::decimal(*retry_after));
            }
            Self::TooManyInFlight
            | Self::StoreUnavailable
            | Self::LimitsUnavailable
            | Self::Overloaded
            | Self::TenantBusy
            | Self::IdentityUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod codes {
    use super::*;

    #[test]
    fn every_refusal_code_is_listed_for_the_metrics() {
        let every = [
            Refusal::TenantRequired { header: "h".into() },
            Refusal::InvalidTenant(InvalidTenant::Empty),
            Refusal::BadPath(BadPath::BadEscape),
            Refusal::BadRequest(String::new()),
            Refusal::TenantMismatch,
            Refusal::BodyTooLarge,
            Refusal::UnsupportedMediaType(""),
            Refusal::RouteNotAllowed {
                method: "GET".into(),
            },
            Refusal::RouteDenied { route: "r".into() },
            Refusal::PrivilegedRequired,
            Refusal::TenantBlocked,
            Refusal::Unauthenticated(AuthFailure::Signature),
            Refusal::IdentityUnavailable,
            Refusal::AdminNotFound,
            Refusal::NotOwned,
            Refusal::UpstreamUnavailable,
            Refusal::UpstreamTimeout,
            Refusal::IsolationViolation,
            Refusal::ResponseTooLarge,
            Refusal::RateLimited { retry_after: 1 },
            Refusal::TooManyInFlight,
            Refusal::QuotaExceeded { retry_after: 1 },
            Refusal::StoreUnavailable,
            Refusal::LimitsUnavailable,
            Refusal::TenantBusy,
            Refusal::Overloaded,
            Refusal::Internal,
        ];
        let mut seen: Vec<&str> = every.iter().map(Refusal::code).collect();
        seen.sort_unstable();
        seen.dedup();
        let mut listed = Refusal::CODES.to_vec();
        listed.sort_unstable();
        assert_eq!(seen, listed);
    }
}
