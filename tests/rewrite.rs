//! Stage 4 end to end: every rewrite mode at every location it is allowed, with the
//! value absent, naming the caller, naming another tenant and of the wrong type; the
//! exact upstream request or the exact refusal (and then nothing upstream). Parser
//! differentials: duplicate and escaped keys, operators, encoded query names, media
//! types, content codings and sizes.

mod common;

use common::{Proxy, RawResponse, Upstream};

const CONFIG: &str = r#"
[upstream]
url = "${UPSTREAM}"

[limits]
max_body = "1KiB"

[[route]]
match = "GET /path/bind/{v}"
scope = "tenant"
rewrite.path = { v = "bind" }
[[route]]
match = "GET /path/set/{v}"
scope = "tenant"
rewrite.path = { v = "set" }
[[route]]
match = "GET /path/prefix/{v}"
scope = "tenant"
rewrite.path = { v = "prefix" }
[[route]]
match = "GET /path/prefix!/{v}"
scope = "tenant"
rewrite.path = { v = "prefix!" }

[[route]]
match = "GET /query/bind"
scope = "tenant"
rewrite.query = { v = "bind" }
[[route]]
match = "GET /query/set"
scope = "tenant"
rewrite.query = { v = "set" }
[[route]]
match = "GET /query/prefix"
scope = "tenant"
rewrite.query = { v = "prefix" }
[[route]]
match = "GET /query/prefix!"
scope = "tenant"
rewrite.query = { v = "prefix!" }
[[route]]
match = "GET /query/deny"
scope = "tenant"
rewrite.query = { v = "deny" }

[[route]]
match = "GET /header/bind"
scope = "tenant"
rewrite.header = { X-V = "bind" }
[[route]]
match = "GET /header/set"
scope = "tenant"
rewrite.header = { X-V = "set" }
[[route]]
match = "GET /header/prefix"
scope = "tenant"
rewrite.header = { X-V = "prefix" }
[[route]]
match = "GET /header/prefix!"
scope = "tenant"
rewrite.header = { X-V = "prefix!" }
[[route]]
match = "GET /header/deny"
scope = "tenant"
rewrite.header = { X-V = "deny" }

[[route]]
match = "POST /json/bind"
scope = "tenant"
rewrite.json = { "/v" = "bind" }
[[route]]
match = "POST /json/set"
scope = "tenant"
rewrite.json = { "/v" = "set" }
[[route]]
match = "POST /json/prefix"
scope = "tenant"
rewrite.json = { "/v" = "prefix" }
[[route]]
match = "POST /json/prefix!"
scope = "tenant"
rewrite.json = { "/v" = "prefix!" }
[[route]]
match = "POST /json/prepend"
scope = "tenant"
rewrite.json = { "/v" = "prepend" }
[[route]]
match = "POST /json/deny"
scope = "tenant"
rewrite.json = { "/v" = "deny" }

[[route]]
name = "mixed"
match = "POST /mixed"
scope = "tenant"
set_headers = { X-NS = "{ns}", X-Tenant = "{tenant}", X-Fixed = "yes" }
rewrite.query = { v = "bind" }
rewrite.json = { "/v" = "bind", "/**/$or" = "deny", "/messages/*/sid" = "prefix" }

[[route]]
match = "POST /raw"
scope = "tenant"
"#;

