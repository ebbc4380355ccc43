//! Every refusal of the corridor: its status, its SPEC 7 JSON body, and an upstream
//! that saw nothing. Path tricks, identity tricks, the privileged token.

mod common;

use common::{Proxy, Reply, Upstream};

const CONFIG: &str = r#"
[upstream]
url = "${UPSTREAM}"
timeout = "300ms"

[tenant]
privileged_token = "priv-token"

[tenants.mallory]
blocked = true

[[route]]
name = "memories"
match = "GET|POST /v1/sessions/{session_id}/memories"
scope = "tenant"

[[route]]
match = "GET /v1/shared/{*rest}"
scope = "shared"

[[route]]
name = "promote"
match = "POST /v1/shared/promote"
scope = "privileged"

[[route]]
name = "reset"
match = "POST /v1/reset"
scope = "deny"
"#;

async fn setup() -> (Upstream, Proxy) {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    (upstream, proxy)
}

#[tokio::test]
async fn path_tricks_are_bad_path_and_never_forwarded() {
    let (upstream, proxy) = setup().await;
    let tricks = [
        "/v1/sessions/../memories",
        "/v1/sessions/s1/../../shared/x",
        "/v1/shared/../sessions/s1/memories",
        "/v1/sessions/%2e%2e/memories",
        "/v1/sessions/%2E%2E/memories",
        "/v1/sessions/.%2e/memories",
        "/v1/sessions/./memories",
        "/v1/shared/%2e",
        "/v1/sessions/a%2Fb/memories",
        "/v1/sessions/a%2fb/memories",
        "/v1/sessions/a%5Cb/memories",
        "/v1/sessions/a%5cb/memories",
        "/v1/sessions/a%00/memories",
        "/v1/sessions/a%0d%0aX:%20y/memories",
        "//v1/sessions/a/memories",
        "/v1//sessions/a/memories",
        "/v1/sessions//memories",
        "/v1/sessions/a;x=1/memories",
        "/v1/sessions/a%3Bx/memories",
        "/v1/sessions/a%252F/memories",
        "/v1/sessions/a%25/memories",
        "/v1/sessions/a%zz/memories",
        "/v1/sessions/a%C3/memories",
        "/v1/shared/x/..",
    ];
    for trick in tricks {
        let response = proxy.send("GET", trick, &["X-Tenant-Id: alice"], b"").await;
        response.assert_refusal(400, "bad_path");
    }
    // A raw backslash or an asterisk-form target: refused by the parser or by us.
    for target in ["/v1/sessions/a\\b/memories", "*"] {
        let response = proxy
            .send("OPTIONS", target, &["X-Tenant-Id: alice"], b"")
            .await;
        assert_eq!(response.status, 400, "{target}: {response:?}");
    }
    assert!(upstream.requests().is_empty(), "{:#?}", upstream.requests());
}

