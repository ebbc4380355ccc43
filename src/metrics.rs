//! Prometheus metrics (SPEC 11) in a registry of our own, served on the admin
//! listener's `/metrics`. Labels are bounded: route and plan names come from the
//! config, status classes and refusal codes are fixed sets; a tenant id appears only
//! with `[metrics] per_tenant_top_k`, and then only for the top K (the rest are summed
//! under `tenant="other"`). Handles are resolved once per label value, not per request.

use std::sync::Arc;

use dashmap::DashMap;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Seconds: from 100 µs (tenantgate's own work) to 30 s (a slow upstream).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// One route's handles, resolved when a config is installed.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    /// By status class: index 0 is 1xx ... 4 is 5xx.
    requests: [IntCounter; 5],
    pub duration: Histogram,
    pub degraded: IntCounter,
}

impl RouteMetrics {
    pub fn count(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests[class].inc();
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    pub upstream_duration: Histogram,
    pub overhead: Histogram,
    rejections: IntCounterVec,
    authentication_failures: IntCounterVec,
    jwks_fetches: IntCounterVec,
    rate_limited: IntCounterVec,
    plan_requests: IntCounterVec,
    pub queue_wait: Histogram,
    degraded: IntCounterVec,
    metered_units: IntCounterVec,
    pub isolation_violations: IntCounter,
    pub ownership_denials: IntCounter,
    pub config_reloads: IntCounterVec,
    pub config_last_success: Gauge,
    tenants_active: IntGauge,
    limiter_keys: IntGauge,
    pub store_flush_failures: prometheus::IntCounter,
    store_pending_rows: IntGauge,
    audit_lines_dropped: IntCounter,
    pub inflight: IntGauge,
    tenant_units: IntGaugeVec,
    /// `tenantgate verify` in the proxy: 1 when a scenario's last run held.
    pub canary_ok: IntGaugeVec,
    pub canary_last_run: Gauge,
    /// Resolved handles by label value, for the families labelled at run time.
    resolved: Arc<Resolved>,
    /// The sink's dropped lines already added to `audit_lines_dropped`.
    audit_exported: Arc<std::sync::atomic::AtomicU64>,
}

/// The families labelled at run time.
#[derive(Clone, Copy)]
enum Family {
    Rejections,
    Auth,
    RateLimited,
    PlanRequests,
    Metered,
}

/// Each family's handles, by label value.
#[derive(Debug, Default)]
struct Resolved {
    rejections: DashMap<Box<str>, IntCounter>,
    auth: DashMap<Box<str>, IntCounter>,
    rate_limited: DashMap<Box<str>, IntCounter>,
    plan_requests: DashMap<Box<str>, IntCounter>,
    metered: DashMap<Box<str>, IntCounter>,
}

impl Resolved {
    fn of(&self, family: Family) -> &DashMap<Box<str>, IntCounter> {
        match family {
            Family::Rejections => &self.rejections,
            Family::Auth => &self.auth,
            Family::RateLimited => &self.rate_limited,
            Family::PlanRequests => &self.plan_requests,
            Family::Metered => &self.metered,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn histogram(name: &str, help: &str) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()))
        .expect("static metric definition")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("static metric definition")
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self {
            registry: Registry::new(),
            requests: counter_vec(
                "tenantgate_requests_total",
                "Requests answered, by route and status class.",
                &["route", "status_class"],
            ),
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "tenantgate_request_duration_seconds",
                    "Time from request to response head, by route.",
                )
                .buckets(BUCKETS.to_vec()),
                &["route"],
            )
            .expect("static metric definition"),
            upstream_duration: histogram(
                "tenantgate_upstream_duration_seconds",
                "Time the upstream took to answer with its response head.",
            ),
            overhead: histogram(
                "tenantgate_overhead_seconds",
                "Time spent in tenantgate itself: the request's time minus the upstream's.",
            ),
            rejections: counter_vec(
                "tenantgate_rejections_total",
                "Requests refused by tenantgate, by error code.",
                &["reason"],
            ),
            authentication_failures: counter_vec(
                "tenantgate_authentication_failures_total",
                "Credentials refused with 401 in jwt and api_key modes (and on the admin API), by reason.",
                &["reason"],
            ),
            jwks_fetches: counter_vec(
                "tenantgate_jwks_fetches_total",
                "Fetches of [identity] jwks_url, by result; a failure keeps the last good keys.",
                &["result"],
            ),
            rate_limited: counter_vec(
                "tenantgate_rate_limited_total",
                "Requests refused by a rate limit or an in-flight cap, by plan.",
                &["plan"],
            ),
            plan_requests: counter_vec(
                "tenantgate_plan_requests_total",
                "Requests a plan's limits judged, admitted or refused, by plan (the 429 ratio's denominator).",
                &["plan"],
            ),
            queue_wait: histogram(
                "tenantgate_queue_wait_seconds",
                "Time queued requests waited for their slot.",
            ),
            degraded: counter_vec(
                "tenantgate_degraded_total",
                "Requests answered by a route's degrade response, by route.",
                &["route"],
            ),
            metered_units: counter_vec(
                "tenantgate_metered_units_total",
                "Units metered from 2xx answers, by plan.",
                &["plan"],
            ),
            isolation_violations: IntCounter::new(
                "tenantgate_isolation_violations_total",
                "Answers withheld because they carried another tenant's ids or could not be inspected.",
            )
            .expect("static metric definition"),
            ownership_denials: IntCounter::new(
                "tenantgate_ownership_denials_total",
                "Requests answered not_found because they named an opaque id the caller does not own.",
            )
            .expect("static metric definition"),
            config_reloads: counter_vec(
                "tenantgate_config_reloads_total",
                "Config reloads by result (success, error).",
                &["result"],
            ),
            config_last_success: Gauge::new(
                "tenantgate_config_last_reload_success_timestamp_seconds",
                "Unix time of the last config load that was applied.",
            )
            .expect("static metric definition"),
            tenants_active: gauge(
                "tenantgate_tenants_active",
                "Tenants with metered usage today (UTC).",
            ),
            limiter_keys: gauge("tenantgate_limiter_keys", "Tenants with limiter state in memory."),
            store_flush_failures: prometheus::IntCounter::new(
                "tenantgate_store_flush_failures_total",
                "Usage flushes that failed (their rows stay pending and are retried).",
            )
            .expect("static metric definition"),
            store_pending_rows: gauge(
                "tenantgate_store_pending_rows",
                "Usage rows in memory waiting to be written to the store.",
            ),
            audit_lines_dropped: IntCounter::new(
                "tenantgate_audit_lines_dropped_total",
                "Audit lines dropped because the audit buffer was full, or lost because the output failed.",
            )
            .expect("static metric definition"),
            inflight: gauge(
                "tenantgate_inflight_requests",
                "Requests being served, until their answer's body ends.",
            ),
            tenant_units: IntGaugeVec::new(
                Opts::new(
                    "tenantgate_tenant_units_today",
                    "Units metered today for the top per_tenant_top_k tenants, the rest as tenant=\"other\".",
                ),
                &["tenant"],
            )
            .expect("static metric definition"),
            canary_ok: IntGaugeVec::new(
                Opts::new(
                    "tenantgate_isolation_canary_ok",
                    "1 when the scenario's last verify run held (no canary saw another's data), else 0.",
                ),
                &["scenario"],
            )
            .expect("static metric definition"),
            canary_last_run: Gauge::new(
                "tenantgate_isolation_canary_last_run_timestamp_seconds",
                "When the scenarios last ran inside the proxy (Unix seconds).",
            )
            .expect("static metric definition"),
            resolved: Arc::default(),
            audit_exported: Arc::default(),
        };
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(metrics.requests.clone()),
            Box::new(metrics.request_duration.clone()),
            Box::new(metrics.upstream_duration.clone()),
            Box::new(metrics.overhead.clone()),
            Box::new(metrics.rejections.clone()),
            Box::new(metrics.authentication_failures.clone()),
            Box::new(metrics.jwks_fetches.clone()),
            Box::new(metrics.rate_limited.clone()),
            Box::new(metrics.plan_requests.clone()),
            Box::new(metrics.queue_wait.clone()),
            Box::new(metrics.degraded.clone()),
            Box::new(metrics.metered_units.clone()),
            Box::new(metrics.isolation_violations.clone()),
            Box::new(metrics.ownership_denials.clone()),
            Box::new(metrics.config_reloads.clone()),
            Box::new(metrics.config_last_success.clone()),
            Box::new(metrics.tenants_active.clone()),
            Box::new(metrics.limiter_keys.clone()),
            Box::new(metrics.store_flush_failures.clone()),
            Box::new(metrics.store_pending_rows.clone()),
            Box::new(metrics.audit_lines_dropped.clone()),
            Box::new(metrics.inflight.clone()),
            Box::new(metrics.tenant_units.clone()),
            Box::new(metrics.canary_ok.clone()),
            Box::new(metrics.canary_last_run.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("metric names are distinct");
        }
        metrics
    }

    /// Adds collectors that live elsewhere (the shared store's), once at start.
    pub fn register(&self, collectors: Vec<Box<dyn Collector>>) {
        for collector in collectors {
            if let Err(error) = self.registry.register(collector) {
                tracing::warn!(%error, "a metric could not be registered");
            }
        }
    }

    /// Handles for one route, resolved when its config is installed.
    pub fn route(&self, name: &str) -> RouteMetrics {
        let class = |c: &str| self.requests.with_label_values(&[name, c]);
        RouteMetrics {
            requests: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: self.request_duration.with_label_values(&[name]),
            degraded: self.degraded.with_label_values(&[name]),
        }
    }

    /// The handle of `vec` for `label`, looked up without allocating once resolved
    /// (this runs on every metered request).
    fn resolve(&self, family: Family, vec: &IntCounterVec, label: &str) -> IntCounter {
        let resolved = self.resolved.of(family);
        if let Some(handle) = resolved.get(label) {
            return handle.clone();
        }
        let handle = vec.with_label_values(&[label]);
        resolved.insert(Box::from(label), handle.clone());
        handle
    }

    /// Exports the counters of these label values at zero, so an alert on them can be
    /// written before the first event.
    pub fn export_at_zero(&self, rejection_codes: &[&'static str], auth_reasons: &[&'static str]) {
        for code in rejection_codes {
            self.resolve(Family::Rejections, &self.rejections, code);
        }
        for reason in auth_reasons {
            self.resolve(Family::Auth, &self.authentication_failures, reason);
        }
        for result in ["success", "error"] {
            self.config_reloads.with_label_values(&[result]);
        }
    }

    /// Exports the per-plan counters of these plans at zero (each config's plans, as
    /// it is installed), so a 429 ratio has a denominator before the first request.
    pub fn export_plans<'a>(&self, plans: impl IntoIterator<Item = &'a str>) {
        for plan in plans {
            self.resolve(Family::RateLimited, &self.rate_limited, plan);
            self.resolve(Family::PlanRequests, &self.plan_requests, plan);
            self.resolve(Family::Metered, &self.metered_units, plan);
        }
    }

    pub fn rejected(&self, code: &'static str) {
        self.resolve(Family::Rejections, &self.rejections, code)
            .inc();
    }

    pub fn authentication_failed(&self, reason: &'static str) {
        self.resolve(Family::Auth, &self.authentication_failures, reason)
            .inc();
    }

    /// The counter of JWKS fetches with this result ("success" or "error").
    pub fn jwks_fetches(&self, result: &str) -> IntCounter {
        self.jwks_fetches.with_label_values(&[result])
    }

    pub fn rate_limited(&self, plan: &str) {
        self.resolve(Family::RateLimited, &self.rate_limited, plan)
            .inc();
    }

    pub fn plan_request(&self, plan: &str) {
        self.resolve(Family::PlanRequests, &self.plan_requests, plan)
            .inc();
    }

    /// The units counter of a plan, to be bumped when the answer's body ends.
    pub fn metered_counter(&self, plan: &str) -> IntCounter {
        self.resolve(Family::Metered, &self.metered_units, plan)
    }

    /// The text exposition, with the gauges read at scrape time. `top` is every
    /// tenant's units today when per-tenant series are on.
    pub fn render(&self, gauges: Gauges, top: Option<(usize, Vec<(String, u64)>)>) -> Vec<u8> {
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let Gauges {
            limiter_keys,
            tenants_active,
            store_pending_rows,
            audit_lines_dropped,
        } = gauges;
        // The sink counts on its own; the counter catches up at each scrape, once
        // however many scrapes run at the same time.
        let exported = self
            .audit_exported
            .fetch_max(audit_lines_dropped, std::sync::atomic::Ordering::AcqRel);
        if audit_lines_dropped > exported {
            self.audit_lines_dropped
                .inc_by(audit_lines_dropped - exported);
        }
        self.store_pending_rows.set(as_i64(store_pending_rows));
        self.limiter_keys.set(as_i64(limiter_keys));
        self.tenants_active.set(as_i64(tenants_active));
        self.tenant_units.reset();
        if let Some((k, mut units)) = top {
            units.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let other: u64 = units.iter().skip(k).map(|(_, u)| u).sum();
            for (tenant, u) in units.iter().take(k) {
                self.tenant_units
                    .with_label_values(&[tenant.as_str()])
                    .set(i64::try_from(*u).unwrap_or(i64::MAX));
            }
            if units.len() > k {
                self.tenant_units
                    .with_label_values(&["other"])
                    .set(i64::try_from(other).unwrap_or(i64::MAX));
            }
        }
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// The gauges read at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    pub limiter_keys: usize,
    pub tenants_active: usize,
    pub store_pending_rows: usize,
    pub audit_lines_dropped: u64,
}