/// What should happen to one request.
enum Expect {
    /// Forwarded; the upstream saw this target, this `X-V` header (if any) and body.
    Forward(&'static str, Option<&'static str>, &'static str),
    Refuse(u16, &'static str),
}
use Expect::*;

async fn check(
    proxy: &Proxy,
    upstream: &Upstream,
    method: &str,
    target: &str,
    header: Option<&str>,
    body: &str,
    expect: Expect,
) {
    let before = upstream.requests().len();
    let mut headers = vec!["X-Tenant-Id: alice"];
    let header_line = header.map(|v| format!("X-V: {v}"));
    if let Some(line) = &header_line {
        headers.push(line);
    }
    if !body.is_empty() {
        headers.push("Content-Type: application/json");
    }
    let response = proxy.send(method, target, &headers, body.as_bytes()).await;
    let case = format!("{method} {target} header={header:?} body={body}");
    match expect {
        Forward(want_target, want_header, want_body) => {
            assert_eq!(response.status, 200, "{case}: {response:?}");
            let seen = upstream.requests().pop().unwrap();
            assert_eq!(seen.target, want_target, "{case}");
            assert_eq!(seen.header("x-v"), want_header, "{case}");
            assert_eq!(String::from_utf8_lossy(&seen.body), want_body, "{case}");
            if !want_body.is_empty() {
                assert_eq!(
                    seen.header("content-length"),
                    Some(want_body.len().to_string().as_str()),
                    "{case}"
                );
            }
        }
        Refuse(status, code) => {
            assert_eq!(response.status, status, "{case}: {response:?}");
            response.assert_refusal(status, code);
            assert_eq!(
                upstream.requests().len(),
                before,
                "{case}: refused requests never reach the upstream"
            );
        }
    }
}

#[tokio::test]
async fn every_mode_at_every_location() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let (p, u) = (&proxy, &upstream);

    // Path segments: always present.
    check(
        p,
        u,
        "GET",
        "/path/bind/alice",
        None,
        "",
        Forward("/path/bind/u_alice", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/path/bind/u_alice",
        None,
        "",
        Forward("/path/bind/u_alice", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/path/bind/bob",
        None,
        "",
        Refuse(403, "tenant_mismatch"),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/path/bind/u_bob",
        None,
        "",
        Refuse(403, "tenant_mismatch"),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/path/set/bob",
        None,
        "",
        Forward("/path/set/u_alice", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/path/prefix/s1",
        None,
        "",
        Forward("/path/prefix/u_alice__s1", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/path/prefix/u_bob__s1",
        None,
        "",
        Forward("/path/prefix/u_alice__u_bob__s1", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/path/prefix!/s%201",
        None,
        "",
        Forward("/path/prefix!/u_alice__s%201", None, ""),
    )
    .await;

    // Query parameters.
    check(
        p,
        u,
        "GET",
        "/query/bind",
        None,
        "",
        Forward("/query/bind?v=u_alice", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/bind?a=1&v=alice&b=%20",
        None,
        "",
        Forward("/query/bind?a=1&v=u_alice&b=%20", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/bind?v=u_alice",
        None,
        "",
        Forward("/query/bind?v=u_alice", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/bind?v=bob",
        None,
        "",
        Refuse(403, "tenant_mismatch"),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/bind?v=alice&v=alice",
        None,
        "",
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/set?v=bob",
        None,
        "",
        Forward("/query/set?v=u_alice", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/set",
        None,
        "",
        Forward("/query/set?v=u_alice", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/prefix",
        None,
        "",
        Forward("/query/prefix", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/prefix?v=s+1",
        None,
        "",
        Forward("/query/prefix?v=u_alice__s%201", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/prefix!",
        None,
        "",
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/prefix!?v=s1",
        None,
        "",
        Forward("/query/prefix!?v=u_alice__s1", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/deny?x=1",
        None,
        "",
        Forward("/query/deny?x=1", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/deny?v=1",
        None,
        "",
        Refuse(400, "bad_request"),
    )
    .await;

    // Headers.
    check(
        p,
        u,
        "GET",
        "/header/bind",
        None,
        "",
        Forward("/header/bind", Some("u_alice"), ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/header/bind",
        Some("alice"),
        "",
        Forward("/header/bind", Some("u_alice"), ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/header/bind",
        Some("bob"),
        "",
        Refuse(403, "tenant_mismatch"),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/header/set",
        Some("bob"),
        "",
        Forward("/header/set", Some("u_alice"), ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/header/prefix",
        None,
        "",
        Forward("/header/prefix", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/header/prefix",
        Some("s1"),
        "",
        Forward("/header/prefix", Some("u_alice__s1"), ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/header/prefix!",
        None,
        "",
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/header/deny",
        None,
        "",
        Forward("/header/deny", None, ""),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/header/deny",
        Some("x"),
        "",
        Refuse(400, "bad_request"),
    )
    .await;

    // JSON fields.
    check(
        p,
        u,
        "POST",
        "/json/bind",
        None,
        r#"{"a":1}"#,
        Forward("/json/bind", None, r#"{"a":1,"v":"u_alice"}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/bind",
        None,
        r#"{"v":"alice"}"#,
        Forward("/json/bind", None, r#"{"v":"u_alice"}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/bind",
        None,
        r#"{"v":"u_alice"}"#,
        Forward("/json/bind", None, r#"{"v":"u_alice"}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/bind",
        None,
        r#"{"v":"bob"}"#,
        Refuse(403, "tenant_mismatch"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/bind",
        None,
        r#"{"v":{"$ne":"alice"}}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/bind",
        None,
        r#"{"v":7}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/bind",
        None,
        r#"{"v":["alice"]}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/set",
        None,
        r#"{}"#,
        Forward("/json/set", None, r#"{"v":"u_alice"}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/set",
        None,
        r#"{"v":"bob"}"#,
        Forward("/json/set", None, r#"{"v":"u_alice"}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/set",
        None,
        r#"{"v":null}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/prefix",
        None,
        r#"{"a":1}"#,
        Forward("/json/prefix", None, r#"{"a":1}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/prefix",
        None,
        r#"{"v":"s1"}"#,
        Forward("/json/prefix", None, r#"{"v":"u_alice__s1"}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/prefix",
        None,
        r#"{"v":["a","b"]}"#,
        Forward("/json/prefix", None, r#"{"v":["u_alice__a","u_alice__b"]}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/prefix",
        None,
        r#"{"v":{"$in":["a"]}}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/prefix!",
        None,
        r#"{"a":1}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/prefix!",
        None,
        r#"{"v":"s1"}"#,
        Forward("/json/prefix!", None, r#"{"v":"u_alice__s1"}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/prepend",
        None,
        r#"{}"#,
        Forward("/json/prepend", None, r#"{"v":["u_alice"]}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/prepend",
        None,
        r#"{"v":["x"]}"#,
        Forward("/json/prepend", None, r#"{"v":["u_alice","x"]}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/prepend",
        None,
        r#"{"v":"x"}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/deny",
        None,
        r#"{"a":1}"#,
        Forward("/json/deny", None, r#"{"a":1}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/deny",
        None,
        r#"{"v":1}"#,
        Refuse(400, "bad_request"),
    )
    .await;
}

#[tokio::test]
async fn parser_differentials_are_refused() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let (p, u) = (&proxy, &upstream);
    // Duplicate keys, top level and nested, including a \u-escaped spelling.
    check(
        p,
        u,
        "POST",
        "/json/bind",
        None,
        r#"{"v":"alice","v":"bob"}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/bind",
        None,
        r#"{"v":"alice","\u0076":"bob"}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/raw",
        None,
        r#"{"x":{"k":1,"k":2}}"#,
        Forward("/raw", None, r#"{"x":{"k":1,"k":2}}"#),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/mixed?v=alice",
        None,
        r#"{"x":{"k":1,"k":2}}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    // An escaped key still names the bound field.
    check(
        p,
        u,
        "POST",
        "/json/bind",
        None,
        r#"{"\u0076":"bob"}"#,
        Refuse(403, "tenant_mismatch"),
    )
    .await;
    // Operators and deny at depth.
    check(
        p,
        u,
        "POST",
        "/mixed?v=alice",
        None,
        r#"{"where":{"a":[{"$or":[{"v":"bob"}]}]}}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    // Percent-encoded query names are the same parameter.
    check(
        p,
        u,
        "GET",
        "/query/bind?%76=bob",
        None,
        "",
        Refuse(403, "tenant_mismatch"),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/bind?v=alice&%76=alice",
        None,
        "",
        Refuse(400, "bad_request"),
    )
    .await;
    // Query and body naming different users.
    check(
        p,
        u,
        "POST",
        "/mixed?v=alice",
        None,
        r#"{"v":"bob"}"#,
        Refuse(403, "tenant_mismatch"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/mixed?v=bob",
        None,
        r#"{"v":"alice"}"#,
        Refuse(403, "tenant_mismatch"),
    )
    .await;
    // Not JSON, trailing garbage, too deep.
    check(
        p,
        u,
        "POST",
        "/json/set",
        None,
        r#"{"v":"x"} {"v":"y"}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/json/set",
        None,
        &format!("{}{}", "[".repeat(200), "]".repeat(200)),
        Refuse(400, "bad_request"),
    )
    .await;
    assert!(
        upstream.requests().len() == 1,
        "only the /raw request (no JSON rules) was forwarded"
    );
}

#[tokio::test]
async fn other_parsers_readings_of_a_rewritten_name_are_refused() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let (p, u) = (&proxy, &upstream);
    // Query names another parser reads as the rewritten `v`: qs-style brackets, another
    // letter case, a control character, PHP's `.`-for-`_` (here `v` has none, so a
    // second route below), and a `;` separator.
    for target in [
        "/query/bind?v[]=bob",
        "/query/bind?v=alice&v[]=bob",
        "/query/bind?v%5B0%5D=bob",
        "/query/prefix?V=s1",
        "/query/prefix?v%00=s1",
        "/query/prefix?%20v=s1",
        "/query/bind?v=alice;v=bob",
        "/query/prefix!?x=1;v=s1",
    ] {
        check(p, u, "GET", target, None, "", Refuse(400, "bad_request")).await;
    }
    // JSON keys equal to a rewritten one under Unicode case folding (Go's
    // encoding/json matches them, and the last one wins), beside it or alone.
    for body in [
        r#"{"v":"alice","V":"bob"}"#,
        r#"{"V":"bob"}"#,
        r#"{"V":"bob"}"#,
    ] {
        check(
            p,
            u,
            "POST",
            "/json/bind",
            None,
            body,
            Refuse(400, "bad_request"),
        )
        .await;
        check(
            p,
            u,
            "POST",
            "/json/prefix",
            None,
            body,
            Refuse(400, "bad_request"),
        )
        .await;
    }
    // `prefix!` given an empty list: "no ids" means everyone to many backends.
    check(
        p,
        u,
        "POST",
        "/json/prefix!",
        None,
        r#"{"v":[]}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    // Keys that only look alike to a human pass: nothing folds them together.
    check(
        p,
        u,
        "POST",
        "/json/prefix",
        None,
        r#"{"v":"s1","w":"x","vv":"y"}"#,
        Forward(
            "/json/prefix",
            None,
            r#"{"v":"u_alice__s1","w":"x","vv":"y"}"#,
        ),
    )
    .await;
    check(
        p,
        u,
        "GET",
        "/query/prefix?v=s1&vv=x&w=V",
        None,
        "",
        Forward("/query/prefix?v=u_alice__s1&vv=x&w=V", None, ""),
    )
    .await;
    assert_eq!(
        upstream.requests().len(),
        2,
        "only the two look-alike-free requests went upstream"
    );
}

#[tokio::test]
async fn a_json_key_folded_like_the_kelvin_sign_is_refused() {
    const KELVIN: &str = r#"
[upstream]
url = "${UPSTREAM}"
[[route]]
match = "POST /k"
scope = "tenant"
rewrite.json = { "/kind" = "prefix", "/user.id" = "bind" }
rewrite.query = { "user_id" = "bind" }
"#;
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(KELVIN, &upstream).await;
    let (p, u) = (&proxy, &upstream);
    // U+212A KELVIN SIGN folds to "k"; U+017F LONG S folds to "s".
    check(
        p,
        u,
        "POST",
        "/k",
        None,
        "{\"\u{212a}ind\":\"x\",\"user.id\":\"alice\"}",
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/k",
        None,
        r#"{"kind":"x","u\u017fer.id":"bob"}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    // PHP reads `user.id` and `user id` as `user_id`.
    check(
        p,
        u,
        "POST",
        "/k?user.id=bob",
        None,
        r#"{"user.id":"alice"}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    check(
        p,
        u,
        "POST",
        "/k?user+id=bob",
        None,
        r#"{"user.id":"alice"}"#,
        Refuse(400, "bad_request"),
    )
    .await;
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn media_type_coding_and_size_are_checked_before_reading() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let send = |headers: Vec<&'static str>, body: Vec<u8>| {
        let proxy = &proxy;
        async move {
            let mut h = vec!["X-Tenant-Id: alice"];
            h.extend(headers);
            proxy.send("POST", "/json/set", &h, &body).await
        }
    };
    send(vec!["Content-Type: text/plain"], br#"{"v":"x"}"#.to_vec())
        .await
        .assert_refusal(415, "unsupported_media_type");
    send(vec![], br#"{"v":"x"}"#.to_vec())
        .await
        .assert_refusal(415, "unsupported_media_type");
    let gzip = vec![
        0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03, 0xab, 0xae, 0x05, 0, 0x43, 0xbf, 0xa6, 0xa3,
        0x02, 0, 0, 0,
    ];
    send(
        vec!["Content-Type: application/json", "Content-Encoding: gzip"],
        gzip,
    )
    .await
    .assert_refusal(415, "unsupported_media_type");
    // A coding in a second field, or beside identity in one, is a coding all the same.
    for codings in [
        vec!["Content-Encoding: identity", "Content-Encoding: gzip"],
        vec!["Content-Encoding: identity, gzip"],
        vec!["Content-Encoding: IDENTITY", "Content-Encoding: br"],
    ] {
        let mut headers = vec!["Content-Type: application/json"];
        headers.extend(codings);
        send(headers, br#"{"v":"x"}"#.to_vec())
            .await
            .assert_refusal(415, "unsupported_media_type");
    }
    let plain = send(
        vec![
            "Content-Type: application/json",
            "Content-Encoding: identity",
        ],
        br#"{"v":"x"}"#.to_vec(),
    )
    .await;
    assert_eq!(plain.status, 200, "identity alone is no coding");
    assert_eq!(upstream.requests().len(), 1);
    let big = format!(r#"{{"v":"x","pad":"{}"}}"#, "a".repeat(2000));
    send(
        vec!["Content-Type: application/json"],
        big.clone().into_bytes(),
    )
    .await
    .assert_refusal(413, "body_too_large");
    // Without a Content-Length, the limit holds while streaming.
    let chunked = format!(
        "POST /json/set HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Tenant-Id: alice\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    proxy
        .raw(chunked.as_bytes())
        .await
        .assert_refusal(413, "body_too_large");
    // +json media types and parameters are JSON.
    let ok = send(
        vec!["Content-Type: application/merge-patch+json; charset=utf-8"],
        br#"{"v":"x"}"#.to_vec(),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(upstream.requests()[1].body, br#"{"v":"u_alice"}"#);
}

#[tokio::test]
async fn untouched_json_is_forwarded_byte_for_byte() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let body = "{\"z\" : 1,\n  \"v\":\"alice\",\"embedding\":[3.141592653589793238,1e-7,-0.0,1E+400],\"a\":{\"b\":2.50,\"s\":\"caf\\u00e9 \\/\"},\"messages\":[{\"sid\":\"s1\",\"n\":10.0}]}";
    let response = proxy
        .send(
            "POST",
            "/mixed?v=alice",
            &["X-Tenant-Id: alice", "Content-Type: application/json"],
            body.as_bytes(),
        )
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = upstream.only_request();
    let expected = body
        .replace("\"v\":\"alice\"", "\"v\":\"u_alice\"")
        .replace("\"sid\":\"s1\"", "\"sid\":\"u_alice__s1\"");
    assert_eq!(String::from_utf8(seen.body.clone()).unwrap(), expected);
    assert_eq!(seen.target, "/mixed?v=u_alice");
    assert_eq!(seen.header("x-ns"), Some("u_alice"));
    assert_eq!(seen.header("x-tenant"), Some("alice"));
    assert_eq!(seen.header("x-fixed"), Some("yes"));
}

#[tokio::test]
async fn tenant_templates_in_headers_need_visible_ascii() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let response: RawResponse = proxy
        .raw(b"POST /mixed HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Tenant-Id: \xc3\xa9l\xc3\xa8ve\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        .await;
    response.assert_refusal(400, "bad_request");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn unscoped_main_and_max_encoded() {
    let upstream = Upstream::ok().await;
    let config = CONFIG.replace("[limits]", "[tenant]\nunscoped = \"main\"\nmain_namespace = \"shared-main\"\nmax_encoded = 12\n\n[limits]");
    let proxy = Proxy::start(&config, &upstream).await;
    let response = proxy.send("GET", "/path/prefix/s1", &[], b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        upstream.only_request().target,
        "/path/prefix/shared-main__s1"
    );
    let response = proxy
        .send("GET", "/query/bind?v=shared-main", &[], b"")
        .await;
    assert_eq!(response.status, 200);
    let response = proxy.send("GET", "/query/bind?v=alice", &[], b"").await;
    response.assert_refusal(403, "tenant_mismatch");
    // "ABCD" encodes to 12 bytes (allowed); "ABCDE" to 15.
    assert_eq!(
        proxy
            .send("GET", "/path/prefix/s", &["X-Tenant-Id: ABCD"], b"")
            .await
            .status,
        200
    );
    proxy
        .send("GET", "/path/prefix/s", &["X-Tenant-Id: ABCDE"], b"")
        .await
        .assert_refusal(400, "invalid_tenant");
}
