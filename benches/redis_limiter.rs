//! Stage 3's added latency with `[store] kind = "redis"`: the whole admission (the
//! limit script, and the project read when a project cap applies) against a real
//! `redis-server` child on loopback, beside the local limiter, as p50/p99/p999 over
//! sequential checks and the throughput of 64 concurrent callers.
//! `cargo bench --bench redis_limiter` (needs `redis-server` on the PATH).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenantgate::clock::{Clock, SystemClock};
use tenantgate::config::{self, Overrides};
use tenantgate::identity::{Caller, TenantId};
use tenantgate::limits::{Env, Limiter, RouteLimits};
use tenantgate::store::redis::Redis;
use tenantgate::store::Usage;

const CHECKS: usize = 20_000;
const TENANTS: usize = 1_000;

const CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:9"
[store]
kind = "redis"
url = "${REDIS}"
[limits]
default_plan = "p"
[limits.plans.p]
rate = 1000000
per = "1s"
burst = 1000000
daily_units = 1000000000
[limits.project]
daily_units = 1000000000000
[[route]]
match = "GET /x"
scope = "tenant"
"#;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// What stage 3 reads besides its limiter, as the pipeline hands it over.
struct Stage {
    usage: Usage,
    clock: SystemClock,
    queue_wait: prometheus::Histogram,
}

impl Stage {
    fn new() -> Self {
        let opts = prometheus::HistogramOpts::new("queue_wait", "queue wait");
        Self {
            usage: Usage::in_memory(),
            clock: SystemClock::default(),
            queue_wait: prometheus::Histogram::with_opts(opts).unwrap(),
        }
    }

    fn env(&self) -> Env<'_> {
        Env {
            usage: &self.usage,
            clock: &self.clock as &dyn Clock,
            queue_wait: &self.queue_wait,
        }
    }
}

fn route_limits(snapshot: &config::Snapshot) -> &RouteLimits {
    let config = &snapshot.config;
    let route = config.route.table.iter().next().unwrap();
    &config.rules(route).unwrap().limits
}

async fn measure(label: &str, limiter: &Arc<Limiter>, snapshot: &config::Snapshot) {
    let (config, route) = (&snapshot.config, route_limits(snapshot));
    let stage = Stage::new();
    let env = stage.env();
    let callers: Vec<Caller> = (0..TENANTS)
        .map(|i| Caller::Tenant(TenantId::parse(&format!("user-{i:04}"), None).unwrap()))
        .collect();
    let mut took = Vec::with_capacity(CHECKS);
    for i in 0..CHECKS {
        let mut rated = None;
        let started = Instant::now();
        let admitted = limiter
            .admit(
                &config.limits,
                route,
                &callers[i % TENANTS],
                &env,
                &mut rated,
            )
            .await;
        took.push(started.elapsed());
        assert!(admitted.is_ok(), "check {i} was refused");
    }
    took.sort();
    println!(
        "{label:<28} p50 {:>8.1?}  p99 {:>8.1?}  p99.9 {:>8.1?}  (sequential, {CHECKS} checks over {TENANTS} tenants)",
        percentile(&took, 0.50),
        percentile(&took, 0.99),
        percentile(&took, 0.999)
    );
}

async fn concurrent(label: &str, limiter: &Arc<Limiter>, snapshot: &Arc<config::Snapshot>) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..64 {
        let (limiter, snapshot) = (limiter.clone(), snapshot.clone());
        tasks.push(tokio::spawn(async move {
            let (config, route) = (&snapshot.config, route_limits(&snapshot));
            let stage = Stage::new();
            let env = stage.env();
            let caller = Caller::Tenant(TenantId::parse(&format!("w-{worker}"), None).unwrap());
            for _ in 0..CHECKS / 64 {
                let mut rated = None;
                let admitted = limiter
                    .admit(&config.limits, route, &caller, &env, &mut rated)
                    .await;
                assert!(admitted.is_ok());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rate = (CHECKS / 64 * 64) as f64 / started.elapsed().as_secs_f64();
    println!("{label:<28} {rate:>10.0} checks/s (64 concurrent callers)");
}

fn main() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on the PATH (apt-get install redis-server)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("redis://127.0.0.1:{port}");
        let text = CONFIG.replace("${REDIS}", &url);
        let snapshot = Arc::new(
            config::load_str(&text, "bench.toml", &Overrides::default(), &|_| None).unwrap(),
        );
        let settings = snapshot.config.store.redis.clone().unwrap();
        let redis = Redis::open(&settings).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.ping().await.is_err() {
            assert!(Instant::now() < deadline, "redis-server never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The floor: one PING through the same client and connection.
        let mut pings = Vec::with_capacity(CHECKS);
        for _ in 0..CHECKS {
            let started = Instant::now();
            redis.ping().await.unwrap();
            pings.push(started.elapsed());
        }
        pings.sort();
        println!(
            "{:<28} p50 {:>8.1?}  p99 {:>8.1?}  p99.9 {:>8.1?}",
            "redis PING (the floor)",
            percentile(&pings, 0.50),
            percentile(&pings, 0.99),
            percentile(&pings, 0.999)
        );
        let local = Arc::new(Limiter::default());
        let shared = Arc::new(Limiter::shared(redis, Default::default()));
        measure("local (embedded store)", &local, &snapshot).await;
        measure("redis (rate + quotas)", &shared, &snapshot).await;
        concurrent("local (embedded store)", &local, &snapshot).await;
        concurrent("redis (rate + quotas)", &shared, &snapshot).await;
    });
    let _ = server.kill();
    let _ = server.wait();
}
