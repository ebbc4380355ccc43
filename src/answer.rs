//! Stage 8: the answer, for forwarded, degraded and refused requests alike. The
//! caller's limit and quota headers, the request id and the namespace are added; the
//! body is wrapped so that its end writes the usage row and frees the in-flight slot;
//! the route's metrics and the audit line are written.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Response};

use crate::app::App;
use crate::audit::AuditRecord;
use crate::body::{self, ProxyBody};
use crate::config::{Config, RouteRules, Snapshot};
use crate::hygiene::REQUEST_ID;
use crate::identity::Caller;
use crate::limits::{self, Permit};
use crate::meter;
use crate::namespace::Namespace;
use crate::refusal::Refusal;
use crate::respond;

/// The rate-limit headers (5), the quota headers (2), the request id, the namespace.
const ADDED_HEADERS: usize = 9;

/// What one request gathers on its walk for its answer and its audit line.
pub struct Trail<'c> {
    pub audit: AuditRecord<'c>,
    /// Rate-limit headers of the bucket charged (stage 3).
    pub rate_limit: Option<limits::RateLimit<'c>>,
    /// The caller's in-flight slot, held until the answer's body ends.
    pub permit: Option<Permit>,
    /// The tenant's request counted in flight, for offboarding to wait on.
    pub active: Option<crate::tenants::Active>,
    /// Whom the request is metered to (stage 7), once a route admitted it.
    pub caller: Option<Caller>,
    /// The matched route's rules, once stage 2 matched one.
    pub rules: Option<&'c RouteRules>,
    /// The matched route's position, for its metric handles.
    pub route: Option<usize>,
    /// The namespace the route stage resolved: rewrite and respond work in it, and
    /// every answer names it in `X-Tenant-Namespace`.
    pub namespace: Option<Namespace>,
    /// Request body bytes read from the client.
    pub bytes_in: Arc<AtomicU64>,
    /// Raised when the client's body failed (malformed, cut short, stalled).
    pub client_body_broke: Arc<std::sync::atomic::AtomicBool>,
    /// How long the upstream took to its response head.
    pub upstream_time: Option<Duration>,
}

impl<'c> Trail<'c> {
    pub fn new(audit: AuditRecord<'c>) -> Self {
        Self {
            audit,
            rate_limit: None,
            permit: None,
            active: None,
            caller: None,
            rules: None,
            route: None,
            namespace: None,
            bytes_in: Arc::default(),
            client_body_broke: Arc::default(),
            upstream_time: None,
        }
    }
}

/// Counts a request in `tenantgate_inflight_requests` until its answer's body ends.
pub struct InFlight(prometheus::IntGauge);

impl InFlight {
    pub fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A refusal becomes the answer, counted by its code.
pub fn refused(
    app: &App,
    config: &Config,
    trail: &mut Trail<'_>,
    refusal: Refusal,
) -> Response<ProxyBody> {
    // A verify canary's requests count in no traffic metric: its probes (one the leak
    // guard holds, by design, in the playground) are the verify report's to tell, and
    // would otherwise page and skew the dashboards every [verify] interval.
    if !is_canary(trail) {
        app.metrics.rejected(refusal.code());
        match (&refusal, &trail.caller) {
            (Refusal::IsolationViolation, _) => app.metrics.isolation_violations.inc(),
            (Refusal::Unauthenticated(failure), _) => {
                app.metrics.authentication_failed(failure.reason());
            }
            (Refusal::RateLimited { .. } | Refusal::TooManyInFlight, Some(caller)) => app
                .metrics
                .rate_limited(limits::policy(&config.limits, caller)),
            _ => {}
        }
    }
    trail.audit.reason = Some(refusal.code());
    refusal.to_response()
}

/// What ends with the answer's body.
pub struct Done {
    pub request_id: HeaderValue,
    pub metered: Option<meter::Pending>,
    pub in_flight: InFlight,
    pub started: Instant,
}

pub fn answer(
    app: &App,
    snapshot: &Snapshot,
    mut trail: Trail<'_>,
    done: Done,
    mut response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let config = &snapshot.config;
    let headers = response.headers_mut();
    // At most nine headers are added: grown once, not each time a power of two fills.
    headers.reserve(ADDED_HEADERS);
    if let Some(caller) = &trail.caller {
        let pending = done.metered.as_ref().map_or(0, |m| m.units);
        meter::quota_headers(&config.limits, &app.ledger, caller, pending, headers);
    }
    if let Some(rate_limit) = &trail.rate_limit {
        rate_limit.write(headers);
    }
    headers.insert(REQUEST_ID, done.request_id);
    if let Some(root) = trail
        .namespace
        .as_ref()
        .and_then(|ns| HeaderValue::from_str(&ns.root).ok())
    {
        headers.insert(respond::TENANT_NAMESPACE, root);
    }
    let held = (trail.permit.take(), trail.active.take(), done.in_flight);
    let metered = done.metered;
    response = response.map(|body| {
        body::on_end(body, move |sent| {
            // An answer cut off by the upstream is no full 2xx; one the client hung up
            // on is metered for what it got.
            match metered {
                Some(metered) if !sent.failed => metered.record(sent.bytes),
                Some(_) => tracing::debug!("answer cut off mid-body; not metered"),
                None => {}
            }
            drop(held);
        })
    });
    let elapsed = done.started.elapsed();
    if is_canary(&trail) {
        trail.audit.emit(response.status(), elapsed);
        return response;
    }
    if let Some(route) = trail.route.and_then(|i| snapshot.route_metrics.get(i)) {
        route.count(response.status());
        route.duration.observe(elapsed.as_secs_f64());
        if trail.audit.degraded {
            route.degraded.inc();
        }
    }
    let upstream = trail.upstream_time.unwrap_or_default();
    if let Some(upstream) = trail.upstream_time {
        app.metrics
            .upstream_duration
            .observe(upstream.as_secs_f64());
    }
    app.metrics
        .overhead
        .observe(elapsed.saturating_sub(upstream).as_secs_f64());
    trail.audit.emit(response.status(), elapsed);
    response
}

fn is_canary(trail: &Trail<'_>) -> bool {
    trail
        .caller
        .as_ref()
        .and_then(|c| c.tenant())
        .is_some_and(crate::identity::TenantId::is_canary)
}
