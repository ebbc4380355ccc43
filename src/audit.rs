//! The audit log (SPEC 12): one JSON line per request on stdout, under the tracing
//! target `audit`. Never a secret, never a body.

use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};

pub const TARGET: &str = "audit";

#[derive(Debug)]
pub struct AuditRecord {
    pub request_id: HeaderValue,
    pub method: Method,
    pub tenant: Option<String>,
    pub route: Option<String>,
    pub upstream_status: Option<u16>,
    /// The refusal code when tenantgate answered itself.
    pub reason: Option<&'static str>,
    /// Units metered for this request (stage 7).
    pub units: Option<u64>,
    /// Answered by the route's degrade response (SPEC 6.3).
    pub degraded: bool,
    /// The opaque ids named at `owned:` locations, as `kind:id` (SPEC 4.3), so an
    /// attempt on another tenant's object can be found afterwards.
    pub owned: Option<String>,
}

impl AuditRecord {
    pub fn new(request_id: HeaderValue, method: Method) -> Self {
        Self {
            request_id,
            method,
            tenant: None,
            route: None,
            upstream_status: None,
            reason: None,
            units: None,
            degraded: false,
            owned: None,
        }
    }

    pub fn emit(&self, status: StatusCode, latency: Duration) {
        let decision = if self.reason.is_some() {
            "refused"
        } else if self.degraded {
            "degraded"
        } else {
            "forwarded"
        };
        tracing::info!(
            target: TARGET,
            request_id = self.request_id.to_str().unwrap_or("-"),
            tenant = self.tenant.as_deref(),
            route = self.route.as_deref(),
            method = self.method.as_str(),
            decision,
            status = status.as_u16(),
            upstream_status = self.upstream_status,
            latency_ms = latency.as_secs_f64() * 1000.0,
            units = self.units,
            reason = self.reason,
            owned = self.owned.as_deref(),
        );
    }
}
