//! Pass-through traffic: the exact request the upstream saw (method, path, query,
//! headers after hygiene, body byte for byte), streaming in both directions, h2c.

mod common;

use std::collections::BTreeSet;

use common::{Proxy, Reply, Upstream, PATIENCE};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub const CONFIG: &str = r#"
[upstream]
url = "${UPSTREAM}"
timeout = "2s"
body_timeout = "500ms"
set_headers = { Authorization = "Bearer upstream-key", "X-Backend" = "memory" }

[tenant]
privileged_token = "priv-token"

[tenants.acme]
upstream_headers = { Authorization = "Bearer acme-key" }

[[route]]
name = "memories"
match = "GET|POST /v1/sessions/{session_id}/memories"
scope = "tenant"
set_headers = { "X-Route" = "memories" }

[[route]]
match = "PUT /v1/upload"
scope = "tenant"

[[route]]
match = "GET /v1/shared/{*rest}"
scope = "shared"
"#;

#[tokio::test]
async fn upstream_sees_exactly_the_cleaned_request() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let body = br#"{"text":"hello","embedding":[3.141592653589793238,1e-7,-0.0]}"#;
    let response = proxy
        .send(
            "POST",
            "/v1/sessions/s%201/memories?limit=5&q=a%20b&limit=6",
            &[
                "X-Tenant-Id: alice",
                "Content-Type: application/json",
                "Accept: text/a",
                "Accept: text/b",
                "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "X-Request-Id: req-123",
                "X-Forwarded-For: 10.0.0.1",
                "Authorization: Bearer client-forged",
                "X-Backend: forged",
                "X-Route: forged",
                "X_Route: forged-lookalike",
                "X-Tenantgate-Token: priv-token",
                "X-HTTP-Method-Override: DELETE",
                "X-Original-URL: /v1/reset",
                "X-Rewrite-URL: /v1/reset",
                "Connection: X-Secret",
                "X-Secret: hop-by-hop",
                "Keep-Alive: timeout=5",
                "Proxy-Authorization: Basic Zm9v",
                "TE: trailers",
                "Expect: 100-continue",
            ],
            body,
        )
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("x-request-id"), Some("req-123"));

    let seen = upstream.only_request();
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.target,
        "/v1/sessions/s%201/memories?limit=5&q=a%20b&limit=6"
    );
    assert_eq!(seen.body, body, "body forwarded byte for byte");
    let names: BTreeSet<&str> = seen.names().into_iter().collect();
    let expected: BTreeSet<&str> = [
        "accept",
        "accept-encoding",
        "authorization",
        "content-length",
        "content-type",
        "host",
        "traceparent",
        "x-backend",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-request-id",
        "x-route",
    ]
    .into_iter()
    .collect();
    assert_eq!(
        names, expected,
        "headers after hygiene: {:#?}",
        seen.headers
    );
    assert_eq!(
        seen.all("accept"),
        ["text/a", "text/b"],
        "repeated headers keep their order"
    );
    assert_eq!(seen.header("authorization"), Some("Bearer upstream-key"));
    assert_eq!(
        seen.header("accept-encoding"),
        Some("identity"),
        "tenant answers are inspected"
    );
    assert_eq!(seen.header("x-backend"), Some("memory"));
    assert_eq!(seen.header("x-route"), Some("memories"));
    assert_eq!(seen.header("x-forwarded-for"), Some("10.0.0.1, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-request-id"), Some("req-123"));
    assert_eq!(
        seen.header("host"),
        Some(upstream.addr.to_string().as_str())
    );
    assert_eq!(
        seen.header("traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
}

#[tokio::test]
async fn request_id_is_created_when_absent_and_tenant_key_wins() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let response = proxy
        .send(
            "GET",
            "/v1/sessions/s1/memories",
            &["X-Tenant-Id: acme"],
            b"",
        )
        .await;
    assert_eq!(response.status, 200);
    let seen = upstream.only_request();
    let id = seen
        .header("x-request-id")
        .expect("a request id is created");
    assert_eq!(
        response.header("x-request-id"),
        Some(id),
        "and echoed to the client"
    );
    assert_eq!(seen.header("authorization"), Some("Bearer acme-key"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn paths_are_forwarded_in_one_canonical_encoding() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let response = proxy
        .send(
            "GET",
            "/v1/%73essions/caf%C3%A9%2Bx%7E/memories",
            &["X-Tenant-Id: alice"],
            b"",
        )
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        upstream.only_request().target,
        "/v1/sessions/caf%C3%A9+x~/memories"
    );
}

#[tokio::test]
async fn absolute_form_targets_cannot_redirect_the_upstream() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let response = proxy
        .send("GET", "http://evil.example/v1/shared/x", &[], b"")
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = upstream.only_request();
    assert_eq!(seen.target, "/v1/shared/x");
    assert_eq!(
        seen.header("host"),
        Some(upstream.addr.to_string().as_str())
    );
}

#[tokio::test]
async fn upstream_base_path_prefixes_every_request() {
    let upstream = Upstream::ok().await;
    let config = CONFIG.replace("url = \"${UPSTREAM}\"", "url = \"${UPSTREAM}/base/\"");
    let proxy = Proxy::start(&config, &upstream).await;
    let response = proxy.send("GET", "/v1/shared/a/b?x=1", &[], b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(upstream.only_request().target, "/base/v1/shared/a/b?x=1");
}

#[tokio::test]
async fn request_body_streams_to_the_upstream_before_it_ends() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"PUT /v1/upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Tenant-Id: alice\r\n\
              Transfer-Encoding: chunked\r\n\r\n6\r\nfirst-\r\n",
        )
        .await
        .unwrap();
    // The upstream sees the first chunk while the client has not finished sending.
    tokio::time::timeout(PATIENCE, upstream.body_started.notified())
        .await
        .expect("the first chunk reached the upstream before the body ended");
    stream.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
    let response = common::read_response(&mut stream).await;
    assert_eq!(response.status, 200);
    assert_eq!(upstream.only_request().body, b"first-second");
}

#[tokio::test]
async fn response_body_streams_to_the_client_before_it_ends() {
    let upstream = Upstream::start(|_| Reply::Gated(b"first-part;", b"second-part")).await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let request = common::request_bytes("GET", "/v1/shared/stream", &[], b"");
    let response = common::read_streamed(proxy.addr, &request, "first-part;", &upstream).await;
    assert!(response.complete);
    assert_eq!(response.body, b"first-part;second-part");
}

#[tokio::test]
async fn response_hop_by_hop_headers_are_removed() {
    let upstream = Upstream::start(|_| {
        Reply::With(
            201,
            r#"{"id":"m1"}"#,
            vec![
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("x-backend-info", "kept"),
            ],
        )
    })
    .await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let response = proxy.send("GET", "/v1/shared/x", &[], b"").await;
    assert_eq!(response.status, 201);
    assert_eq!(response.body, br#"{"id":"m1"}"#);
    assert_eq!(response.header("x-backend-info"), Some("kept"));
    assert_eq!(response.header("keep-alive"), None);
    assert_eq!(response.header("proxy-connection"), None);
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    use http_body_util::{BodyExt, Empty};
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/v1/sessions/s1/memories?x=1", proxy.addr))
        .header("x-tenant-id", "alice")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"ok":true}"#);
    let seen = upstream.only_request();
    assert_eq!(seen.target, "/v1/sessions/s1/memories?x=1");
    assert!(seen.header("x-tenant-id").is_none());
}
