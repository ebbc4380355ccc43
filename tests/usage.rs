//! Metering and the admin API over it (SPEC 8, 9, 11): a known workload by several
//! tenants gives exact `/usage/*` rows; units read from a header and a JSON pointer;
//! tenant warnings and offboarding; `/metrics` values, checked by `promtool`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Proxy, RawResponse, Reply, Upstream};
use serde_json::{json, Value};
use tenantgate::app::Services;
use tenantgate::clock::ManualClock;
use tenantgate::store::Usage;

/// 2026-11-22T23:00:00Z.
const START: Duration = Duration::from_secs(1_795_388_400);
const TOKEN: &str = "Authorization: Bearer admin-token";

const CONFIG: &str = r#"
[upstream]
url = "${UPSTREAM}"
[admin]
token = "admin-token"
[metrics]
per_tenant_top_k = 2
[limits]
default_plan = "p"
[limits.plans.p]
daily_units = 1000
[tenants.dave]
daily_units = 2
soft_cap = 0.5
[[route]]
match = "GET /ok"
scope = "tenant"
[[route]]
match = "GET /big"
scope = "tenant"
units = 5
[[route]]
match = "GET /fail"
scope = "tenant"
[[route]]
match = "GET /missing"
scope = "tenant"
[[route]]
match = "GET /shared"
scope = "shared"
[[route]]
match = "GET /hdr"
scope = "tenant"
units = { header = "X-Usage-Units" }
[[route]]
match = "POST /json"
scope = "tenant"
units = { json = "/usage/total_tokens" }
[[route]]
match = "GET /recall"
scope = "tenant"
degradable = true
[route.degrade]
body = '{"hits": []}'
"#;

const OK: &str = r#"{"ok":true}"#;
const TOKENS: &str = r#"{"usage":{"total_tokens":42}}"#;

