//! Timeouts, graceful shutdown with a request in flight, and the admin listener.

mod common;

use std::time::{Duration, Instant};

use common::{Proxy, Reply, Upstream, PATIENCE};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONFIG: &str = r#"
[listen]
drain_delay = "300ms"
shutdown_grace = "5s"
header_read_timeout = "300ms"

[upstream]
url = "${UPSTREAM}"
timeout = "2s"
body_timeout = "300ms"

[admin]
token = "${TEST_SECRET}"

[[route]]
match = "GET /v1/{*rest}"
scope = "shared"
"#;

#[tokio::test]
async fn upstream_stalling_mid_body_is_cut_off_after_body_timeout() {
    let upstream = Upstream::start(|_| Reply::StallMidBody).await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let started = Instant::now();
    let response = proxy.send("GET", "/v1/stall", &[], b"").await;
    assert_eq!(response.status, 200, "headers were already on their way");
    assert!(
        !response.complete,
        "the truncated body is not passed off as complete"
    );
    assert_eq!(response.body, b"{\"partial\":");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /v1/x HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("header_read_timeout closed the connection")
        .ok();
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let upstream = Upstream::start(|_| Reply::After(Duration::from_millis(800))).await;
    let mut proxy = Proxy::start(CONFIG, &upstream).await;
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move {
        common::raw(addr, &common::request_bytes("GET", "/v1/slow", &[], b"")).await
    });
    wait_until(|| upstream.requests().len() == 1).await;

    let running = proxy.running.take().unwrap();
    let drain = tokio::spawn(running.drain());
    // During drain_delay: still serving, but no longer ready.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(proxy.admin_get("/readyz", &[]).await.status, 503);
    assert_eq!(proxy.admin_get("/healthz", &[]).await.status, 200);

    let response = in_flight.await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, br#"{"ok":"late"}"#);
    let drained = tokio::time::timeout(PATIENCE, drain)
        .await
        .unwrap()
        .unwrap();
    assert!(drained.in_flight_finished);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn drain_gives_up_after_shutdown_grace() {
    let upstream = Upstream::start(|_| Reply::Never).await;
    let config = CONFIG
        .replace("drain_delay = \"300ms\"", "drain_delay = \"0s\"")
        .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"200ms\"")
        .replace("timeout = \"2s\"", "timeout = \"30s\"");
    let mut proxy = Proxy::start(&config, &upstream).await;
    let addr = proxy.addr;
    let _stuck = tokio::spawn(async move {
        common::raw(addr, &common::request_bytes("GET", "/v1/stuck", &[], b"")).await
    });
    wait_until(|| upstream.requests().len() == 1).await;
    let started = Instant::now();
    let drained = proxy.running.take().unwrap().drain().await;
    assert!(!drained.in_flight_finished);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn admin_probes_are_open_and_admin_api_needs_the_token() {
    let upstream = Upstream::ok().await;
    let text = CONFIG.replace("${UPSTREAM}", &upstream.url());
    let proxy = Proxy::start_raw(&text).await;
    assert_eq!(proxy.admin_get("/healthz", &[]).await.status, 200);
    assert_eq!(proxy.admin_get("/readyz", &[]).await.status, 200);

    for headers in [
        &[][..],
        &["Authorization: Bearer wrong"],
        &["Authorization: from-env"],
        &["Authorization: bearer from-env"],
        &[
            "Authorization: Bearer from-env",
            "Authorization: Bearer from-env",
        ],
    ] {
        proxy
            .admin_get("/admin/config", headers)
            .await
            .assert_refusal(401, "unauthenticated");
    }
    proxy
        .admin_get("/usage/today", &[])
        .await
        .assert_refusal(401, "unauthenticated");

    let response = proxy
        .admin_get("/admin/config", &["Authorization: Bearer from-env"])
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    let view = response.json();
    assert_eq!(view["generation"], 1);
    assert_eq!(view["sha256"], hex::encode(Sha256::digest(text.as_bytes())));
    assert_eq!(view["config"]["admin"]["token"], "[redacted]");
    assert_eq!(view["config"]["upstream"]["url"], upstream.url());
    assert!(!String::from_utf8_lossy(&response.body).contains("from-env"));
    proxy
        .admin_get("/admin/nope", &["Authorization: Bearer from-env"])
        .await
        .assert_refusal(404, "not_found");
}

async fn wait_until(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_answer_cut_off_mid_body_is_not_metered() {
    let upstream = Upstream::start(|seen| {
        if seen.target.ends_with("stall") {
            Reply::StallMidBody
        } else {
            Reply::Ok
        }
    })
    .await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let cut = proxy
        .send("GET", "/v1/stall", &["X-Tenant-Id: alice"], b"")
        .await;
    assert!(!cut.complete, "the upstream stalled mid-body");
    let whole = proxy
        .send("GET", "/v1/ok", &["X-Tenant-Id: alice"], b"")
        .await;
    assert_eq!(whole.status, 200);
    let today = proxy
        .admin_get("/usage/today", &["Authorization: Bearer from-env"])
        .await
        .json();
    assert_eq!(
        today["events"], 1,
        "only the whole answer is metered: {today}"
    );
}
