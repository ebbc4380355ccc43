//! Hostile clients: connections that send nothing or a request head a byte at a time,
//! and bodies built to cost CPU, against the real listeners.

mod common;

use std::time::{Duration, Instant};

use common::{Proxy, Upstream, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(1500);

fn config() -> String {
    format!(
        r#"
[listen]
header_read_timeout = "{}ms"

[upstream]
url = "${{UPSTREAM}}"

[[route]]
match = "GET /v1/{{*rest}}"
scope = "shared"
"#,
        HEADER_READ_TIMEOUT.as_millis()
    )
}

/// The tests here measure time, so they run one at a time: a neighbour editing 4 MiB
/// bodies on the same two cores must not be what delays a probe.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Reads until the server closes the connection; how long that took.
async fn closed_after(mut stream: TcpStream, opened: Instant) -> Duration {
    let mut sink = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the server never closed the connection");
    opened.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_connections_are_cut_while_probes_and_requests_are_served() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(&config(), &upstream).await;
    // 150 connections to each listener (more than the admin listener used to allow):
    // silent ones, half an HTTP/2 preface, and an HTTP/1.1 head that never ends.
    let opened = Instant::now();
    let mut held = Vec::new();
    for i in 0..300 {
        let addr = if i % 2 == 0 { proxy.addr } else { proxy.admin };
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        match i % 6 {
            0 | 1 => {}
            2 | 3 => stream.write_all(b"PRI * HTTP/2").await.expect("write"),
            _ => stream
                .write_all(b"GET /v1/x HTTP/1.1\r\nhost: a\r\nx-slow: ")
                .await
                .expect("write"),
        }
        held.push(stream);
    }

    let asked = Instant::now();
    let probe = proxy.admin_get("/healthz", &[]).await;
    assert_eq!(probe.status, 200);
    let proxied = proxy.send("GET", "/v1/x", &[], b"").await;
    assert_eq!(proxied.status, 200);
    let took = asked.elapsed();
    assert!(
        took < HEADER_READ_TIMEOUT / 3,
        "the probe and the request waited {took:?} behind idle connections"
    );

    for stream in held {
        let after = closed_after(stream, opened).await;
        assert!(
            after >= HEADER_READ_TIMEOUT - Duration::from_millis(100),
            "closed after {after:?}, before header_read_timeout"
        );
        assert!(
            after < HEADER_READ_TIMEOUT * 3,
            "still open {after:?} after it was opened"
        );
    }
    assert_eq!(proxy.admin_get("/healthz", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_at_header_read_timeout() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(&config(), &upstream).await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(b"GET /v1/x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("write");
    // Read exactly one response (head, then Content-Length bytes), leaving the
    // connection open and idle.
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let complete = |got: &[u8]| {
        let text = String::from_utf8_lossy(got);
        let Some(head_end) = text.find("\r\n\r\n") else {
            return false;
        };
        let length = text[..head_end]
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            })
            .unwrap_or(0);
        got.len() >= head_end + 4 + length
    };
    while !complete(&got) {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("an answer")
            .expect("readable");
        assert!(n > 0, "closed before the answer was complete");
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let idle_since = Instant::now();
    let after = closed_after(stream, idle_since).await;
    assert!(
        after >= HEADER_READ_TIMEOUT - Duration::from_millis(100)
            && after < HEADER_READ_TIMEOUT * 3,
        "an idle keep-alive connection closed after {after:?}"
    );
}

const BULK: &str = r#"
[upstream]
url = "${UPSTREAM}"
[limits]
max_body = "16MiB"
[[route]]
match = "POST /items"
scope = "tenant"
rewrite.json = { "/ids" = "prefix" }
[[route]]
match = "POST /keys"
scope = "tenant"
rewrite.json = { "/user_id" = "bind", "/**/$where" = "deny" }
[[route]]
match = "GET|POST /small"
scope = "tenant"
"#;

/// `{"ids":["i0","i1",...]}` of about `bytes` bytes: every item is rewritten.
fn items(bytes: usize) -> Vec<u8> {
    let ids: Vec<String> = (0..bytes / 10).map(|i| format!("\"i{i:07}\"")).collect();
    format!("{{\"ids\":[{}]}}", ids.join(",")).into_bytes()
}

/// One object of about `bytes` bytes of distinct keys, and the bound `user_id`.
fn keys(bytes: usize) -> Vec<u8> {
    let members: Vec<String> = (0..bytes / 16)
        .map(|i| format!("\"k{i:07}\":\"v{i}\""))
        .collect();
    format!("{{{},\"user_id\":\"alice\"}}", members.join(",")).into_bytes()
}

async fn timed_post(proxy: &Proxy, path: &str, body: &[u8]) -> Duration {
    let started = Instant::now();
    let headers = ["X-Tenant-Id: alice", "Content-Type: application/json"];
    let response = proxy.send("POST", path, &headers, body).await;
    assert_eq!(response.status, 200, "{path}: {:?}", response.json());
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_cost_time_in_proportion_to_their_size() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(BULK, &upstream).await;
    for (path, make) in [("/items", items as fn(usize) -> Vec<u8>), ("/keys", keys)] {
        let (small, large) = (make(1 << 20), make(4 << 20));
        timed_post(&proxy, path, &small).await; // warm up the connection pool
        let one = timed_post(&proxy, path, &small).await;
        let four = timed_post(&proxy, path, &large).await;
        // Linear work takes about 4x; the quadratic rewriter this replaced took 16x.
        assert!(
            four < one * 9,
            "{path}: 1 MiB took {one:?}, 4 MiB took {four:?}: not linear"
        );
    }
    let seen = upstream.requests();
    let last = &seen[seen.len() - 1].body;
    assert!(
        last.ends_with(br#","user_id":"u_alice"}"#),
        "the large body was rewritten"
    );
}

/// Bob's small requests, sent one after another from a thread and runtime of their own
/// (so their clock runs even while every proxy worker is busy) until `stop`; the
/// slowest answer and how many were sent.
fn probe_until(
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Duration, u32)> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let request = common::request_bytes("GET", "/small", &["X-Tenant-Id: bob"], b"");
            let (mut slowest, mut sent) = (Duration::ZERO, 0);
            while !stop.load(std::sync::atomic::Ordering::Acquire) && sent < 2_000 {
                let asked = Instant::now();
                assert_eq!(common::raw(addr, &request).await.status, 200);
                slowest = slowest.max(asked.elapsed());
                sent += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (slowest, sent)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_being_rewritten_delay_no_other_tenant() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(BULK, &upstream).await;
    let large = items(2 << 20);
    timed_post(&proxy, "/small", b"{}").await; // warm up the connection pool
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = probe_until(proxy.addr, stop.clone());
    // More large bodies than the proxy has workers, so without the hand-off every
    // worker would be inside a rewrite at once.
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        timed_post(&proxy, "/items", &large),
        timed_post(&proxy, "/items", &large),
        timed_post(&proxy, "/items", &large),
    );
    let busy = started.elapsed();
    eprintln!("alice's bodies: {a:?} {b:?} {c:?}");
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (slowest, sent) = probe.join().expect("probe");
    eprintln!("bob: {sent} probes, slowest {slowest:?}");
    assert!(sent >= 5, "only {sent} probes in {busy:?}");
    assert!(
        slowest < busy / 5,
        "bob waited {slowest:?} while alice's bodies took {busy:?}"
    );
}

#[tokio::test]
async fn buffered_bodies_past_the_budget_are_refused_and_the_process_carries_on() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const BUDGET: &str = r#"
[upstream]
url = "${UPSTREAM}"
[limits]
max_buffered = "128KiB"
[[route]]
match = "POST /json"
scope = "tenant"
rewrite.json = { "/user_id" = "bind" }
"#;
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(BUDGET, &upstream).await;
    let body = format!(r#"{{"user_id":"alice","pad":"{}"}}"#, "a".repeat(48 * 1024));
    let headers = ["X-Tenant-Id: alice", "Content-Type: application/json"];
    let request = common::request_bytes("POST", "/json", &headers, body.as_bytes());
    let (head_and_most, rest) = request.split_at(request.len() - 1000);

    // Alice's body is half-way in: most of it is buffered and held.
    let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
    slow.write_all(head_and_most).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A second body of that size does not fit beside it (a rewrite holds the body
    // and its new form at once: 96 KiB).
    let refused = common::raw(proxy.addr, &request).await;
    refused.assert_refusal(503, "overloaded");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(proxy.admin_get("/healthz", &[]).await.status, 200);

    // Alice's completes, and gives its bytes back.
    slow.write_all(rest).await.unwrap();
    let first = common::read_response(&mut slow).await;
    assert_eq!(first.status, 200);
    let again = common::raw(proxy.addr, &request).await;
    assert_eq!(again.status, 200, "the budget was given back");
    assert_eq!(
        upstream.requests().len(),
        2,
        "the refused body never went upstream"
    );
}

#[tokio::test]
async fn a_malformed_request_body_is_the_clients_error_not_the_upstreams() {
    const STREAMED: &str = r#"
[upstream]
url = "${UPSTREAM}"
[[route]]
match = "POST /stream"
scope = "shared"
"#;
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(STREAMED, &upstream).await;
    let bad_chunk = b"POST /stream HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n";
    let response = proxy.raw(bad_chunk).await;
    response.assert_refusal(400, "bad_request");
    // A well-formed one on the same route goes through.
    let good = b"POST /stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(proxy.raw(good).await.status, 200);
}

const IDLE_TIMEOUT: Duration = Duration::from_millis(800);

/// An HTTP/2 connection to the proxy, and a future resolving when the proxy closes it.
async fn h2_connection(
    proxy: &Proxy,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    let closed = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, closed)
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    proxy: &Proxy,
    path: &str,
) -> Vec<u8> {
    use http_body_util::BodyExt;
    let request = http::Request::get(format!("http://{}{path}", proxy.addr))
        .body(http_body_util::Empty::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("answered");
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.expect("body");
    body.to_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_is_closed_once_idle_but_never_under_an_open_stream() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let upstream = Upstream::start(|seen| match seen.target.as_str() {
        "/v1/stream" => common::Reply::Gated(b"first;", b"rest"),
        _ => common::Reply::Ok,
    })
    .await;
    let config = config().replace(
        "[listen]\n",
        &format!(
            "[listen]\nidle_timeout = \"{}ms\"\n",
            IDLE_TIMEOUT.as_millis()
        ),
    );
    let proxy = Proxy::start(&config, &upstream).await;

    // A stream that lasts three idle timeouts keeps its connection open.
    let (mut sender, closed) = h2_connection(&proxy).await;
    let streaming = {
        let mut sender = sender.clone();
        let proxy_addr = proxy.addr;
        tokio::spawn(async move {
            use http_body_util::BodyExt;
            let request = http::Request::get(format!("http://{proxy_addr}/v1/stream"))
                .body(http_body_util::Empty::new())
                .expect("request");
            let response = sender.send_request(request).await.expect("answered");
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
        })
    };
    tokio::time::sleep(IDLE_TIMEOUT * 3).await;
    assert!(!closed.is_finished(), "closed under an open stream");
    upstream.gate.notify_one();
    let body = tokio::time::timeout(PATIENCE, streaming)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&body[..], b"first;rest");
    assert_eq!(
        h2_get(&mut sender, &proxy, "/v1/x").await,
        br#"{"ok":true}"#
    );

    // Then, with nothing open, it is closed after idle_timeout, pings or not.
    let idle_since = Instant::now();
    tokio::time::timeout(PATIENCE, closed)
        .await
        .expect("an idle HTTP/2 connection was never closed")
        .unwrap();
    let after = idle_since.elapsed();
    assert!(
        after >= IDLE_TIMEOUT - Duration::from_millis(100) && after < IDLE_TIMEOUT * 3,
        "closed after {after:?} idle"
    );
}
