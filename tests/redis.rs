//! `[store] kind = "redis"` (SPEC 8): two tenantgate replicas, each with its own
//! limiter, usage and records, sharing only a real `redis-server` child. Rate limits
//! are exact across them, quotas and usage are shared, ownership learned through one
//! is enforced by the other, provisioning runs once; with Redis killed mid-load each
//! `on_store_error` mode does what it says, and no usage is lost or counted twice.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Proxy, RawResponse, RedisServer, Reply, Seen, Upstream, PATIENCE};

const ADMIN: &str = "Authorization: Bearer admin-token";

const BASE: &str = r#"
[upstream]
url = "${UPSTREAM}"
[admin]
token = "admin-token"
[store]
kind = "redis"
url = "${REDIS}"
flush = "0s"
replicas = 2
on_store_error = "${MODE}"
# Killed Redis refuses at once; a generous timeout keeps a loaded CI machine from
# reading as an outage.
timeout = "2s"
"#;

const RATE: &str = r#"
[limits]
default_plan = "free"
[limits.plans.free]
rate = 1
per = "1h"
burst = 6
[[route]]
match = "GET /items"
scope = "tenant"
"#;

struct Pair {
    redis: RedisServer,
    upstream: Upstream,
    a: Proxy,
    b: Proxy,
}

impl Pair {
    async fn start(mode: &str, rest: &str, upstream: Upstream) -> Self {
        let redis = RedisServer::start().await;
        let config = format!("{BASE}{rest}")
            .replace("${REDIS}", &redis.url())
            .replace("${MODE}", mode);
        let a = Proxy::start_shared(&config, &upstream).await;
        let b = Proxy::start_shared(&config, &upstream).await;
        Self {
            redis,
            upstream,
            a,
            b,
        }
    }

    fn replica(&self, i: usize) -> &Proxy {
        if i.is_multiple_of(2) {
            &self.a
        } else {
            &self.b
        }
    }

