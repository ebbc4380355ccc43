//! Stage 7: metering (SPEC 6.2, 8). Every 2xx answer from the upstream adds one event
//! and the route's units to the caller's UTC day (and the project's), with the bytes
//! that went each way; a call that names no tenant counts only in the project's
//! totals. Refusals and degraded answers count nothing. The row is written when the
//! answer's body has been sent, so `bytes_out` is what the client got.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Response};

use crate::app::App;
use crate::body::{self, ProxyBody};
use crate::config::Config;
use crate::limits::clock::NANOS_PER_SEC;
use crate::limits::{self, headers};
use crate::route::table::Route;
use crate::route::Caller;
use crate::store::Counters;

/// A route's units per 2xx (SPEC 4 `units`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteUnits {
    Fixed(u64),
    /// Read from this upstream response header; absent or not a number: 0.
    Header(HeaderName),
    /// Read from this JSON pointer in the upstream's answer; absent: 0.
    Json(String),
}

impl Default for RouteUnits {
    fn default() -> Self {
        Self::Fixed(1)
    }
}

/// Units the response stage read from a JSON answer, handed to this stage.
#[derive(Debug, Clone, Copy)]
pub struct ReportedUnits(pub u64);

/// The units this answer is worth.
pub fn units(route: &Route, response: &Response<ProxyBody>) -> u64 {
    match &route.units {
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

/// Reads a number at `pointer` in a JSON body, for [`RouteUnits::Json`].
pub fn read_units(body: &[u8], pointer: &str) -> u64 {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer(pointer).and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}

/// Meters a 2xx answer once its body has been sent.
pub fn record_on_end(
    app: &Arc<App>,
    caller: Caller,
    units: u64,
    bytes_in: Arc<AtomicU64>,
    units_metric: prometheus::IntCounter,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let app = app.clone();
    response.map(move |b| {
        body::on_end(b, move |bytes_out| {
            units_metric.inc_by(units);
            let now = app.clock.unix();
            let delta = Counters {
                events: 1,
                units,
                bytes_in: bytes_in.load(Ordering::Relaxed),
                bytes_out,
                last_at: now / NANOS_PER_SEC,
            };
            app.usage.add(&caller, app.clock.utc_day(), delta);
        })
    })
}

/// `X-Quota-Limit` and `X-Quota-Remaining` for the caller's own daily quota, counting
/// `pending` units this answer is about to add.
pub fn quota_headers(
    app: &App,
    config: &Config,
    caller: &Caller,
    pending: u64,
    out: &mut HeaderMap,
) {
    if let Some(limit) = limits::daily_units(config, caller) {
        let used = app.usage.used(caller, app.clock.utc_day());
        headers::quota(out, limit, used.saturating_add(pending));
    }
}
