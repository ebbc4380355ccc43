//! `tenantgate verify` as users run it: the binary against the playground backend with
//! the shipped config (holds), against a config with a route's `bind` and `keep`
//! removed (the leak is reported with its request and bytes, exit 1), and inside a
//! running proxy, where `[verify] interval` keeps the canary gauge at 1 until the
//! upstream starts leaking, then 0. Canaries are reserved, exempt from limits and
//! quotas, unmetered, and offboarded.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Proxy, Reply, Seen, Upstream};
use serde_json::{json, Value};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tenantgate");

async fn verify(config: &Path, upstream: &str, json: bool) -> (i32, String) {
    let mut command = Command::new(BIN);
    command
        .arg("verify")
        .arg("--config")
        .arg(config)
        .args(["--upstream", upstream]);
    if json {
        command.arg("--json");
    }
    let out = command.output().await.expect("tenantgate verify runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_holds_against_the_playground_and_reports_a_broken_config() {
    let backend = tenantgate::dev::backend::start().await.unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tenantgate.toml");
    let (code, out) = verify(&shipped, &backend.url(), false).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("scenario memories (held"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.trim_start().starts_with("held"))
            .count(),
        8,
        "{out}"
    );
    assert!(out.ends_with("isolation held\n"), "{out}");

    // The search route without its bind and keep, its answer marked as user text.
    let text = std::fs::read_to_string(&shipped).unwrap();
    let scoped = r#"json = { "/user_id" = "bind", "/session_id" = "prefix", "/**/$or" = "deny", "/**/$ne" = "deny" }
[route.response]
keep = { items = "/results", owner = "/user_id" }"#;
    assert!(
        text.contains(scoped),
        "the shipped search route is as this test expects"
    );
    let broken = text.replace(
        scoped,
        "json = { \"/session_id\" = \"prefix\" }\n[route.response]\nids_at = []",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, broken).unwrap();
    let (code, out) = verify(&path, &backend.url(), false).await;
    assert_eq!(code, 1, "{out}");
    let leak = out
        .lines()
        .position(|l| l.contains("LEAKED  as b    200  POST /v1/search"))
        .unwrap_or_else(|| panic!("the leaking probe is named: {out}"));
    let marker = out
        .split("marker ")
        .nth(1)
        .and_then(|m| m.split(')').next())
        .expect("the report names its marker");
    let bytes = out.lines().nth(leak + 1).unwrap_or_default();
    assert!(
        bytes.contains("body: …") && bytes.contains(marker),
        "the offending bytes: {out}"
    );
    assert!(out.ends_with("isolation NOT proved: memories\n"), "{out}");

    let (code, out) = verify(&path, &backend.url(), true).await;
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).expect("--json prints the report");
    assert_eq!(report["scenarios"][0]["held"], false);
    assert_eq!(report["scenarios"][0]["steps"][2]["verdict"], "leaked");
    assert_eq!(report["scenarios"][0]["steps"][0]["verdict"], "held");
}

/// A notes backend that files each note under the user_id it is sent, and lists one
/// user's notes, or, once `leaking` is set, everyone's (as bare text, which no guard
/// can tell apart from the user's own).
fn notes(leaking: Arc<AtomicBool>) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    let stored: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    move |seen: &Seen| {
        let query = seen.target.split_once('?').map_or("", |(_, q)| q);
        let user = |body: &Value| body["user_id"].as_str().unwrap_or_default().to_owned();
        let mut stored = stored.lock().unwrap();
        match seen.method.as_str() {
            "POST" => {
                let body: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
                let text = body["text"].as_str().unwrap_or_default().to_owned();
                stored.push((user(&body), text));
                Reply::json(201, json!({"ok": true}).to_string())
            }
            _ => {
                let caller = query.strip_prefix("user_id=").unwrap_or_default();
                let all = leaking.load(Ordering::SeqCst);
                let texts: Vec<&str> = stored
                    .iter()
                    .filter(|(owner, _)| all || owner == caller)
                    .map(|(_, text)| text.as_str())
                    .collect();
                Reply::json(200, json!({"notes": texts}).to_string())
            }
        }
    }
}

const PERIODIC: &str = r#"
[upstream]
url = "${UPSTREAM}"
[admin]
token = "admin-token"
[verify]
interval = "1s"
# Canaries are exempt: with this plan, a's second request of a run would be a 429.
[limits]
default_plan = "tiny"
[limits.plans.tiny]
rate = 1
per = "1h"
burst = 1
daily_units = 1

[[route]]
name = "notes.add"
match = "POST /notes"
scope = "tenant"
rewrite.json = { "/user_id" = "bind" }

