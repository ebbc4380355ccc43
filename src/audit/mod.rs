//! The audit log (SPEC 12): one JSON line per request on stdout (or `[log]
//! audit_file`). Never a secret, never a body. Lines are encoded here, straight into a
//! reused buffer, and handed to the [`sink`], which writes them off the request path.

pub mod sink;

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, StatusCode};
use serde::Serialize;

pub use sink::Sink;

/// The sink of this process, installed once by `tenantgate run`; without one (the
/// library in tests) lines are not written.
static SINK: OnceLock<Arc<Sink>> = OnceLock::new();

/// Sends every later audit line to `sink`. Only the first call takes effect.
pub fn install(sink: Arc<Sink>) {
    let _ = SINK.set(sink);
}

/// Lines the sink had to drop or could not write (`tenantgate_audit_lines_dropped_total`).
pub fn dropped_lines() -> u64 {
    SINK.get().map_or(0, |sink| sink.dropped_lines())
}

#[derive(Debug)]
pub struct AuditRecord<'c> {
    pub request_id: HeaderValue,
    pub method: Method,
    pub tenant: Option<Arc<str>>,
    /// The matched route's name, borrowed from the request's config snapshot.
    pub route: Option<&'c str>,
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

impl AuditRecord<'_> {
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
        let Some(sink) = SINK.get() else {
            return;
        };
        let decision = if self.reason.is_some() {
            "refused"
        } else if self.degraded {
            "degraded"
        } else {
            "forwarded"
        };
        let line = Line {
            // humantime panics before the epoch: a clock set that far back writes 1970.
            timestamp: humantime::format_rfc3339_micros(SystemTime::now().max(UNIX_EPOCH)),
            level: "INFO",
            request_id: self.request_id.to_str().unwrap_or("-"),
            tenant: self.tenant.as_deref(),
            route: self.route,
            method: self.method.as_str(),
            decision,
            status: status.as_u16(),
            upstream_status: self.upstream_status,
            latency_ms: latency.as_secs_f64() * 1000.0,
            units: self.units,
            reason: self.reason,
            owned: self.owned.as_deref(),
        };
        ENCODED.with_borrow_mut(|buf| {
            buf.clear();
            // Only the timestamp can fail to encode (a year past 9999): counted.
            if serde_json::to_writer(&mut *buf, &line).is_ok() {
                buf.push(b'\n');
                sink.append(buf);
            } else {
                sink.count_dropped();
            }
        });
    }
}

thread_local! {
    /// Each worker encodes its lines into one buffer, grown once.
    static ENCODED: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// One audit line, in the order its keys are written; absent values are left out.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(serialize_with = "display")]
    timestamp: humantime::Rfc3339Timestamp,
    level: &'static str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    method: &'a str,
    decision: &'static str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_status: Option<u16>,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    units: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owned: Option<&'a str>,
}

fn display<S: serde::Serializer>(
    value: &humantime::Rfc3339Timestamp,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}
