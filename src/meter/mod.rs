//! Stage 7: metering (SPEC 6.2, 8). Every 2xx answer from the upstream adds one event
//! and the route's units to the caller's UTC day (and the project's), with the bytes
//! that went each way; a call that names no tenant counts only in the project's
//! totals. Refusals and degraded answers count nothing. The row is written when the
//! answer's body has been sent, so `bytes_out` is what the client got.

pub mod compile;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Response};

use crate::body::ProxyBody;
use crate::clock::{Clock, NANOS_PER_SEC};
use crate::identity::Caller;
use crate::json::number::NumberPath;
use crate::limits::{self, headers, LimitSettings};
use crate::respond::ReportedUnits;
use crate::store::{Counters, Usage};

/// A route's units per 2xx (SPEC 4 `units`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteUnits {
    Fixed(u64),
    /// Read from this upstream response header; absent or not a number: 0.
    Header(HeaderName),
    /// Read from this JSON pointer (no wildcards) in the upstream's answer by the
    /// response stage, which buffers it anyway; absent: 0.
    Json(NumberPath),
}

impl Default for RouteUnits {
    fn default() -> Self {
        Self::Fixed(1)
    }
}

impl RouteUnits {
    /// The pointer the response stage reads the units from, if it must.
    pub fn json_pointer(&self) -> Option<&NumberPath> {
        match self {
            Self::Json(pointer) => Some(pointer),
            _ => None,
        }
    }
}

/// The units this answer is worth.
pub fn units(rules: &RouteUnits, response: &Response<ProxyBody>) -> u64 {
    match rules {
        RouteUnits::Fixed(n) => *n,
        RouteUnits::Header(name) => response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        RouteUnits::Json(_) => response
            .extensions()
            .get::<ReportedUnits>()
            .map_or(0, |r| r.0),
    }
}

/// Where usage is recorded, and by which clock.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub usage: Arc<Usage>,
    pub clock: Arc<dyn Clock>,
}

/// What one metered 2xx will record once its body has been sent.
pub struct Pending {
    pub ledger: Ledger,
    pub caller: Caller,
    pub units: u64,
    pub bytes_in: Arc<AtomicU64>,
    pub units_metric: prometheus::IntCounter,
}

impl Pending {
    /// Records the event with the bytes the client got.
    pub fn record(self, bytes_out: u64) {
        let Ledger { usage, clock } = &self.ledger;
        self.units_metric.inc_by(self.units);
        let delta = Counters {
            events: 1,
            units: self.units,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            last_at: clock.unix() / NANOS_PER_SEC,
        };
        usage.add(&self.caller, clock.utc_day(), delta);
    }
}

/// `X-Quota-Limit` and `X-Quota-Remaining` for the caller's own daily quota, counting
/// `pending` units this answer is about to add.
pub fn quota_headers(
    limits: &LimitSettings,
    ledger: &Ledger,
    caller: &Caller,
    pending: u64,
    out: &mut HeaderMap,
) {
    if let Some(limit) = limits::daily_units(limits, caller) {
        let used = ledger.usage.used(caller, ledger.clock.utc_day());
        headers::quota(out, limit, used.saturating_add(pending));
    }
}
