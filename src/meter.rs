//! Stage 7: metering. Every 2xx answer the upstream gave counts the route's units
//! against the caller's day and the project's (SPEC 6.2); the response then tells the
//! caller what is left of its quota.

use http::{HeaderMap, StatusCode};

use crate::app::App;
use crate::config::Config;
use crate::limits::{self, headers};
use crate::route::Caller;

/// Records the units of a delivered 2xx; returns them for the audit line.
pub fn record(app: &App, caller: &Caller, units: u64, status: StatusCode) -> Option<u64> {
    if !status.is_success() || units == 0 {
        return None;
    }
    app.usage.add(caller, app.clock.utc_day(), units);
    Some(units)
}

/// `X-Quota-Limit` and `X-Quota-Remaining` for the caller's own daily quota.
pub fn quota_headers(app: &App, config: &Config, caller: &Caller, out: &mut HeaderMap) {
    if let Some(limit) = limits::daily_units(config, caller) {
        let used = app.usage.used(caller, app.clock.utc_day());
        headers::quota(out, limit, used);
    }
}
