//! Hot reload (SPEC 10) from a real file on disk: a Kubernetes ConfigMap volume's
//! symlink swap, the poll backstop, reloading under load with invalid files in the mix,
//! the admin endpoint, restart-only settings, and limiter state across a reload.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Proxy, RawResponse, Upstream};
use tenantgate::app::Services;
use tenantgate::clock::ManualClock;
use tenantgate::store::Usage;

/// Each valid change must be in effect within this.
const IN_EFFECT: Duration = Duration::from_secs(1);

fn config(upstream: &Upstream, reload: &str, burst: u64, routes: &[&str]) -> String {
    let mut text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\n\
         [admin]\naddr = \"127.0.0.1:0\"\ntoken = \"admin-token\"\n[reload]\n{reload}\n\
         [limits]\ndefault_plan = \"p\"\n[limits.plans.p]\nrate = 100000\nburst = {burst}\n",
        upstream.url()
    );
    for path in routes {
        text.push_str(&format!(
            "[[route]]\nmatch = \"GET {path}\"\nscope = \"tenant\"\n"
        ));
    }
    text
}

async fn get(proxy: &Proxy, path: &str) -> RawResponse {
    proxy.send("GET", path, &["X-Tenant-Id: alice"], b"").await
}

/// Polls until `ready` holds for the proxy's answer to `path`; returns how long it took.
async fn until(proxy: &Proxy, path: &str, ready: impl Fn(&RawResponse) -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < IN_EFFECT {
        if ready(&get(proxy, path).await) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{path} did not change within {IN_EFFECT:?}");
}

/// A ConfigMap volume: `tenantgate.toml -> ..data/tenantgate.toml`, `..data -> ..<ts>`.
struct ConfigMap {
    dir: tempfile::TempDir,
    version: u32,
}

impl ConfigMap {
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut map = Self { dir, version: 0 };
        map.publish(text);
        std::os::unix::fs::symlink("..data/tenantgate.toml", map.path()).unwrap();
        map
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("tenantgate.toml")
    }

    /// What the kubelet does: a new timestamped directory, a new `..data_tmp` symlink
    /// to it, renamed over `..data` in one step, and the old directory removed.
    fn publish(&mut self, text: &str) {
        self.version += 1;
        let root = self.dir.path();
        let old = std::fs::read_link(root.join("..data")).ok();
        let fresh = format!("..2026_11_22_23_00_{:02}.{}", self.version, self.version);
        std::fs::create_dir(root.join(&fresh)).unwrap();
        std::fs::write(root.join(&fresh).join("tenantgate.toml"), text).unwrap();
        std::os::unix::fs::symlink(&fresh, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(root.join(old)).unwrap();
        }
    }
}

#[tokio::test]
async fn a_configmap_symlink_swap_is_seen_every_time() {
    let upstream = Upstream::ok().await;
    // No poll: only the directory watch can see these.
    let reload = "debounce = \"20ms\"\npoll = \"0s\"";
    let mut map = ConfigMap::new(&config(&upstream, reload, 10, &["/v0"]));
    let proxy = Proxy::start_file(&map.path(), Services::default()).await;
    assert_eq!(get(&proxy, "/v0").await.status, 200);
    for n in 1..=5 {
        let route = format!("/v{n}");
        map.publish(&config(&upstream, reload, 10, &[&route]));
        until(&proxy, &route, |r| r.status == 200).await;
        assert_eq!(get(&proxy, &format!("/v{}", n - 1)).await.status, 403);
    }
    let view = proxy
        .admin_get("/admin/config", &["Authorization: Bearer admin-token"])
        .await
        .json();
    assert_eq!(view["generation"], 6);
    let published = std::fs::read(map.path()).unwrap();
    let expected = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&published))
    };
    assert_eq!(view["sha256"], expected);
}

#[tokio::test]
async fn the_poll_backstop_sees_changes_without_a_watch() {
    let upstream = Upstream::ok().await;
    let reload = "watch = false\npoll = \"50ms\"";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    std::fs::write(&path, config(&upstream, reload, 10, &["/a"])).unwrap();
    let proxy = Proxy::start_file(&path, Services::default()).await;
    common::replace_file(&path, &config(&upstream, reload, 10, &["/b"]));
    until(&proxy, "/b", |r| r.status == 200).await;
}

