//! Stage 3 end to end (SPEC 6): per-tenant GCRA buckets and the project bucket, their
//! headers, `cost`, the in-flight cap, queueing, daily quotas with UTC rollover, and
//! degradation. Time is a manual clock except where queueing must really wait.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Proxy, RawResponse, Reply, Upstream, PATIENCE};
use tenantgate::app::Services;
use tenantgate::clock::ManualClock;
use tenantgate::store::Usage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// 2026-11-22T23:00:00Z: an hour before a UTC midnight.
const START: Duration = Duration::from_secs(1_795_388_400);

const RATES: &str = r#"
[upstream]
url = "${UPSTREAM}"
[tenant]
privileged_token = "p-token"
[limits]
default_plan = "free"
[limits.plans.free]
rate = 1
per = "1s"
burst = 3
[limits.plans.pro]
rate = 10
per = "1s"
burst = 10
[limits.project]
rate = 1
per = "2s"
burst = 2
[tenants.acme]
plan = "pro"
burst = 5
[[route]]
match = "GET /cheap"
scope = "tenant"
[[route]]
match = "GET /dear"
scope = "tenant"
cost = 2
[[route]]
match = "GET /shared"
scope = "shared"
[[route]]
match = "POST /admin-op"
scope = "privileged"
"#;

struct Setup {
    proxy: Proxy,
    upstream: Upstream,
    clock: Arc<ManualClock>,
}

async fn setup(config: &str) -> Setup {
    let upstream = Upstream::ok().await;
    let clock = Arc::new(ManualClock::at(START));
    let services = Services {
        clock: clock.clone(),
        usage: Arc::new(Usage::in_memory()),
        ..Services::default()
    };
    let proxy = Proxy::start_with(config, &upstream, services).await;
    Setup {
        proxy,
        upstream,
        clock,
    }
}

impl Setup {
    async fn get(&self, path: &str, tenant: Option<&str>) -> RawResponse {
        let header = tenant.map(|t| format!("X-Tenant-Id: {t}"));
        let headers: Vec<&str> = header.iter().map(String::as_str).collect();
        self.proxy.send("GET", path, &headers, b"").await
    }
}

fn header<'r>(response: &'r RawResponse, name: &str) -> &'r str {
    response
        .header(name)
        .unwrap_or_else(|| panic!("no {name} in {response:?}"))
}