    /// Until both replicas have written every row they hold.
    async fn flushed(&self) {
        for proxy in [&self.a, &self.b] {
            let started = std::time::Instant::now();
            while proxy.metric("tenantgate_store_pending_rows").await > 0.0 {
                if started.elapsed() >= PATIENCE {
                    let metrics = proxy.admin_get("/metrics", &[]).await.text();
                    let lines: Vec<&str> =
                        metrics.lines().filter(|l| l.contains("store")).collect();
                    panic!("usage never flushed: {lines:#?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Settings for a client of `server`, as a test opens one directly.
fn redis_settings(
    server: &RedisServer,
    timeout: Duration,
    key_prefix: &str,
) -> tenantgate::store::settings::RedisSettings {
    tenantgate::store::settings::RedisSettings {
        url: server.url(),
        on_error: Default::default(),
        replicas: 1,
        timeout,
        key_prefix: key_prefix.to_owned(),
        ca_file: None,
    }
}

async fn get(proxy: &Proxy, path: &str, tenant: &str) -> RawResponse {
    let header = format!("X-Tenant-Id: {tenant}");
    proxy.send("GET", path, &[header.as_str()], b"").await
}

async fn admin(proxy: &Proxy, path: &str) -> serde_json::Value {
    let response = proxy.admin_get(path, &[ADMIN]).await;
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.json()
}

#[tokio::test]
async fn a_burst_is_exact_across_replicas() {
    let pair = Pair::start("local_fallback", RATE, Upstream::ok().await).await;
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    for i in 0..10 {
        let response = get(pair.replica(i), "/items", "alice").await;
        statuses.push(response.status);
        remaining.push(response.header("x-ratelimit-remaining").map(str::to_owned));
    }
    // Six tokens in all, whichever replica each request reached.
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429, 429, 429, 429]);
    let left: Vec<&str> = remaining
        .iter()
        .take(6)
        .flatten()
        .map(String::as_str)
        .collect();
    assert_eq!(left, ["5", "4", "3", "2", "1", "0"]);
    assert_eq!(pair.upstream.requests().len(), 6);
    // Another tenant has its own bucket.
    assert_eq!(get(&pair.b, "/items", "bob").await.status, 200);
    let refused = get(&pair.a, "/items", "alice").await;
    refused.assert_refusal(429, "rate_limited");
    assert!(refused.header("retry-after").is_some());
    // The bucket expires with the tenant's idleness, so idle tenants cost nothing.
    let ttl = pair
        .redis
        .command(&["PTTL", "tenantgate:{t:alice}:rate"])
        .await;
    let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
    assert!(ttl > 0 && ttl <= 6 * 3_600_000 + 1_000, "pttl {ttl}");
}

const QUOTA: &str = r#"
[limits]
default_plan = "metered"
[limits.plans.metered]
daily_units = 5
[[route]]
match = "GET /items"
scope = "tenant"
"#;

#[tokio::test]
async fn a_daily_quota_is_shared_by_every_replica() {
    let pair = Pair::start("local_fallback", QUOTA, Upstream::ok().await).await;
    for _ in 0..3 {
        assert_eq!(get(&pair.a, "/items", "alice").await.status, 200);
    }
    pair.flushed().await;
    // B has never seen alice: it reads her usage from Redis.
    assert_eq!(get(&pair.b, "/items", "alice").await.status, 200);
    assert_eq!(get(&pair.b, "/items", "alice").await.status, 200);
    pair.flushed().await;
    get(&pair.a, "/items", "alice")
        .await
        .assert_refusal(429, "quota_exceeded");
    get(&pair.b, "/items", "alice")
        .await
        .assert_refusal(429, "quota_exceeded");
    assert_eq!(get(&pair.b, "/items", "bob").await.status, 200);
    assert_eq!(pair.upstream.requests().len(), 6);
}

const METERED: &str = r#"
[[route]]
match = "GET /items"
scope = "tenant"
"#;

#[tokio::test]
async fn usage_from_both_sums_exactly_and_reads_the_same_on_both() {
    let pair = Pair::start("local_fallback", METERED, Upstream::ok().await).await;
    for i in 0..40 {
        let tenant = if i % 4 == 3 { "bob" } else { "alice" };
        assert_eq!(get(pair.replica(i), "/items", tenant).await.status, 200);
    }
    pair.flushed().await;
    let on_a = admin(&pair.a, "/usage/by-user").await;
    let on_b = admin(&pair.b, "/usage/by-user").await;
    assert_eq!(on_a, on_b);
    let events = |rows: &serde_json::Value, user: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["user_id"] == user)
            .map(|r| r["events"].as_u64().unwrap())
    };
    assert_eq!(events(&on_a, "alice"), Some(30));
    assert_eq!(events(&on_a, "bob"), Some(10));
    let tenants_a = admin(&pair.a, "/admin/tenants").await;
    let tenants_b = admin(&pair.b, "/admin/tenants").await;
    assert_eq!(tenants_a, tenants_b);
    let alice = admin(&pair.b, "/usage/users/alice?days=1").await;
    assert_eq!(alice["days"][0]["events"], 30);
    // Offboarding through one replica erases the shared rows for both.
    let erased = pair
        .a
        .send_admin("DELETE", "/admin/tenants/bob", &[ADMIN])
        .await;
    assert_eq!(erased.status, 200, "{}", erased.text());
    let after = admin(&pair.b, "/usage/by-user").await;
    assert_eq!(events(&after, "bob"), None, "{after}");
    assert_eq!(events(&after, "alice"), Some(30));
}

const OWNED: &str = r#"
[[provision]]
request = "POST /tenants"
json = '{"name": "{ns}"}'
ok = [200, 409]

[[route]]
match = "POST /collections"
scope = "tenant"
response.learn = { "/id" = "collection" }

[[route]]
match = "GET /collections"
scope = "tenant"
response.keep = { items = "", owned = "collection", at = "/id" }

[[route]]
match = "GET /collections/{id}"
scope = "tenant"
rewrite.path = { id = "owned:collection" }

[[route]]
match = "DELETE /collections/{id}"
scope = "tenant"
rewrite.path = { id = "owned:collection" }
response.forget = true
"#;

/// Mints `c-NAME` for a collection named NAME; provisioning is slow, so that two
/// replicas' first requests overlap.
fn backend(provisioned: Arc<AtomicUsize>) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |seen: &Seen| match (seen.method.as_str(), seen.target.as_str()) {
        ("POST", "/tenants") => {
            provisioned.fetch_add(1, Ordering::SeqCst);
            Reply::After(Duration::from_millis(300))
        }
        ("POST", "/collections") => {
            let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap_or_default();
            let name = body["name"].as_str().unwrap_or("x");
            Reply::json(201, format!(r#"{{"id":"c-{name}"}}"#))
        }
        ("GET", "/collections") => Reply::json(
            200,
            r#"[{"id":"c-a1"},{"id":"c-b1"},{"id":"c-nobody"}]"#.to_owned(),
        ),
        _ => Reply::json(200, r#"{"ok":true}"#.to_owned()),
    }
}

async fn create(proxy: &Proxy, tenant: &str, name: &str) -> RawResponse {
    let header = format!("X-Tenant-Id: {tenant}");
    let body = format!(r#"{{"name":"{name}"}}"#);
    proxy
        .send(
            "POST",
            "/collections",
            &[header.as_str(), "Content-Type: application/json"],
            body.as_bytes(),
        )
        .await
}

/// The ids a list answer kept for `tenant`, read through `proxy`.
async fn listed(proxy: &Proxy, tenant: &str) -> Vec<String> {
    let list = get(proxy, "/collections", tenant).await.json();
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls (bounded) until the list `tenant` sees through `proxy` is `expected`.
async fn until_listed(proxy: &Proxy, tenant: &str, expected: &[&str]) {
    let started = std::time::Instant::now();
    loop {
        let ids = listed(proxy, tenant).await;
        if ids == expected {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "{tenant} sees {ids:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn ownership_learned_through_one_replica_is_enforced_by_the_other() {
    let provisioned = Arc::new(AtomicUsize::new(0));
    let upstream = Upstream::start(backend(provisioned.clone())).await;
    let mut pair = Pair::start("local_fallback", OWNED, upstream).await;
    assert_eq!(create(&pair.a, "alice", "a1").await.status, 201);
    // An id A taught alice is not bob's to claim through B, which never saw it: the
    // claim script in Redis decides, not B's view.
    create(&pair.b, "bob", "a1")
        .await
        .assert_refusal(502, "isolation_violation");
    // A list answer through B, which never saw the answer that taught the id nor a
    // request naming it, keeps it for alice (B follows every claim) and for nobody
    // else.
    until_listed(&pair.b, "alice", &["c-a1"]).await;
    assert!(listed(&pair.b, "bob").await.is_empty());
    assert_eq!(get(&pair.b, "/collections/c-a1", "alice").await.status, 200);
    get(&pair.b, "/collections/c-a1", "bob")
        .await
        .assert_refusal(404, "not_found");
    // Forgotten through B, gone for A too.
    let header = "X-Tenant-Id: alice";
    let deleted = pair
        .b
        .send("DELETE", "/collections/c-a1", &[header], b"")
        .await;
    assert_eq!(deleted.status, 200);
    // A's list follows the release before anything asks A about the id.
    until_listed(&pair.a, "alice", &[]).await;
    get(&pair.a, "/collections/c-a1", "alice")
        .await
        .assert_refusal(404, "not_found");
    let forwarded = pair
        .upstream
        .requests()
        .iter()
        .filter(|s| s.target == "/collections/c-a1")
        .count();
    assert_eq!(
        forwarded, 2,
        "only alice's GET and DELETE reached the backend"
    );
    // While Redis is away an owned id is not judged on this replica's guess.
    assert_eq!(create(&pair.a, "alice", "a2").await.status, 201);
    pair.redis.kill();
    get(&pair.b, "/collections/c-a2", "alice")
        .await
        .assert_refusal(503, "store_unavailable");
}

#[tokio::test]
async fn an_admission_counts_a_batch_in_flight_once() {
    use tenantgate::store::redis::limits::Ask;
    use tenantgate::store::redis::{usage::RedisUsage, Redis};
    use tenantgate::store::{Backend, Batch, Counters};

    let server = RedisServer::start().await;
    let settings = redis_settings(&server, Duration::from_secs(1), "tg");
    let redis = Redis::open(&settings).unwrap();
    let day = 20_000;
    let written = RedisUsage(redis.clone());
    tokio::task::spawn_blocking(move || {
        let row = Counters {
            events: 1,
            units: 3,
            ..Counters::default()
        };
        let batch = Batch {
            id: 5,
            origin: None,
            tenants: [((day, Box::from("kim")), row)].into(),
            project: [(day, row)].into(),
        };
        written.write(&batch).unwrap();
    })
    .await
    .unwrap();
    let ask = |landing| Ask {
        tenant: Some("kim"),
        day,
        rate: None,
        cost: 1,
        max_wait: None,
        soft: None,
        room: Some(100),
        landing,
        project: None,
    };
    // Batch 5 has landed: its 3 units are in the row, and not added again.
    assert_eq!(redis.admit(&ask(Some((5, 3)))).await.unwrap().units, 3);
    // Batch 6 is still on its way: its units count beside the row's.
    assert_eq!(redis.admit(&ask(Some((6, 2)))).await.unwrap().units, 5);
    assert_eq!(redis.admit(&ask(None)).await.unwrap().units, 3);
}

#[tokio::test]
async fn provisioning_runs_once_across_replicas() {
    let provisioned = Arc::new(AtomicUsize::new(0));
    let upstream = Upstream::start(backend(provisioned.clone())).await;
    let pair = Pair::start("local_fallback", OWNED, upstream).await;
    // The first requests of one tenant reach both replicas at once.
    let (one, two, three) = tokio::join!(
        create(&pair.a, "carol", "x"),
        create(&pair.b, "carol", "y"),
        create(&pair.b, "carol", "z"),
    );
    assert_eq!((one.status, two.status, three.status), (201, 201, 201));
    assert_eq!(provisioned.load(Ordering::SeqCst), 1);
    assert_eq!(create(&pair.a, "carol", "w").await.status, 201);
    assert_eq!(provisioned.load(Ordering::SeqCst), 1);
    let marks = pair
        .redis
        .command(&["HKEYS", "tenantgate:{own}:provisioned"])
        .await;
    assert_eq!(
        marks, "*1\r\n$7\r\nu_carol\r\n",
        "one mark, under carol's root"
    );
}

const OUTAGE: &str = r#"
[limits]
default_plan = "free"
[limits.plans.free]
rate = 1
per = "1h"
burst = 10
[[route]]
match = "GET /items"
scope = "tenant"
"#;

/// Sends `n` requests for `tenant` alternately to both replicas; the statuses.
async fn burst(pair: &Pair, tenant: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..n {
        statuses.push(get(pair.replica(i), "/items", tenant).await.status);
    }
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// Kills Redis and waits until both replicas have noticed (their breakers opened).
async fn outage(pair: &mut Pair) {
    pair.redis.kill();
    for proxy in [&pair.a, &pair.b] {
        let ready = proxy.admin_get("/readyz", &[]).await;
        assert_eq!(
            ready.status, 200,
            "a store outage never makes the pod unready"
        );
        assert!(
            ready.text().contains("store: redis unreachable"),
            "{}",
            ready.text()
        );
    }
}

/// Starts Redis again, with what it held, and waits for both replicas' replays.
async fn recovery(pair: &mut Pair) {
    pair.redis.restart().await;
    pair.flushed().await;
    // A replica's breaker closes at its first successful call (readyz pings).
    for proxy in [&pair.a, &pair.b] {
        let started = std::time::Instant::now();
        while !proxy
            .admin_get("/readyz", &[])
            .await
            .text()
            .contains("store: redis up")
        {
            assert!(started.elapsed() < PATIENCE, "redis never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every 2xx a client saw is in the shared usage exactly once, read on both.
async fn usage_is_whole(pair: &Pair, tenant: &str, seen: usize) {
    for proxy in [&pair.a, &pair.b] {
        let rows = admin(proxy, &format!("/usage/users/{tenant}?days=1")).await;
        assert_eq!(rows["days"][0]["events"], seen as u64, "{rows}");
    }
}

#[tokio::test]
async fn local_fallback_splits_the_limit_between_replicas_and_loses_no_usage() {
    let mut pair = Pair::start("local_fallback", OUTAGE, Upstream::ok().await).await;
    let before = burst(&pair, "alice", 4).await;
    assert_eq!(count(&before, 200), 4);
    outage(&mut pair).await;
    // Each replica alone allows burst / replicas = 5 of a fresh local bucket.
    let during = burst(&pair, "dave", 14).await;
    assert_eq!(count(&during, 200), 10, "{during:?}");
    assert_eq!(count(&during, 429), 4, "{during:?}");
    let alice = burst(&pair, "alice", 2).await;
    assert_eq!(count(&alice, 200), 2);
    assert!(
        pair.a
            .metric("tenantgate_store_fallbacks_total{mode=\"local_fallback\"}")
            .await
            >= 7.0
    );
    assert!(
        pair.a.metric("tenantgate_store_pending_rows").await > 0.0,
        "usage waits for redis"
    );
    recovery(&mut pair).await;
    usage_is_whole(&pair, "alice", 6).await;
    usage_is_whole(&pair, "dave", 10).await;
    // Back to the shared bucket: alice spent 4 of her 10 there before the outage.
    let after = burst(&pair, "alice", 8).await;
    assert_eq!(count(&after, 200), 6, "{after:?}");
}

#[tokio::test]
async fn fail_open_lets_limited_requests_through() {
    let mut pair = Pair::start("fail_open", OUTAGE, Upstream::ok().await).await;
    outage(&mut pair).await;
    let during = burst(&pair, "erin", 14).await;
    assert_eq!(count(&during, 200), 14, "{during:?}");
    recovery(&mut pair).await;
    usage_is_whole(&pair, "erin", 14).await;
}

#[tokio::test]
async fn fail_closed_refuses_limited_requests_with_a_clear_error() {
    let mut pair = Pair::start("fail_closed", OUTAGE, Upstream::ok().await).await;
    assert_eq!(get(&pair.a, "/items", "frank").await.status, 200);
    outage(&mut pair).await;
    for i in 0..4 {
        let refused = get(pair.replica(i), "/items", "frank").await;
        refused.assert_refusal(503, "limits_unavailable");
        assert_eq!(refused.header("retry-after"), Some("1"));
    }
    assert_eq!(
        pair.upstream.requests().len(),
        1,
        "nothing refused reached the upstream"
    );
    recovery(&mut pair).await;
    usage_is_whole(&pair, "frank", 1).await;
    assert_eq!(get(&pair.b, "/items", "frank").await.status, 200);
}

#[tokio::test]
async fn a_replayed_batch_adds_nothing_and_completes_a_half_written_one() {
    use tenantgate::store::redis::{usage::RedisUsage, Redis};
    use tenantgate::store::{Backend, Batch, Counters};

    let server = RedisServer::start().await;
    let settings = redis_settings(&server, Duration::from_secs(1), "tg");
    let usage = RedisUsage(Redis::open(&settings).unwrap());
    // The next process, after a stop that spooled batch 7 as it was in flight.
    let next = RedisUsage(Redis::open(&settings).unwrap());
    let origin = usage.0.batch_field().to_owned();
    let row = |units| Counters {
        events: 1,
        units,
        bytes_in: 10,
        bytes_out: 20,
        last_at: 1_800_000_000,
    };
    let day = 20_000;
    let batch = move |tenants: &[&str]| Batch {
        id: 7,
        origin: None,
        tenants: tenants
            .iter()
            .map(|t| ((day, Box::from(*t)), row(3)))
            .collect(),
        project: [(day, row(3 * tenants.len() as u64))].into(),
    };
    let full = batch(&["zoe", "yan"]);
    let writer = usage.clone();
    tokio::task::spawn_blocking(move || writer.write(&full).unwrap())
        .await
        .unwrap();
    // As if the write had been cut off after zoe's row and the day's index: yan's row
    // never landed. The replay adds exactly what is missing.
    let yan_row = format!("tg:{{t:yan}}:u:{day}");
    assert_eq!(server.command(&["DEL", &yan_row]).await.trim(), ":1");
    let read = tokio::task::spawn_blocking(move || {
        usage.write(&batch(&["zoe", "yan"])).unwrap();
        // And a reply lost after a whole write: the replay adds nothing.
        usage.write(&batch(&["zoe", "yan"])).unwrap();
        // Nor does the next process's replay of it from the spool, under its origin.
        let mut spooled = batch(&["zoe", "yan"]);
        spooled.origin = Some(origin);
        next.write(&spooled).unwrap();
        (
            usage.totals(day, day).unwrap(),
            usage.project_day(day).unwrap(),
        )
    })
    .await
    .unwrap();
    let (mut totals, project) = read;
    totals.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        totals,
        vec![("yan".to_owned(), row(3)), ("zoe".to_owned(), row(3))]
    );
    assert_eq!(project, row(6));
}

#[tokio::test]
async fn a_reload_rescales_the_shared_bucket() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::ok().await;
    let plan = |rate: u64, burst: u64| {
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\ntoken = \"admin-token\"\n\
             [reload]\nwatch = false\npoll = \"0s\"\n[upstream]\nurl = \"{}\"\n\
             [store]\nkind = \"redis\"\nurl = \"{}\"\ntimeout = \"2s\"\n\
             [limits]\ndefault_plan = \"free\"\n[limits.plans.free]\nrate = {rate}\nper = \"1h\"\nburst = {burst}\n\
             [[route]]\nmatch = \"GET /items\"\nscope = \"tenant\"\n",
            upstream.url(),
            redis.url()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    std::fs::write(&path, plan(1, 4)).unwrap();
    let settings = redis_settings(&redis, Duration::from_millis(100), "tenantgate");
    let clock = Arc::new(tenantgate::clock::SystemClock::default());
    let services = tenantgate::server::open_shared(&settings, dir.path(), clock)
        .await
        .unwrap();
    let a = Proxy::start_file(&path, services).await;
    let b = Proxy::start_shared(&plan(1, 4), &upstream).await;
    for proxy in [&a, &b, &a, &b] {
        assert_eq!(get(proxy, "/items", "gina").await.status, 200);
    }
    assert_eq!(get(&a, "/items", "gina").await.status, 429);
    // Twice the rate and the burst: the 4 tokens gina owes are 4 of the new ones.
    std::fs::write(&path, plan(2, 8)).unwrap();
    let reloaded = a.send_admin("POST", "/admin/reload", &[ADMIN]).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get(&a, "/items", "gina").await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
}

#[tokio::test]
async fn rediss_with_a_password_and_a_private_ca() {
    let private = common::pki::ca("redis CA");
    let (cert, key) = common::pki::leaf(&private, &["localhost"]);
    let (_server, tls_port) = RedisServer::start_tls(&cert, &key, "s3cret").await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, private.pem()).unwrap();
    let upstream = Upstream::ok().await;
    let config = |url: &str| {
        format!(
            "{RATE}\n[upstream]\nurl = \"${{UPSTREAM}}\"\n[store]\nkind = \"redis\"\nurl = \"{url}\"\ntimeout = \"2s\"\n\
             ca_file = \"{}\"\non_store_error = \"fail_closed\"\n",
            ca_file.display()
        )
    };
    let good = format!("rediss://:s3cret@localhost:{tls_port}");
    let proxy = Proxy::start_shared(&config(&good), &upstream).await;
    for _ in 0..6 {
        assert_eq!(get(&proxy, "/items", "hana").await.status, 200);
    }
    get(&proxy, "/items", "hana")
        .await
        .assert_refusal(429, "rate_limited");
    // A wrong password is a store that cannot be reached: fail_closed refuses.
    let wrong = format!("rediss://:wrong@localhost:{tls_port}");
    let refused = Proxy::start_shared(&config(&wrong), &upstream).await;
    get(&refused, "/items", "hana")
        .await
        .assert_refusal(503, "limits_unavailable");
    assert_eq!(upstream.requests().len(), 6);
}

/// Two real `tenantgate run` processes, as two pods' sidecars would be.
#[tokio::test]
async fn two_tenantgate_processes_share_one_bucket_and_one_usage() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    let config = format!("{BASE}{RATE}")
        .replace("${UPSTREAM}", &upstream.url())
        .replace("${REDIS}", &redis.url())
        .replace("${MODE}", "local_fallback");
    std::fs::write(&path, config).unwrap();
    let one = common::Binary::run(&path).await;
    let two = common::Binary::run(&path).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let addr = if i % 2 == 0 { one.proxy } else { two.proxy };
        let request = common::request_bytes("GET", "/items", &["X-Tenant-Id: ivan"], b"");
        statuses.push(common::raw(addr, &request).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429, 429, 429, 429]);
    // A graceful stop of each flushes what it holds; both report the same usage.
    for binary in [one, two] {
        let admin = binary.admin;
        let request = common::request_bytes("GET", "/usage/users/ivan?days=1", &[ADMIN], b"");
        let before = common::raw(admin, &request).await.json();
        assert_eq!(before["days"][0]["events"], 6, "{before}");
        assert_eq!(binary.stop("-TERM").await, Some(0));
    }
}

const QUEUED: &str = r#"
[limits]
default_plan = "queued"
[limits.plans.queued]
rate = 10
per = "1s"
burst = 1
overflow = "queue"
max_wait = "2s"
max_queue = 10
[[route]]
match = "GET /items"
scope = "tenant"
"#;

#[tokio::test]
async fn queue_mode_reserves_slots_in_the_shared_bucket() {
    let pair = Pair::start("local_fallback", QUEUED, Upstream::ok().await).await;
    let started = std::time::Instant::now();
    let (one, two, three, four) = tokio::join!(
        get(&pair.a, "/items", "jill"),
        get(&pair.b, "/items", "jill"),
        get(&pair.a, "/items", "jill"),
        get(&pair.b, "/items", "jill"),
    );
    let statuses = [one.status, two.status, three.status, four.status];
    assert_eq!(statuses, [200; 4], "queued, not refused");
    // One token now and one every 100 ms after, whichever replica asked: the last
    // slot is 300 ms out. (Only a lower bound: a busy machine may take longer.)
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "{:?}",
        started.elapsed()
    );
    let queued = pair.a.metric("tenantgate_queue_wait_seconds_count").await
        + pair.b.metric("tenantgate_queue_wait_seconds_count").await;
    assert_eq!(queued, 3.0, "three of the four waited for a slot");
}

#[tokio::test]
async fn a_graceful_stop_while_redis_is_away_keeps_usage_for_the_next_start() {
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{BASE}path = {:?}\n{METERED}",
        dir.path().display().to_string()
    )
    .replace("${REDIS}", &redis.url())
    .replace("${MODE}", "local_fallback");
    let mut first = Proxy::start_shared(&config, &upstream).await;
    for _ in 0..2 {
        assert_eq!(get(&first, "/items", "lena").await.status, 200);
    }
    let started = std::time::Instant::now();
    while first.metric("tenantgate_store_pending_rows").await > 0.0 {
        assert!(started.elapsed() < PATIENCE, "usage never flushed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.kill();
    for _ in 0..3 {
        assert_eq!(get(&first, "/items", "lena").await.status, 200);
    }
    let drained = first.running.take().unwrap().drain().await;
    assert!(drained.in_flight_finished);
    let spool = dir.path().join("usage-spool.json");
    assert!(spool.exists(), "the 3 unwritten events were kept");

    redis.restart().await;
    let second = Proxy::start_shared(&config, &upstream).await;
    let started = std::time::Instant::now();
    loop {
        let rows = admin(&second, "/usage/users/lena?days=1").await;
        if rows["days"][0]["events"] == 5 && !spool.exists() {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{rows} (spool left: {})",
            spool.exists()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
