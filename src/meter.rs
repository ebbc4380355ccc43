//! Stage 7: metering (SPEC 6.2, 8). Every 2xx answer from the upstream adds one event
//! and the route's units to the caller's UTC day (and the project's), with the bytes
//! that went each way; a call that names no tenant counts only in the project's
//! totals. Refusals and degraded answers count nothing. The row is written when the
//! answer's body has been sent, so `bytes_out` is what the client got.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Response};
use jiter::{Jiter, NumberInt, Peek};

use crate::app::App;
use crate::body::ProxyBody;
use crate::config::Config;
use crate::limits::clock::NANOS_PER_SEC;
use crate::limits::{self, headers};
use crate::route::table::Route;
use crate::rewrite::pointer::{Pointer, Step};
use crate::route::Caller;
use crate::store::Counters;

/// A route's units per 2xx (SPEC 4 `units`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteUnits {
    Fixed(u64),
    /// Read from this upstream response header; absent or not a number: 0.
    Header(HeaderName),
    /// Read from this JSON pointer (no wildcards) in the upstream's answer; absent: 0.
    Json(Pointer),
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

/// Reads the whole number at `pointer` in a JSON body, for [`RouteUnits::Json`]:
/// walks to it, skipping what it passes, without building a tree (answers carry
/// embeddings). Anything else there, or nothing: 0.
pub fn read_units(body: &[u8], pointer: &Pointer) -> u64 {
    let mut j = Jiter::new(body);
    let found = pointer.steps.iter().try_for_each(|step| descend(&mut j, step));
    match (found, j.next_int()) {
        (Some(()), Ok(NumberInt::Int(n))) => u64::try_from(n).unwrap_or(0),
        _ => 0,
    }
}

/// Moves `j` from a value to its child at `step`; `None` when there is none.
fn descend(j: &mut Jiter, step: &Step) -> Option<()> {
    let Step::Key(name) = step else { return None };
    match j.peek().ok()? {
        Peek::Object => {
            let mut hit = j.known_object().ok()?.map(|k| k == name);
            loop {
                match hit {
                    Some(true) => return Some(()),
                    Some(false) => {
                        let value = j.peek().ok()?;
                        j.known_skip(value).ok()?;
                        hit = j.next_key().ok()?.map(|k| k == name);
                    }
                    None => return None,
                }
            }
        }
        Peek::Array => {
            let wanted: usize = name.parse().ok()?;
            let mut next = j.known_array().ok()?;
            for _ in 0..wanted {
                j.known_skip(next?).ok()?;
                next = j.array_step().ok()?;
            }
            next.map(|_| ())
        }
        _ => None,
    }
}

/// What one metered 2xx will record once its body has been sent.
pub struct Pending {
    pub app: Arc<App>,
    pub caller: Caller,
    pub units: u64,
    pub bytes_in: Arc<AtomicU64>,
    pub units_metric: prometheus::IntCounter,
}

impl Pending {
    /// Records the event with the bytes the client got.
    pub fn record(self, bytes_out: u64) {
        let app = &self.app;
        self.units_metric.inc_by(self.units);
        let delta = Counters {
            events: 1,
            units: self.units,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            last_at: app.clock.unix() / NANOS_PER_SEC,
        };
        app.usage.add(&self.caller, app.clock.utc_day(), delta);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_units_at_a_pointer_without_a_tree() {
        let at = |p: &str, body: &str| read_units(body.as_bytes(), &Pointer::parse(p).unwrap());
        let body = r#"{"data":[1.5,{"x":"y"}],"usage":{"prompt":3,"total_tokens":42}}"#;
        assert_eq!(at("/usage/total_tokens", body), 42);
        assert_eq!(at("/usage/prompt", body), 3);
        assert_eq!(at("/data/1/x", body), 0, "a string is not units");
        assert_eq!(at("/data/0", body), 0, "nor is a fraction");
        assert_eq!(at("/data/2", body), 0, "past the end");
        assert_eq!(at("/missing", body), 0);
        assert_eq!(at("/n", r#"{"n":-4}"#), 0, "nor a negative number");
        assert_eq!(at("/0/n", r#"[{"n":7}]"#), 7);
    }
}