#[tokio::test]
async fn exactly_burst_pass_then_429_with_headers_then_refill_at_pace() {
    let s = setup(RATES).await;
    let start_unix = START.as_secs();
    for left in ["2", "1", "0"] {
        let ok = s.get("/cheap", Some("alice")).await;
        assert_eq!(ok.status, 200, "{ok:?}");
        assert_eq!(header(&ok, "x-ratelimit-limit"), "3");
        assert_eq!(header(&ok, "x-ratelimit-remaining"), left);
        assert_eq!(header(&ok, "ratelimit-policy"), r#""free";q=3;w=3"#);
    }
    let last_ok_reset = start_unix + 3;
    let refused = s.get("/cheap", Some("alice")).await;
    refused.assert_refusal(429, "rate_limited");
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(header(&refused, "x-ratelimit-remaining"), "0");
    assert_eq!(
        header(&refused, "x-ratelimit-reset"),
        last_ok_reset.to_string()
    );
    assert_eq!(header(&refused, "ratelimit"), r#""free";r=0;t=3"#);
    assert_eq!(
        s.upstream.requests().len(),
        3,
        "the refused request never went up"
    );

    // One token per second: not a moment early.
    s.clock.advance(Duration::from_millis(999));
    s.get("/cheap", Some("alice"))
        .await
        .assert_refusal(429, "rate_limited");
    s.clock.advance(Duration::from_millis(1));
    assert_eq!(s.get("/cheap", Some("alice")).await.status, 200);
    s.get("/cheap", Some("alice"))
        .await
        .assert_refusal(429, "rate_limited");
    s.clock.advance(Duration::from_secs(3));
    let full = s.get("/cheap", Some("alice")).await;
    assert_eq!(header(&full, "x-ratelimit-remaining"), "2");
}

#[tokio::test]
async fn tenants_never_share_a_bucket_and_overrides_apply() {
    let s = setup(RATES).await;
    for _ in 0..3 {
        assert_eq!(s.get("/cheap", Some("alice")).await.status, 200);
    }
    s.get("/cheap", Some("alice"))
        .await
        .assert_refusal(429, "rate_limited");
    let bob = s.get("/cheap", Some("bob")).await;
    assert_eq!(bob.status, 200);
    assert_eq!(header(&bob, "x-ratelimit-remaining"), "2");
    // acme: plan pro (rate 10/s) with its own burst of 5.
    for _ in 0..5 {
        let ok = s.get("/cheap", Some("acme")).await;
        assert_eq!(ok.status, 200);
        assert_eq!(header(&ok, "ratelimit-policy"), r#""pro";q=5;w=1"#);
    }
    s.get("/cheap", Some("acme"))
        .await
        .assert_refusal(429, "rate_limited");
    s.clock.advance(Duration::from_millis(100));
    assert_eq!(s.get("/cheap", Some("acme")).await.status, 200);
}

#[tokio::test]
async fn unscoped_and_privileged_calls_share_the_project_bucket() {
    let s = setup(RATES).await;
    let shared = s.get("/shared", None).await;
    assert_eq!(shared.status, 200);
    assert_eq!(header(&shared, "ratelimit-policy"), r#""project";q=2;w=4"#);
    let privileged = s
        .proxy
        .send("POST", "/admin-op", &["X-Tenantgate-Token: p-token"], b"")
        .await;
    assert_eq!(privileged.status, 200);
    assert_eq!(header(&privileged, "x-ratelimit-remaining"), "0");
    let refused = s.get("/shared", None).await;
    refused.assert_refusal(429, "rate_limited");
    assert_eq!(header(&refused, "retry-after"), "2");
    // A shared call that names a tenant is that tenant's.
    let named = s.get("/shared", Some("alice")).await;
    assert_eq!(named.status, 200);
    assert_eq!(header(&named, "ratelimit-policy"), r#""free";q=3;w=3"#);
}

#[tokio::test]
async fn cost_takes_that_many_tokens() {
    let s = setup(RATES).await;
    let first = s.get("/dear", Some("alice")).await;
    assert_eq!(header(&first, "x-ratelimit-remaining"), "1");
    let refused = s.get("/dear", Some("alice")).await;
    refused.assert_refusal(429, "rate_limited");
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(s.get("/cheap", Some("alice")).await.status, 200);
}

#[tokio::test]
async fn check_refuses_a_cost_no_bucket_can_pay() {
    let text = RATES.replace("cost = 2", "cost = 4");
    let err = tenantgate::config::load_str(
        &text.replace("${UPSTREAM}", "http://127.0.0.1:1"),
        "t.toml",
        &Default::default(),
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cost 4 is more than the burst 3 of plan \"free\""),
        "{err}"
    );
}

const CONCURRENT: &str = r#"
[upstream]
url = "${UPSTREAM}"
[limits]
default_plan = "one"
[limits.plans.one]
max_concurrent = 1
[[route]]
match = "GET /stream"
scope = "tenant"
response.passthrough = true
"#;

#[tokio::test]
async fn max_concurrent_counts_requests_until_their_body_ends() {
    let upstream = Upstream::start(|_| Reply::Gated(b"first;", b"rest")).await;
    let proxy = Proxy::start(CONCURRENT, &upstream).await;
    let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
    slow.write_all(&common::request_bytes(
        "GET",
        "/stream",
        &["X-Tenant-Id: alice"],
        b"",
    ))
    .await
    .unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&received).contains("first;") {
            let n = slow.read(&mut buf).await.unwrap();
            assert!(n > 0);
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap();

    let second = proxy
        .send("GET", "/stream", &["X-Tenant-Id: alice"], b"")
        .await;
    second.assert_refusal(429, "rate_limited");
    assert_eq!(header(&second, "retry-after"), "1");
    assert_eq!(upstream.requests().len(), 1);

    upstream.gate.notify_one();
    tokio::time::timeout(PATIENCE, slow.read_to_end(&mut received))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(common::parse_response(&received).body, b"first;rest");
    // The slot is free again once the body has ended (the gate of the next request is
    // opened in advance so it completes).
    upstream.gate.notify_one();
    let mut freed = false;
    for _ in 0..50 {
        let third = proxy
            .send("GET", "/stream", &["X-Tenant-Id: alice"], b"")
            .await;
        if third.status == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(freed, "the in-flight slot was released");
}

const QUEUE: &str = r#"
[upstream]
url = "${UPSTREAM}"
[limits]
default_plan = "q"
[limits.plans.q]
rate = 10
per = "1s"
burst = 1
overflow = "queue"
max_wait = "MAX_WAIT"
max_queue = MAX_QUEUE
[[route]]
match = "GET /q"
scope = "tenant"
"#;

async fn queued_proxy(max_wait: &str, max_queue: u32) -> (Proxy, Upstream) {
    let upstream = Upstream::ok().await;
    let text = QUEUE
        .replace("MAX_WAIT", max_wait)
        .replace("MAX_QUEUE", &max_queue.to_string());
    let proxy = Proxy::start(&text, &upstream).await;
    (proxy, upstream)
}

/// Sends `n` requests for `tenant` at once; each finishes with its status and when.
fn burst(proxy: &Proxy, tenant: &str, n: usize) -> Vec<tokio::task::JoinHandle<(u16, Duration)>> {
    let started = Instant::now();
    (0..n)
        .map(|_| {
            let addr = proxy.addr;
            let header = format!("X-Tenant-Id: {tenant}");
            tokio::spawn(async move {
                let request = common::request_bytes("GET", "/q", &[&header], b"");
                let response = common::raw(addr, &request).await;
                (response.status, started.elapsed())
            })
        })
        .collect()
}

async fn outcomes(handles: Vec<tokio::task::JoinHandle<(u16, Duration)>>) -> Vec<(u16, Duration)> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out.sort_by_key(|(_, at)| *at);
    out
}

#[tokio::test]
async fn queue_mode_delays_a_burst_to_its_slots() {
    let (proxy, upstream) = queued_proxy("1s", 8).await;
    let done = outcomes(burst(&proxy, "alice", 3)).await;
    let statuses: Vec<u16> = done.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200], "delayed, not refused");
    // Slots are 100 ms apart; a sleep never ends early.
    assert!(done[1].1 >= Duration::from_millis(100), "{done:?}");
    assert!(done[2].1 >= Duration::from_millis(200), "{done:?}");
    assert!(done[2].1 < Duration::from_secs(1), "{done:?}");
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn queue_mode_refuses_beyond_max_wait() {
    let (proxy, _upstream) = queued_proxy("150ms", 8).await;
    let done = outcomes(burst(&proxy, "alice", 3)).await;
    let mut statuses: Vec<u16> = done.iter().map(|(s, _)| *s).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 429]);
}

#[tokio::test]
async fn a_full_queue_refuses_and_delays_no_other_tenant() {
    let (proxy, _upstream) = queued_proxy("2s", 2).await;
    // alice: one served, two queued (100 and 200 ms), the rest refused at once.
    let alice = burst(&proxy, "alice", 5);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let before = Instant::now();
    let bob = proxy.send("GET", "/q", &["X-Tenant-Id: bob"], b"").await;
    let bob_took = before.elapsed();
    assert_eq!(bob.status, 200);
    let still_waiting = alice.iter().filter(|h| !h.is_finished()).count();
    assert!(
        still_waiting >= 1,
        "bob was served while alice's queue still waited ({bob_took:?})"
    );
    let done = outcomes(alice).await;
    let mut statuses: Vec<u16> = done.iter().map(|(s, _)| *s).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
}

const QUOTAS: &str = r#"
[upstream]
url = "${UPSTREAM}"
[limits]
default_plan = "free"
[limits.plans.free]
daily_units = 4
soft_cap = 0.5
[limits.project]
daily_units = 10
degrade_at = 0.8
[[route]]
match = "POST /v1/add"
scope = "tenant"
[[route]]
match = "POST /v1/search"
scope = "tenant"
degradable = true
[route.degrade]
body = '{"results": []}'
"#;

impl Setup {
    async fn post(&self, path: &str, tenant: &str) -> RawResponse {
        let header = format!("X-Tenant-Id: {tenant}");
        self.proxy.send("POST", path, &[&header], b"").await
    }
}

#[tokio::test]
async fn quota_counts_2xx_units_and_rolls_over_at_utc_midnight() {
    let s = setup(QUOTAS).await;
    for left in ["3", "2", "1", "0"] {
        let ok = s.post("/v1/add", "alice").await;
        assert_eq!(ok.status, 200);
        assert_eq!(header(&ok, "x-quota-limit"), "4");
        assert_eq!(header(&ok, "x-quota-remaining"), left);
    }
    let refused = s.post("/v1/add", "alice").await;
    refused.assert_refusal(429, "quota_exceeded");
    assert_eq!(
        header(&refused, "retry-after"),
        "3600",
        "an hour to midnight"
    );
    assert_eq!(s.upstream.requests().len(), 4);
    // Bob has his own quota.
    assert_eq!(s.post("/v1/add", "bob").await.status, 200);

    s.clock.advance(Duration::from_secs(3599));
    let late = s.post("/v1/add", "alice").await;
    late.assert_refusal(429, "quota_exceeded");
    assert_eq!(header(&late, "retry-after"), "1");
    s.clock.advance(Duration::from_secs(1));
    let next_day = s.post("/v1/add", "alice").await;
    assert_eq!(next_day.status, 200);
    assert_eq!(header(&next_day, "x-quota-remaining"), "3");
}

#[tokio::test]
async fn non_2xx_answers_cost_no_units() {
    let upstream = Upstream::start(|_| Reply::With(500, r#"{"error":"boom"}"#, vec![])).await;
    let services = Services {
        clock: Arc::new(ManualClock::at(START)),
        usage: Arc::new(Usage::in_memory()),
        ..Services::default()
    };
    let proxy = Proxy::start_with(QUOTAS, &upstream, services).await;
    for _ in 0..6 {
        let failed = proxy
            .send("POST", "/v1/add", &["X-Tenant-Id: alice"], b"")
            .await;
        assert_eq!(failed.status, 500);
        assert_eq!(header(&failed, "x-quota-remaining"), "4");
    }
}

#[tokio::test]
async fn degradable_routes_degrade_past_the_soft_cap_for_free() {
    let s = setup(QUOTAS).await;
    assert_eq!(s.post("/v1/search", "alice").await.status, 200);
    assert_eq!(s.post("/v1/add", "alice").await.status, 200);
    // 2 of 4 units used: soft_cap 0.5 reached.
    for _ in 0..3 {
        let degraded = s.post("/v1/search", "alice").await;
        assert_eq!(degraded.status, 200);
        assert_eq!(degraded.body, br#"{"results": []}"#);
        assert_eq!(header(&degraded, "x-tenantgate-degraded"), "1");
        assert_eq!(header(&degraded, "content-type"), "application/json");
        assert_eq!(
            header(&degraded, "x-quota-remaining"),
            "2",
            "costs no units"
        );
    }
    assert_eq!(
        s.upstream.requests().len(),
        2,
        "degraded answers never go up"
    );
    let add = s.post("/v1/add", "alice").await;
    assert_eq!(add.status, 200, "other routes still work");
    assert!(add.header("x-tenantgate-degraded").is_none());
    let bob = s.post("/v1/search", "bob").await;
    assert!(
        bob.header("x-tenantgate-degraded").is_none(),
        "bob is not past his cap"
    );
}

#[tokio::test]
async fn the_project_degrades_at_degrade_at_and_stops_at_its_cap() {
    let s = setup(QUOTAS).await;
    // 8 units across four tenants: the project is at degrade_at (0.8 × 10).
    for tenant in ["a", "b", "c", "d"] {
        for _ in 0..2 {
            assert_eq!(s.post("/v1/add", tenant).await.status, 200);
        }
    }
    let fresh = s.post("/v1/search", "newcomer").await;
    assert_eq!(header(&fresh, "x-tenantgate-degraded"), "1");
    assert_eq!(s.post("/v1/add", "e").await.status, 200);
    assert_eq!(s.post("/v1/add", "e").await.status, 200);
    // 10 units: every metered call is refused, whoever makes it.
    let capped = s.post("/v1/add", "f").await;
    capped.assert_refusal(429, "quota_exceeded");
    assert_eq!(header(&capped, "retry-after"), "3600");
    let degraded = s.post("/v1/search", "f").await;
    assert_eq!(
        header(&degraded, "x-tenantgate-degraded"),
        "1",
        "degradable routes keep answering for free"
    );
}

#[tokio::test]
async fn check_requires_a_degrade_answer_for_degradable_routes() {
    let text = QUOTAS
        .replace("[route.degrade]\nbody = '{\"results\": []}'\n", "")
        .replace("${UPSTREAM}", "http://127.0.0.1:1");
    let err = tenantgate::config::load_str(&text, "t.toml", &Default::default(), &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("degradable = true needs a [route.degrade]"),
        "{err}"
    );
}

#[tokio::test]
async fn full_buckets_are_evicted_and_the_gauge_and_counters_say_so() {
    let s = setup(RATES).await;
    for tenant in ["a", "b", "c"] {
        assert_eq!(s.get("/cheap", Some(tenant)).await.status, 200);
    }
    for _ in 0..3 {
        s.get("/cheap", Some("a")).await;
    }
    let metrics = |s: &Setup| {
        let admin = s.proxy.admin;
        async move {
            let response =
                common::raw(admin, &common::request_bytes("GET", "/metrics", &[], b"")).await;
            String::from_utf8(response.body).unwrap()
        }
    };
    let before = metrics(&s).await;
    assert!(before.contains("tenantgate_limiter_keys 3"), "{before}");
    assert!(
        before.contains(r#"tenantgate_rate_limited_total{plan="free"} 1"#),
        "{before}"
    );
    let app = s.proxy.running.as_ref().unwrap().app.clone();
    // One entry a tenant: the buckets sit in the table usage keeps its days in and the
    // leak guard reads, beside the tenant's other state.
    assert!(std::sync::Arc::ptr_eq(app.usage.table(), &app.tenants));
    assert!(app.tenants.bucket("a").is_some());
    assert!(app.tenants.knows("a"));
    app.limiter
        .sweep(tenantgate::clock::Clock::mono(s.clock.as_ref()));
    assert_eq!(app.limiter.keys(), 3, "buckets still refilling are kept");
    s.clock.advance(Duration::from_secs(3));
    app.limiter
        .sweep(tenantgate::clock::Clock::mono(s.clock.as_ref()));
    let after = metrics(&s).await;
    assert!(after.contains("tenantgate_limiter_keys 0"), "{after}");
    assert!(app.tenants.bucket("a").is_none(), "the bucket went");
    assert!(app.tenants.knows("a"), "the tenant is still known");
    // A forgotten bucket is a full one: nothing is lost by evicting it.
    let fresh = s.get("/cheap", Some("a")).await;
    assert_eq!(header(&fresh, "x-ratelimit-remaining"), "2");
}

/// Opens a request whose answer streams `first;` and then waits for the gate.
async fn hold_open(proxy: &Proxy, tenant: &str) -> TcpStream {
    let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
    let header = format!("X-Tenant-Id: {tenant}");
    slow.write_all(&common::request_bytes("GET", "/stream", &[&header], b""))
        .await
        .unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&received).contains("first;") {
            let n = slow.read(&mut buf).await.unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&received));
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap();
    slow
}

async fn finish(upstream: &Upstream, mut slow: TcpStream) {
    upstream.gate.notify_one();
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, slow.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
}

/// Waits until alice's one in-flight slot is free again (released at body end).
async fn slot_free(proxy: &Proxy) -> RawResponse {
    for _ in 0..100 {
        let quick = proxy
            .send("GET", "/quick", &["X-Tenant-Id: alice"], b"")
            .await;
        if quick.status == 200 {
            return quick;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("alice's in-flight slot was never released");
}

#[tokio::test]
async fn offboarding_under_load_keeps_in_flight_counts_exact_and_the_tenant_returns() {
    let upstream = Upstream::start(|seen| match seen.target.as_str() {
        "/stream" => Reply::Gated(b"first;", b"rest"),
        _ => Reply::Ok,
    })
    .await;
    let config = format!(
        "{CONCURRENT}\n[[route]]\nmatch = \"GET /quick\"\nscope = \"tenant\"\n[admin]\ntoken = \"admin-token\"\n"
    );
    let proxy = Proxy::start(&config, &upstream).await;
    let token = "Authorization: Bearer admin-token";
    let quick = || proxy.send("GET", "/quick", &["X-Tenant-Id: alice"], b"");

    let first = hold_open(&proxy, "alice").await;
    // Offboarding blocks alice at once, then waits for the request already in flight.
    let request = common::request_bytes("DELETE", "/admin/tenants/alice", &[token], b"");
    let admin = proxy.admin;
    let offboarding = tokio::spawn(async move { common::raw(admin, &request).await });
    let mut blocked = false;
    for _ in 0..100 {
        if quick().await.status == 403 {
            blocked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        blocked,
        "alice is refused as blocked while offboarding runs"
    );
    assert!(
        !offboarding.is_finished(),
        "it waits for the request in flight"
    );
    finish(&upstream, first).await;
    let offboarded = offboarding.await.unwrap();
    assert_eq!(offboarded.status, 200, "{:?}", offboarded.json());

    // Back and served, and its slots are counted exactly: the old request's slot was
    // released once, against the bucket it came from.
    slot_free(&proxy).await;
    let second = hold_open(&proxy, "alice").await;
    quick().await.assert_refusal(429, "rate_limited");
    finish(&upstream, second).await;
    slot_free(&proxy).await;
}

#[tokio::test]
async fn an_offboarding_tenant_is_refused_as_blocked() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONCURRENT, &upstream).await;
    let app = &proxy.running.as_ref().unwrap().app;
    let blocked = app.offboarding.begin("alice");
    proxy
        .send("GET", "/stream", &["X-Tenant-Id: alice"], b"")
        .await
        .assert_refusal(403, "tenant_blocked");
    let bob = proxy
        .send("GET", "/stream", &["X-Tenant-Id: bob"], b"")
        .await;
    assert_eq!(bob.status, 200);
    drop(blocked);
    let alice = proxy
        .send("GET", "/stream", &["X-Tenant-Id: alice"], b"")
        .await;
    assert_eq!(alice.status, 200);
    assert_eq!(upstream.requests().len(), 2);
}

const HELD: &str = r#"
[upstream]
url = "${UPSTREAM}"
[limits]
default_plan = "free"
[limits.plans.free]
daily_units = 4
[[route]]
match = "GET /stream"
scope = "tenant"
response.passthrough = true
[[route]]
match = "GET /quick"
scope = "tenant"
[[route]]
match = "GET /fail"
scope = "tenant"
"#;

#[tokio::test]
async fn requests_in_flight_hold_their_units_so_a_burst_at_the_cap_cannot_all_pass() {
    let upstream = Upstream::start(|seen| match seen.target.as_str() {
        "/stream" => Reply::Gated(b"first;", b"rest"),
        "/fail" => Reply::With(503, r#"{"error":"busy"}"#, vec![]),
        _ => Reply::Ok,
    })
    .await;
    let proxy = Proxy::start(HELD, &upstream).await;
    let quick = || proxy.send("GET", "/quick", &["X-Tenant-Id: alice"], b"");
    for _ in 0..3 {
        assert_eq!(quick().await.status, 200);
    }
    // One unit left: the request that takes it holds it while its answer streams, so
    // every other request until it ends is refused before reaching the upstream.
    let first = hold_open(&proxy, "alice").await;
    for _ in 0..4 {
        quick().await.assert_refusal(429, "quota_exceeded");
    }
    assert_eq!(upstream.requests().len(), 4);
    // Bob's quota is his own.
    let bob = proxy
        .send("GET", "/quick", &["X-Tenant-Id: bob"], b"")
        .await;
    assert_eq!(bob.status, 200);
    finish(&upstream, first).await;
    quick().await.assert_refusal(429, "quota_exceeded");
}

#[tokio::test]
async fn an_answer_that_costs_nothing_gives_its_held_units_back() {
    let upstream = Upstream::start(|seen| match seen.target.as_str() {
        "/fail" => Reply::With(503, r#"{"error":"busy"}"#, vec![]),
        _ => Reply::Ok,
    })
    .await;
    let proxy = Proxy::start(HELD, &upstream).await;
    let send = |path: &'static str| proxy.send("GET", path, &["X-Tenant-Id: alice"], b"");
    for _ in 0..3 {
        assert_eq!(send("/quick").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(send("/fail").await.status, 503);
    }
    let last = send("/quick").await;
    assert_eq!(last.status, 200);
    assert_eq!(header(&last, "x-quota-remaining"), "0");
    send("/quick").await.assert_refusal(429, "quota_exceeded");
}