[[route]]
name = "notes.list"
match = "GET /notes"
scope = "tenant"
rewrite.query = { user_id = "bind" }
response.ids_at = []

[[verify.scenario]]
name = "notes"
[[verify.scenario.step]]
as = "a"
request = "POST /notes"
json = '{"text": "{marker}"}'
expect = [201]
[[verify.scenario.step]]
as = "b"
request = "GET /notes"
[[verify.scenario.step]]
as = "a"
request = "GET /notes"
marker = "present"
"#;

/// Polls `/metrics` (bounded) until `series` reads `value`.
async fn until_metric(proxy: &Proxy, series: &str, value: f64) {
    let started = Instant::now();
    while proxy.metric(series).await != value {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{series} never became {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_canary_holds_then_flips_to_zero_when_the_upstream_leaks() {
    let leaking = Arc::new(AtomicBool::new(false));
    let upstream = Upstream::start(notes(leaking.clone())).await;
    let proxy = Proxy::start(PERIODIC, &upstream).await;
    let ok = "tenantgate_isolation_canary_ok{scenario=\"notes\"}";
    until_metric(&proxy, ok, 1.0).await;
    assert!(
        proxy
            .metric("tenantgate_isolation_canary_last_run_timestamp_seconds")
            .await
            > 1.7e9
    );

    // The canaries leave nothing behind: no usage, no known tenant, no limiter state.
    let auth = ["Authorization: Bearer admin-token"];
    let usage = proxy.admin_get("/usage/by-user", &auth).await.text();
    let tenants = proxy.admin_get("/admin/tenants", &auth).await.text();
    assert!(!usage.contains("tenantgate-canary"), "{usage}");
    assert!(!tenants.contains("tenantgate-canary"), "{tenants}");
    // Nobody can call as a canary: the ids are reserved.
    proxy
        .send("GET", "/notes", &["X-Tenant-Id: tenantgate-canary-a"], b"")
        .await
        .assert_refusal(400, "invalid_tenant");

    leaking.store(true, Ordering::SeqCst);
    until_metric(&proxy, ok, 0.0).await;
    let now = proxy
        .send_admin("POST", "/admin/verify", &auth)
        .await
        .json();
    assert_eq!(now["scenarios"][0]["held"], false, "{now}");
    assert_eq!(
        now["scenarios"][0]["steps"][1]["verdict"], "leaked",
        "{now}"
    );

    leaking.store(false, Ordering::SeqCst);
    until_metric(&proxy, ok, 1.0).await;
}

/// A canary's probe that the leak guard holds is the verify report's to tell: the
/// playground's scenario probes the endpoint that cannot filter by user every run, and
/// were that counted in `tenantgate_isolation_violations_total` (or the rejections and
/// 5xx the alerts and dashboard read), a critical alert would page every `[verify]
/// interval`. A real user's withheld answer still counts in all three.
#[tokio::test]
async fn a_canary_held_by_the_leak_guard_is_no_isolation_violation() {
    let backend = tenantgate::dev::backend::start().await.unwrap();
    let config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tenantgate.toml"),
    )
    .unwrap()
    .replace("http://127.0.0.1:8000", &backend.url())
    .replace("[admin]\n", "[admin]\ntoken = \"admin-token\"\n");
    let proxy = Proxy::start_raw(&config).await;
    let violations = "tenantgate_isolation_violations_total";
    let report = proxy
        .send_admin(
            "POST",
            "/admin/verify",
            &["Authorization: Bearer admin-token"],
        )
        .await
        .json();
    assert_eq!(report["scenarios"][0]["held"], true, "{report}");
    let guarded = report["scenarios"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|step| step["status"] == 502);
    assert!(guarded, "a probe was withheld by the guard: {report}");
    let rejected = "tenantgate_rejections_total{reason=\"isolation_violation\"}";
    let failed = "tenantgate_requests_total{route=\"memories.recent\",status_class=\"5xx\"}";
    for series in [violations, rejected, failed] {
        assert_eq!(proxy.metric(series).await, 0.0, "{series}");
    }

    let alice = ["X-Tenant-Id: alice", "Content-Type: application/json"];
    let wrote = proxy
        .send(
            "POST",
            "/v1/sessions/s/memories",
            &alice,
            br#"{"text":"x"}"#,
        )
        .await;
    assert_eq!(wrote.status, 201);
    proxy
        .send("GET", "/v1/memories/recent", &["X-Tenant-Id: bob"], b"")
        .await
        .assert_refusal(502, "isolation_violation");
    for series in [violations, rejected, failed] {
        assert_eq!(proxy.metric(series).await, 1.0, "{series}");
    }
}
