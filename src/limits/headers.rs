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

/// The rate-limit headers' values for the bucket a request was charged against, kept
/// as numbers until the answer writes them into its own header map: no map between.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit<'c> {
    policy: &'c str,
    burst: u64,
    remaining: u64,
    reset_unix: u64,
    window: u64,
    full_in: u64,
}

impl<'c> RateLimit<'c> {
    pub fn of(policy: &'c str, rate: &Rate, decision: &Decision, clock: &dyn Clock) -> Self {
        let (Decision::Allowed(level)
        | Decision::Reserved { level, .. }
        | Decision::Denied { level, .. }) = decision;
        let Level { remaining, full_in } = *level;
        Self {
            policy,
            burst: rate.burst(),
            remaining,
            reset_unix: ceil_secs(clock.unix() + full_in),
            window: ceil_secs(rate.window()),
            full_in: ceil_secs(full_in),
        }
    }

    /// The five headers, into the answer.
    pub fn write(&self, headers: &mut HeaderMap) {
        headers.insert(LIMIT, decimal(self.burst));
        headers.insert(REMAINING, decimal(self.remaining));
        headers.insert(RESET, decimal(self.reset_unix));
        // Both structured values share their first part: 3 allocations in all.
        let mut value = String::with_capacity(self.policy.len() + 32);
        sf_string(self.policy, &mut value);
        let named = value.len();
        let _ = write!(value, ";q={};w={}", self.burst, self.window);
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value.clone())) {
            headers.insert(POLICY, v);
        }
        value.truncate(named);
        let _ = write!(value, ";r={};t={}", self.remaining, self.full_in);
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
            headers.insert(RATELIMIT, v);
        }
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
