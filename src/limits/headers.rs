//! The rate-limit and quota response headers (SPEC 6.1, 6.2): the de-facto
//! `X-RateLimit-*` trio and the IETF structured fields (draft-ietf-httpapi-ratelimit-
//! headers: `RateLimit-Policy: "plan";q=burst;w=window`, `RateLimit: "plan";r=left;t=secs`).

use std::fmt::Write;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::clock::Clock;
use crate::gcra::{ceil_secs, Decision, Level, Rate};
use crate::hygiene::decimal;

pub const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
pub const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const QUOTA_LIMIT: HeaderName = HeaderName::from_static("x-quota-limit");
pub const QUOTA_REMAINING: HeaderName = HeaderName::from_static("x-quota-remaining");
pub const DEGRADED: HeaderName = HeaderName::from_static("x-tenantgate-degraded");

pub fn rate_limit(
    headers: &mut HeaderMap,
    policy: &str,
    rate: &Rate,
    decision: &Decision,
    clock: &dyn Clock,
) {
    let (Decision::Allowed(level)
    | Decision::Reserved { level, .. }
    | Decision::Denied { level, .. }) = decision;
    let Level { remaining, full_in } = *level;
    let reset_unix = ceil_secs(clock.unix() + full_in);
    let window = ceil_secs(rate.window());
    let full_in_secs = ceil_secs(full_in);
    headers.insert(LIMIT, decimal(rate.burst()));
    headers.insert(REMAINING, decimal(remaining));
    headers.insert(RESET, decimal(reset_unix));
    // Both structured values share their first part: 3 allocations in all.
    let mut value = String::with_capacity(policy.len() + 32);
    sf_string(policy, &mut value);
    let named = value.len();
    let _ = write!(value, ";q={};w={window}", rate.burst());
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value.clone())) {
        headers.insert(POLICY, v);
    }
    value.truncate(named);
    let _ = write!(value, ";r={remaining};t={full_in_secs}");
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        headers.insert(RATELIMIT, v);
    }
}

pub fn quota(headers: &mut HeaderMap, limit: u64, used: u64) {
    headers.insert(QUOTA_LIMIT, decimal(limit));
    headers.insert(QUOTA_REMAINING, decimal(limit.saturating_sub(used)));
}

/// A structured-field string, appended: printable ASCII with `"` and `\` escaped.
fn sf_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}