#[tokio::test]
async fn reload_under_load_drops_nothing() {
    let upstream = Upstream::ok().await;
    let reload = "debounce = \"20ms\"\npoll = \"0s\"";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    std::fs::write(&path, config(&upstream, reload, 50_000, &["/load"])).unwrap();
    let proxy = Arc::new(Proxy::start_file(&path, Services::default()).await);

    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (proxy, stop) = (proxy.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut sent, mut failed) = (0u32, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && sent < 200_000 {
                let response = get(&proxy, "/load").await;
                sent += 1;
                if response.status != 200 {
                    failed.push(response.status);
                }
            }
            (sent, failed)
        })
    };

    let (mut valid, mut invalid, mut slowest) = (0, 0, Duration::ZERO);
    for n in 0..50u64 {
        if n % 5 == 4 {
            let errors_before = proxy
                .metric("tenantgate_config_reloads_total{result=\"error\"}")
                .await;
            let broken =
                config(&upstream, reload, 50_000, &["/load"]).replace("rate = 100000", "rate = 0");
            common::replace_file(&path, &broken);
            invalid += 1;
            let started = Instant::now();
            while proxy
                .metric("tenantgate_config_reloads_total{result=\"error\"}")
                .await
                <= errors_before
            {
                assert!(
                    started.elapsed() < IN_EFFECT,
                    "the invalid file was not noticed"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else {
            let burst = 50_001 + n;
            common::replace_file(&path, &config(&upstream, reload, burst, &["/load"]));
            valid += 1;
            let took = until(&proxy, "/load", |r| {
                r.header("x-ratelimit-limit") == Some(burst.to_string().as_str())
            })
            .await;
            slowest = slowest.max(took);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = client.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {sent} requests failed: {failed:?}",
        failed.len()
    );
    assert!(sent > 50, "the client kept sending ({sent})");
    let errors = proxy
        .metric("tenantgate_config_reloads_total{result=\"error\"}")
        .await;
    let successes = proxy
        .metric("tenantgate_config_reloads_total{result=\"success\"}")
        .await;
    assert_eq!(errors, f64::from(invalid));
    assert_eq!(successes, f64::from(valid));
    assert!(
        proxy
            .metric("tenantgate_config_last_reload_success_timestamp_seconds")
            .await
            > 1.7e9
    );
    eprintln!("{sent} requests, {valid} valid and {invalid} invalid reloads, slowest took effect in {slowest:?}");
}

#[tokio::test]
async fn the_admin_endpoint_reloads_and_reports_restart_only_settings() {
    let upstream = Upstream::ok().await;
    let reload = "watch = false\npoll = \"0s\"";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    std::fs::write(&path, config(&upstream, reload, 10, &["/a"])).unwrap();
    let proxy = Proxy::start_file(&path, Services::default()).await;

    let unauthorized = proxy.send_admin("POST", "/admin/reload", &[]).await;
    unauthorized.assert_refusal(401, "unauthenticated");

    let moved = config(&upstream, reload, 10, &["/b"]).replacen("127.0.0.1:0", "127.0.0.1:1", 1);
    common::replace_file(&path, &moved);
    let answer = proxy
        .send_admin(
            "POST",
            "/admin/reload",
            &["Authorization: Bearer admin-token"],
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let outcome = answer.json();
    assert_eq!(outcome["applied"], true);
    assert_eq!(outcome["generation"], 2);
    assert_eq!(
        outcome["restart_required"],
        serde_json::json!(["listen.addr"])
    );
    // The rest applied; the proxy still listens where it did.
    assert_eq!(get(&proxy, "/b").await.status, 200);

    common::replace_file(&path, "[upstream]\nurl = 7\n");
    let refused = proxy
        .send_admin(
            "POST",
            "/admin/reload",
            &["Authorization: Bearer admin-token"],
        )
        .await;
    assert_eq!(refused.status, 422);
    let outcome = refused.json();
    assert_eq!(outcome["applied"], false);
    let error = outcome["error"].as_str().unwrap();
    assert!(
        error.contains("tenantgate.toml:2:7:"),
        "file:line:col in {error}"
    );
    assert_eq!(
        get(&proxy, "/b").await.status,
        200,
        "the old config serves on"
    );
}

#[tokio::test]
async fn buckets_survive_a_reload_rescaled_to_the_new_limit() {
    let upstream = Upstream::ok().await;
    let reload = "watch = false\npoll = \"0s\"";
    let plan = |rate: u64, burst: u64| {
        config(&upstream, reload, burst, &["/r"])
            .replace("rate = 100000", &format!("rate = {rate}"))
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    std::fs::write(&path, plan(1, 3)).unwrap();
    let clock = Arc::new(ManualClock::at(Duration::from_secs(1_795_388_400)));
    let services = Services {
        clock: clock.clone(),
        usage: Arc::new(Usage::in_memory()),
        ..Services::default()
    };
    let proxy = Proxy::start_file(&path, services).await;
    let app = proxy.running.as_ref().unwrap().app.clone();
    for _ in 0..3 {
        assert_eq!(get(&proxy, "/r").await.status, 200);
    }
    get(&proxy, "/r").await.assert_refusal(429, "rate_limited");

    // Raised to 10/s, burst 10: alice used 3 tokens, so 7 are left, not 3 s of debt.
    common::replace_file(&path, &plan(10, 10));
    assert!(app.reload().applied);
    let raised = get(&proxy, "/r").await;
    assert_eq!(raised.status, 200);
    assert_eq!(raised.header("x-ratelimit-remaining"), Some("6"));
    for _ in 0..6 {
        assert_eq!(get(&proxy, "/r").await.status, 200);
    }
    get(&proxy, "/r").await.assert_refusal(429, "rate_limited");

    // Lowered to 1/s, burst 3: 10 used is more than 3, so alice stays limited.
    common::replace_file(&path, &plan(1, 3));
    assert!(app.reload().applied);
    let lowered = get(&proxy, "/r").await;
    lowered.assert_refusal(429, "rate_limited");
    assert_eq!(lowered.header("retry-after"), Some("1"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(get(&proxy, "/r").await.status, 200);
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_config_it_started_with() {
    let upstream =
        common::Upstream::start(|_| common::Reply::After(Duration::from_millis(300))).await;
    let reload = "watch = false\npoll = \"0s\"";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    std::fs::write(&path, config(&upstream, reload, 10, &["/old"])).unwrap();
    let proxy = Arc::new(Proxy::start_file(&path, Services::default()).await);
    let in_flight = {
        let proxy = proxy.clone();
        tokio::spawn(async move { get(&proxy, "/old").await })
    };
    let started = Instant::now();
    while upstream.requests().is_empty() {
        assert!(started.elapsed() < IN_EFFECT);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    common::replace_file(&path, &config(&upstream, reload, 10, &["/new"]));
    let app = proxy.running.as_ref().unwrap().app.clone();
    assert!(app.reload().applied);
    assert_eq!(
        get(&proxy, "/old").await.status,
        403,
        "new requests see the new routes"
    );
    let finished = in_flight.await.unwrap();
    assert_eq!(finished.status, 200, "{finished:?}");
}

#[tokio::test]
async fn drain_timings_apply_on_reload_and_the_log_level_needs_a_restart() {
    let upstream = Upstream::ok().await;
    let reload = "watch = false\npoll = \"0s\"";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    std::fs::write(&path, config(&upstream, reload, 10, &["/a"])).unwrap();
    let proxy = Proxy::start_file(&path, Services::default()).await;
    let app = proxy.running.as_ref().unwrap().app.clone();
    assert_eq!(app.snapshot().config.listen.drain_delay, Duration::ZERO);

    let changed = config(&upstream, reload, 10, &["/a"]).replacen(
        "[listen]\n",
        "[listen]\ndrain_delay = \"3s\"\nshutdown_grace = \"7s\"\n",
        1,
    ) + "[log]\nlevel = \"debug\"\n";
    common::replace_file(&path, &changed);
    let answer = proxy
        .send_admin(
            "POST",
            "/admin/reload",
            &["Authorization: Bearer admin-token"],
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.json()["restart_required"],
        serde_json::json!(["log.level"])
    );
    let listen = app.snapshot().config.listen.clone();
    assert_eq!(
        listen.drain_delay,
        Duration::from_secs(3),
        "read when a drain starts"
    );
    assert_eq!(listen.shutdown_grace, Duration::from_secs(7));
}
