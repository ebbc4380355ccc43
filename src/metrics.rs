//! Prometheus metrics (SPEC 11), served on the admin listener's `/metrics`. Labels are
//! bounded: route names and plan names come from the config, never a raw tenant id.
//! This is the part the limits and response stages need; the metering issue adds the
//! request, latency and usage families.

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub isolation_violations: IntCounter,
    pub rate_limited: IntCounterVec,
    pub degraded: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_last_success: Gauge,
    limiter_keys: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let isolation_violations = IntCounter::new(
            "tenantgate_isolation_violations_total",
            "Answers withheld because they carried another tenant's ids or could not be inspected.",
        )
        .expect("static metric definition");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "tenantgate_rate_limited_total",
                "Requests refused by a rate limit or an in-flight cap, by plan.",
            ),
            &["plan"],
        )
        .expect("static metric definition");
        let degraded = IntCounterVec::new(
            Opts::new(
                "tenantgate_degraded_total",
                "Requests answered by a route's degrade response, by route.",
            ),
            &["route"],
        )
        .expect("static metric definition");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "tenantgate_config_reloads_total",
                "Config reloads by result (success, error).",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let config_last_success = Gauge::new(
            "tenantgate_config_last_reload_success_timestamp_seconds",
            "Unix time of the last config load that was applied.",
        )
        .expect("static metric definition");
        let limiter_keys = IntGauge::new(
            "tenantgate_limiter_keys",
            "Tenants with limiter state in memory.",
        )
        .expect("static metric definition");
        for collector in [
            Box::new(isolation_violations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rate_limited.clone()),
            Box::new(degraded.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_last_success.clone()),
            Box::new(limiter_keys.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are distinct");
        }
        Self {
            registry,
            isolation_violations,
            rate_limited,
            degraded,
            config_reloads,
            config_last_success,
            limiter_keys,
        }
    }

    /// The text exposition, with the gauges read at scrape time.
    pub fn render(&self, limiter_keys: usize) -> Vec<u8> {
        self.limiter_keys
            .set(i64::try_from(limiter_keys).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