async fn upstream() -> Upstream {
    Upstream::start(|seen| match seen.target.as_str() {
        "/fail" => Reply::With(500, r#"{"error":"boom"}"#, vec![]),
        "/missing" => Reply::With(404, r#"{"error":"nope"}"#, vec![]),
        "/hdr" => Reply::With(200, OK, vec![("x-usage-units", "7")]),
        "/json" => Reply::With(200, TOKENS, vec![]),
        _ => Reply::With(200, OK, vec![]),
    })
    .await
}

struct Setup {
    proxy: Proxy,
    clock: Arc<ManualClock>,
    _upstream: Upstream,
}

async fn setup() -> Setup {
    let upstream = upstream().await;
    let clock = Arc::new(ManualClock::at(START));
    let services = Services {
        clock: clock.clone(),
        usage: Arc::new(Usage::in_memory()),
        ..Services::default()
    };
    let proxy = Proxy::start_with(CONFIG, &upstream, services).await;
    Setup {
        proxy,
        clock,
        _upstream: upstream,
    }
}

impl Setup {
    async fn call(
        &self,
        method: &str,
        path: &str,
        tenant: Option<&str>,
        body: &str,
    ) -> RawResponse {
        let header = tenant.map(|t| format!("X-Tenant-Id: {t}"));
        let mut headers: Vec<&str> = header.iter().map(String::as_str).collect();
        if !body.is_empty() {
            headers.push("Content-Type: application/json");
        }
        self.proxy
            .send(method, path, &headers, body.as_bytes())
            .await
    }

    async fn admin(&self, method: &str, path: &str) -> RawResponse {
        self.proxy.send_admin(method, path, &[TOKEN]).await
    }

    /// The workload: three tenants with 2xx, 4xx, 5xx and refusals, a tenant degraded
    /// past its soft cap, and unscoped shared calls.
    async fn workload(&self) {
        for _ in 0..3 {
            assert_eq!(self.call("GET", "/ok", Some("alice"), "").await.status, 200);
        }
        assert_eq!(
            self.call("GET", "/big", Some("alice"), "").await.status,
            200
        );
        assert_eq!(
            self.call("GET", "/fail", Some("alice"), "").await.status,
            500
        );
        assert_eq!(
            self.call("GET", "/fail", Some("alice"), "").await.status,
            500
        );
        assert_eq!(
            self.call("GET", "/missing", Some("alice"), "").await.status,
            404
        );
        let hdr = self.call("GET", "/hdr", Some("bob"), "").await;
        assert_eq!(hdr.header("x-quota-remaining"), Some("993"));
        assert_eq!(
            self.call("POST", "/json", Some("bob"), r#"{"q":1}"#)
                .await
                .status,
            200
        );
        assert_eq!(self.call("GET", "/ok", Some("carol"), "").await.status, 200);
        self.call("GET", "/nope", Some("carol"), "")
            .await
            .assert_refusal(403, "route_not_allowed");
        assert_eq!(self.call("GET", "/ok", Some("dave"), "").await.status, 200);
        let degraded = self.call("GET", "/recall", Some("dave"), "").await;
        assert_eq!(degraded.header("x-tenantgate-degraded"), Some("1"));
        for _ in 0..2 {
            assert_eq!(self.call("GET", "/shared", None, "").await.status, 200);
        }
    }
}

fn row(user: &str, events: u64, units: u64, bytes_in: usize, bytes_out: usize) -> Value {
    json!({
        "user_id": user, "events": events, "units": units,
        "bytes_in": bytes_in, "bytes_out": bytes_out,
        "last_at": "2026-11-22T23:00:00Z",
    })
}

#[tokio::test]
async fn a_known_workload_gives_exact_usage_rows() {
    let s = setup().await;
    s.workload().await;

    let by_user = s.admin("GET", "/usage/by-user").await;
    assert_eq!(by_user.status, 200, "{by_user:?}");
    assert_eq!(
        by_user.json(),
        json!([
            row("bob", 2, 49, 7, OK.len() + TOKENS.len()),
            row("alice", 4, 8, 0, 4 * OK.len()),
            row("carol", 1, 1, 0, OK.len()),
            row("dave", 1, 1, 0, OK.len()),
        ])
    );
    let top = s.admin("GET", "/usage/by-user?limit=2&days=1").await.json();
    assert_eq!(top.as_array().unwrap().len(), 2);
    assert_eq!(top[1]["user_id"], "alice");

    let today = s.admin("GET", "/usage/today").await.json();
    assert_eq!(today["day"], "2026-11-22");
    assert_eq!(today["events"], 10, "{today}");
    assert_eq!(
        today["units"], 61,
        "shared calls count for the project only"
    );

    // A day later: `days` picks the window.
    s.clock.advance(Duration::from_secs(86_400));
    assert_eq!(s.call("GET", "/ok", Some("carol"), "").await.status, 200);
    let one_day = s.admin("GET", "/usage/by-user?days=1").await.json();
    assert_eq!(one_day.as_array().unwrap().len(), 1);
    assert_eq!(one_day[0]["user_id"], "carol");
    assert_eq!(one_day[0]["units"], 1);
    let two_days = s.admin("GET", "/usage/by-user?days=2").await.json();
    assert_eq!(two_days[2]["user_id"], "carol");
    assert_eq!(two_days[2]["events"], 2);
    assert_eq!(two_days[2]["last_at"], "2026-11-23T23:00:00Z");
    let carol = s.admin("GET", "/usage/users/carol?days=7").await.json();
    assert_eq!(carol["days"][0]["day"], "2026-11-22");
    assert_eq!(carol["days"][1]["day"], "2026-11-23");
    assert_eq!(carol["days"].as_array().unwrap().len(), 2);
}

/// Billing's view: `/usage/export` streams one JSON line per tenant per day, days
/// oldest first and tenants by id, with the same counters as `/usage/by-user`.
#[tokio::test]
async fn the_usage_export_streams_daily_rows_as_ndjson() {
    let s = setup().await;
    s.workload().await;
    s.clock.advance(Duration::from_secs(86_400));
    assert_eq!(s.call("GET", "/ok", Some("carol"), "").await.status, 200);

    let export = s.admin("GET", "/usage/export?since=2026-11-22").await;
    assert_eq!(export.status, 200, "{export:?}");
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(
        export.header("transfer-encoding"),
        Some("chunked"),
        "streamed"
    );
    let text = export.text();
    assert!(text.ends_with('\n'), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let day = |d: &str, mut row: Value| {
        row["day"] = d.into();
        row
    };
    let mut carol_later = row("carol", 1, 1, 0, OK.len());
    carol_later["last_at"] = "2026-11-23T23:00:00Z".into();
    assert_eq!(
        lines,
        vec![
            day("2026-11-22", row("alice", 4, 8, 0, 4 * OK.len())),
            day("2026-11-22", row("bob", 2, 49, 7, OK.len() + TOKENS.len())),
            day("2026-11-22", row("carol", 1, 1, 0, OK.len())),
            day("2026-11-22", row("dave", 1, 1, 0, OK.len())),
            day("2026-11-23", carol_later),
        ]
    );
    let first_day = s
        .admin("GET", "/usage/export?since=2026-11-22&until=2026-11-22")
        .await;
    assert_eq!(first_day.text().lines().count(), 4);
    let today_only = s.admin("GET", "/usage/export?since=2026-11-23").await;
    assert_eq!(today_only.text().lines().count(), 1);

    for query in [
        "",
        "until=2026-11-23",
        "since=2026-11-24",
        "since=2026-11-23&until=2026-11-22",
        "since=2026-11-22&until=2026-11-24",
        "since=2025-11-01",
        "since=2026-13-01",
        "since=22-11-2026",
        "since=2026-11-2",
        "since=2026-11-22&since=2026-11-23",
        "since=2026-11-22&format=csv",
    ] {
        let response = s.admin("GET", &format!("/usage/export?{query}")).await;
        response.assert_refusal(400, "bad_request");
    }
    let unauthorized = s
        .proxy
        .send_admin("GET", "/usage/export?since=2026-11-22", &[])
        .await;
    unauthorized.assert_refusal(401, "unauthenticated");
}

/// A store that fails after the answer has begun breaks the transfer off: the client
/// never sees the last chunk, so a partial export cannot pass for a whole one.
#[tokio::test]
async fn an_export_whose_store_fails_midway_breaks_off() {
    let usage = Usage::over(Box::new(FailingStore {
        one_good_day: true,
        ..FailingStore::default()
    }));
    let services = Services {
        clock: Arc::new(ManualClock::at(START)),
        usage: Arc::new(usage),
        ..Services::default()
    };
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start_with(CONFIG, &upstream, services).await;
    let export = proxy
        .send_admin("GET", "/usage/export?since=2026-11-21", &[TOKEN])
        .await;
    assert_eq!(export.status, 200);
    // hyper drops the connection when a body fails, rows sent before it or not.
    assert!(
        !export.complete,
        "the transfer ended as if whole: {export:?}"
    );
}

#[tokio::test]
async fn usage_parameters_out_of_bounds_are_400() {
    let s = setup().await;
    for query in [
        "days=0",
        "days=366",
        "limit=0",
        "limit=1001",
        "limit=abc",
        "days=-1",
        "days=1&days=2",
        "weeks=2",
    ] {
        let response = s.admin("GET", &format!("/usage/by-user?{query}")).await;
        response.assert_refusal(400, "bad_request");
    }
    for query in ["days=1&limit=1", "days=365&limit=1000"] {
        let response = s.admin("GET", &format!("/usage/by-user?{query}")).await;
        assert_eq!(response.status, 200, "{query}");
    }
    let unauthorized = s.proxy.send_admin("GET", "/usage/today", &[]).await;
    unauthorized.assert_refusal(401, "unauthenticated");
}

#[tokio::test]
async fn tenant_warnings_and_offboarding() {
    let s = setup().await;
    // ("acme " cannot arrive: HTTP trims header values, and identity refuses padded
    // ids; the trim look-alike is tested on the index below.)
    for (tenant, times) in [("Acme", 2), ("acme", 2), ("acmf", 2), ("ghost", 1)] {
        for _ in 0..times {
            let header = format!("X-Tenant-Id: {tenant}");
            let response = s.proxy.send("GET", "/ok", &[&header], b"").await;
            assert_eq!(response.status, 200);
        }
    }
    let listing = s.admin("GET", "/admin/tenants").await.json();
    let find = |id: &str| {
        listing["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not listed: {listing}"))
    };
    assert_eq!(
        find("Acme")["warnings"],
        json!([{"kind": "case_fold", "other": "acme"}])
    );
    assert_eq!(
        find("acme")["warnings"],
        json!([{"kind": "case_fold", "other": "Acme"}, {"kind": "one_edit", "other": "acmf"}])
    );
    assert_eq!(find("ghost")["warnings"], json!([{"kind": "ghost"}]));
    assert_eq!(find("ghost")["events"], 1);

    let first = s.admin("DELETE", "/admin/tenants/acmf").await;
    assert_eq!(first.status, 200);
    let erased = first.json();
    assert_eq!(erased["usage_rows"], 1);
    assert_eq!(erased["known"], 1);
    let second = s.admin("DELETE", "/admin/tenants/acmf").await.json();
    assert_eq!(second["erased"], 0, "offboarding is idempotent");
    let after = s.admin("GET", "/usage/by-user").await.json();
    assert!(
        after
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["user_id"] != "acmf"),
        "{after}"
    );
}

#[tokio::test]
async fn trimmed_look_alikes_are_flagged() {
    // A tenant id with inner whitespace variants passes identity; trim-equality is
    // flagged when ids differ only by surrounding whitespace, which identity refuses,
    // so the index is exercised on ids already stored (e.g. by an older version).
    let ids = ["acme", " acme", "acme\t"];
    let found = tenantgate::admin::similar::near_duplicates(&ids);
    assert_eq!(
        found[0],
        vec![
            (1, tenantgate::admin::similar::Likeness::Trim),
            (2, tenantgate::admin::similar::Likeness::Trim)
        ]
    );
}

#[tokio::test]
async fn metrics_after_a_workload_pass_promtool() {
    let s = setup().await;
    s.workload().await;
    let text = String::from_utf8(s.proxy.admin_get("/metrics", &[]).await.body).unwrap();
    for expected in [
        r#"tenantgate_requests_total{route="GET /ok",status_class="2xx"} 5"#,
        r#"tenantgate_requests_total{route="GET /fail",status_class="5xx"} 2"#,
        r#"tenantgate_requests_total{route="GET /missing",status_class="4xx"} 1"#,
        r#"tenantgate_rejections_total{reason="route_not_allowed"} 1"#,
        r#"tenantgate_degraded_total{route="GET /recall"} 1"#,
        r#"tenantgate_metered_units_total{plan="p"} 59"#,
        r#"tenantgate_metered_units_total{plan="project"} 2"#,
        r#"tenantgate_tenant_units_today{tenant="bob"} 49"#,
        r#"tenantgate_tenant_units_today{tenant="alice"} 8"#,
        r#"tenantgate_tenant_units_today{tenant="other"} 2"#,
        "tenantgate_tenants_active 4",
        "tenantgate_inflight_requests 0",
        "tenantgate_upstream_duration_seconds_count 13",
        "tenantgate_overhead_seconds_count 15",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs Debian's prometheus package)");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = promtool.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
    }
    let out = promtool.wait_with_output().await.unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );
}

#[tokio::test]
async fn counters_with_known_labels_are_exported_at_zero_before_any_event() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start("[upstream]\nurl = \"${UPSTREAM}\"\n", &upstream).await;
    let text = String::from_utf8(proxy.admin_get("/metrics", &[]).await.body).unwrap();
    for series in [
        r#"tenantgate_rejections_total{reason="tenant_blocked"} 0"#,
        r#"tenantgate_rejections_total{reason="isolation_violation"} 0"#,
        r#"tenantgate_config_reloads_total{result="error"} 0"#,
        r#"tenantgate_config_reloads_total{result="success"} 0"#,
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
}

/// A store that fails: every write (counting the attempts) and every query but a day's
/// rows, which are empty; or, with `one_good_day`, writes that succeed and a first day
/// read that answers (one row for alice) before every later one fails.
#[derive(Debug, Default)]
struct FailingStore {
    writes: Arc<std::sync::atomic::AtomicUsize>,
    one_good_day: bool,
    days_read: std::sync::atomic::AtomicUsize,
}

impl tenantgate::store::Backend for FailingStore {
    fn write(&self, _: &tenantgate::store::Batch) -> Result<(), tenantgate::store::StoreError> {
        if self.one_good_day {
            return Ok(());
        }
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(tenantgate::store::StoreError("disk full".into()))
    }
    fn day(
        &self,
        _: u64,
    ) -> Result<Vec<(String, tenantgate::store::Counters)>, tenantgate::store::StoreError> {
        if !self.one_good_day {
            return Ok(Vec::new());
        }
        match self
            .days_read
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        {
            0 => Ok(vec![("alice".to_owned(), Default::default())]),
            _ => Err(tenantgate::store::StoreError("connection reset".into())),
        }
    }
    fn project_day(
        &self,
        _: u64,
    ) -> Result<tenantgate::store::Counters, tenantgate::store::StoreError> {
        Ok(Default::default())
    }
    fn user(
        &self,
        _: &str,
        _: u64,
        _: u64,
    ) -> Result<Vec<(u64, tenantgate::store::Counters)>, tenantgate::store::StoreError> {
        Err(tenantgate::store::StoreError("disk full".into()))
    }
    fn totals(
        &self,
        _: u64,
        _: u64,
    ) -> Result<Vec<(String, tenantgate::store::Counters)>, tenantgate::store::StoreError> {
        Err(tenantgate::store::StoreError("disk full".into()))
    }
    fn erase(&self, _: &str) -> Result<u64, tenantgate::store::StoreError> {
        Err(tenantgate::store::StoreError("disk full".into()))
    }
}

#[tokio::test]
async fn a_failing_store_backs_off_counts_and_keeps_every_row() {
    let store = FailingStore::default();
    let writes = store.writes.clone();
    let clock = Arc::new(ManualClock::at(Duration::from_secs(1_764_547_200)));
    let usage = Usage::open(
        Box::new(store),
        tenantgate::clock::Clock::utc_day(clock.as_ref()),
    )
    .unwrap();
    let services = Services {
        clock,
        usage: Arc::new(usage),
        ..Services::default()
    };
    let upstream = Upstream::ok().await;
    let config = "[upstream]\nurl = \"${UPSTREAM}\"\n[store]\nflush = \"0s\"\n[admin]\ntoken = \"admin-token\"\n[[route]]\nmatch = \"GET /m\"\nscope = \"tenant\"\n";
    let proxy = Proxy::start_with(config, &upstream, services).await;
    let before = writes.load(std::sync::atomic::Ordering::SeqCst);
    // 40 events over about a second, each of which asks for a flush ("0s").
    for i in 0..40 {
        let tenant = format!("X-Tenant-Id: t{i}");
        assert_eq!(proxy.send("GET", "/m", &[&tenant], b"").await.status, 200);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let attempts = writes.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(attempts >= 2, "the flusher kept trying ({attempts})");
    assert!(
        attempts <= 12,
        "{attempts} writes for 40 events: no backoff"
    );
    let text = String::from_utf8(proxy.admin_get("/metrics", &[]).await.body).unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert!(value("tenantgate_store_flush_failures_total") >= 2.0);
    assert_eq!(
        value("tenantgate_store_pending_rows"),
        41.0,
        "40 tenant days and the project's"
    );
    // The admin API says the store failed, not the upstream.
    proxy
        .send_admin(
            "GET",
            "/usage/by-user",
            &["Authorization: Bearer admin-token"],
        )
        .await
        .assert_refusal(503, "store_unavailable");
}