#[tokio::test]
async fn unmatched_routes_and_deny_routes_are_route_not_allowed() {
    let (upstream, proxy) = setup().await;
    let cases = [
        ("GET", "/V1/sessions/s1/memories"),
        ("GET", "/v1/Sessions/s1/memories"),
        ("GET", "/v1/sessions/s1/MEMORIES"),
        ("DELETE", "/v1/sessions/s1/memories"),
        ("PATCH", "/v1/sessions/s1/memories"),
        ("get", "/v1/sessions/s1/memories"),
        ("GET", "/v1/sessions/s1/memories/"),
        ("GET", "/v1/sessions/s1/memories/extra"),
        ("GET", "/v1/sessions/s1"),
        ("POST", "/v1/shared/x"),
        ("GET", "/"),
        ("GET", "/admin/config"),
        ("POST", "/v1/reset"),
    ];
    for (method, path) in cases {
        let response = proxy.send(method, path, &["X-Tenant-Id: alice"], b"").await;
        response.assert_refusal(403, "route_not_allowed");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn tenant_routes_require_a_tenant_shared_routes_do_not() {
    let (upstream, proxy) = setup().await;
    let response = proxy
        .send("GET", "/v1/sessions/s1/memories", &[], b"")
        .await;
    response.assert_refusal(400, "tenant_required");
    assert!(response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-tenant-id"));
    assert!(upstream.requests().is_empty());

    let response = proxy.send("GET", "/v1/shared/facts", &[], b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn identity_tricks_are_invalid_tenant() {
    let (upstream, proxy) = setup().await;
    let tricks: Vec<Vec<u8>> = vec![
        b"X-Tenant-Id: alice\r\nX-Tenant-Id: alice".to_vec(),
        b"X-Tenant-Id: alice\r\nx-tenant-id: bob".to_vec(),
        b"X-Tenant-Id: alice\r\nX-TENANT-ID: bob".to_vec(),
        b"X_Tenant_Id: bob".to_vec(),
        b"X-Tenant-Id: alice\r\nX_Tenant_Id: bob".to_vec(),
        b"X-Tenant-Id: alice\r\nx-tenant_id: bob".to_vec(),
        b"X-Tenant-Id: alice\r\nConnection: X-Tenant-Id".to_vec(),
        b"X-Tenant-Id: alice\r\nConnection: keep-alive, x_tenant_id".to_vec(),
        b"X-Tenant-Id: alice,bob".to_vec(),
        b"X-Tenant-Id: alice, bob".to_vec(),
        b"X-Tenant-Id: a\tb".to_vec(),
        b"X-Tenant-Id: a\xc2\x85b".to_vec(),
        b"X-Tenant-Id: alice\xc2\xa0".to_vec(),
        b"X-Tenant-Id: \xc2\xa0alice".to_vec(),
        b"X-Tenant-Id: a\xffb".to_vec(),
        b"X-Tenant-Id:".to_vec(),
        b"X-Tenant-Id:    ".to_vec(),
        [b"X-Tenant-Id: ".as_slice(), &[b'x'; 257]].concat(),
    ];
    for trick in &tricks {
        for path in ["/v1/sessions/s1/memories", "/v1/shared/facts"] {
            let mut request =
                format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n").into_bytes();
            request.extend_from_slice(trick);
            request.extend_from_slice(b"\r\n\r\n");
            let response = proxy.raw(&request).await;
            let shown = String::from_utf8_lossy(trick);
            assert_eq!(response.status, 400, "{shown}: {response:?}");
            assert_eq!(
                response.json()["error"]["code"],
                "invalid_tenant",
                "{shown}"
            );
        }
    }
    // Control bytes the HTTP parser itself refuses: a bare 400, still never forwarded.
    for trick in [
        b"X-Tenant-Id: a\x01b".as_slice(),
        b"X-Tenant-Id: a\x7fb",
        b"X-Tenant-Id: a\x00b",
    ] {
        let mut request =
            b"GET /v1/shared/facts HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".to_vec();
        request.extend_from_slice(trick);
        request.extend_from_slice(b"\r\n\r\n");
        assert_eq!(proxy.raw(&request).await.status, 400);
    }
    let longest = format!("X-Tenant-Id: {}", "x".repeat(256));
    let response = proxy
        .send("GET", "/v1/sessions/s1/memories", &[&longest], b"")
        .await;
    assert_eq!(response.status, 200, "256 bytes is allowed");
    assert_eq!(
        upstream.requests().len(),
        1,
        "only the valid request was forwarded"
    );
}

#[tokio::test]
async fn privileged_routes_need_the_token_which_is_never_forwarded() {
    let (upstream, proxy) = setup().await;
    let refused: [&[&str]; 5] = [
        &[],
        &["X-Tenantgate-Token: wrong"],
        &["X-Tenantgate-Token: priv-token-and-more"],
        &[
            "X-Tenantgate-Token: priv-token",
            "X-Tenantgate-Token: priv-token",
        ],
        &["X_Tenantgate_Token: priv-token"],
    ];
    for headers in refused {
        let response = proxy
            .send("POST", "/v1/shared/promote", headers, b"{}")
            .await;
        response.assert_refusal(403, "privileged_required");
    }
    assert!(upstream.requests().is_empty());

    let response = proxy
        .send(
            "POST",
            "/v1/shared/promote",
            &["x-tenantgate-token: priv-token", "X-Tenant-Id: alice"],
            b"{}",
        )
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = upstream.only_request();
    assert!(
        seen.names()
            .iter()
            .all(|n| !n.contains("tenantgate") && !n.contains("tenant-id")),
        "{:#?}",
        seen.headers
    );
    // The token is for privileged routes only; on other routes it is simply removed.
    let response = proxy
        .send(
            "GET",
            "/v1/shared/x",
            &["X-Tenantgate-Token: priv-token"],
            b"",
        )
        .await;
    assert_eq!(response.status, 200);
    assert!(upstream.requests()[1]
        .header("x-tenantgate-token")
        .is_none());
}

#[tokio::test]
async fn blocked_tenants_are_refused_everywhere() {
    let (upstream, proxy) = setup().await;
    for path in ["/v1/sessions/s1/memories", "/v1/shared/x"] {
        let response = proxy
            .send("GET", path, &["X-Tenant-Id: mallory"], b"")
            .await;
        response.assert_refusal(403, "tenant_blocked");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn unreachable_upstream_is_502_upstream_unavailable() {
    // Port 1 (tcpmux) has no listener here. (A port found by binding and dropping a
    // listener can be taken by another test's listener before the request is sent.)
    let config = CONFIG.replace("${UPSTREAM}", "http://127.0.0.1:1");
    let proxy = Proxy::start_raw(&config).await;
    for method in ["GET", "POST"] {
        let response = proxy
            .send(
                method,
                "/v1/sessions/s1/memories",
                &["X-Tenant-Id: a"],
                b"{}",
            )
            .await;
        response.assert_refusal(502, "upstream_unavailable");
    }
}

#[tokio::test]
async fn silent_upstream_is_504_upstream_timeout() {
    let upstream = Upstream::start(|_| Reply::Never).await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let started = std::time::Instant::now();
    let response = proxy.send("GET", "/v1/shared/x", &[], b"").await;
    response.assert_refusal(504, "upstream_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A keep-alive client (no `Connection: close`) whose refused request carried a body
/// the proxy never read is told the connection closes, so a pooling client (httpx,
/// requests) opens a new one instead of losing its next request in the closing socket.
#[tokio::test]
async fn a_refusal_that_leaves_the_body_unread_says_the_connection_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (upstream, proxy) = setup().await;
    let body = vec![b'x'; 64 * 1024];
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST /v1/reset HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(&body).await;
    let mut received = Vec::new();
    tokio::time::timeout(common::PATIENCE, stream.read_to_end(&mut received))
        .await
        .expect("the proxy closed the connection")
        .ok();
    let response = common::parse_response(&received);
    response.assert_refusal(403, "route_not_allowed");
    assert_eq!(response.header("connection"), Some("close"));
    // A refusal without a body keeps the connection: the second request on it is
    // answered too.
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut both = Vec::new();
    tokio::time::timeout(common::PATIENCE, stream.read_to_end(&mut both))
        .await
        .expect("both answered")
        .unwrap();
    let text = String::from_utf8_lossy(&both);
    assert_eq!(text.matches("HTTP/1.1 403").count(), 2, "{text}");
    assert!(upstream.requests().is_empty());
}
