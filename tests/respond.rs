//! Stage 6 end to end (SPEC 4.2): what a tenant gets back. `keep` filters lists, the
//! leak guard withholds any answer carrying another tenant's id (in values, keys,
//! `Location`, compressed or non-JSON answers), `unwrap` hands the caller its own ids
//! back, `passthrough` streams untouched, and every tenant answer names its namespace.

mod common;

use std::io::Write;

use common::{Proxy, RawResponse, Reply, Upstream};
use serde_json::json;

const CONFIG: &str = r#"
[upstream]
url = "${UPSTREAM}"

[tenant]
namespace = "u_{tenant}"
separator = "__"

[limits]
max_response_body = "4KiB"

[[route]]
match = "GET /sessions"
scope = "tenant"
response.keep = { items = "/sessions", owner = "/id" }

[[route]]
match = "GET /tags"
scope = "tenant"
response.unprepend = ["/items/*/tags"]

[[route]]
match = "GET /wrapped/{*rest}"
scope = "tenant"
response.unwrap = false

[[route]]
match = "GET /stream"
scope = "tenant"
response.passthrough = true

[[route]]
match = "GET /collections/{*rest}"
scope = "tenant"
response.ids_at = ["/tenant", "/*/tenant"]

[[route]]
match = "GET /{*rest}"
scope = "tenant"
"#;

async fn as_alice(body: Vec<u8>, headers: Vec<(&'static str, &'static str)>) -> RawResponse {
    as_alice_at("/answer", body, headers).await
}

/// One request from alice to a fresh upstream that answers 200 with these headers and
/// body bytes.
async fn as_alice_at(
    path: &str,
    body: Vec<u8>,
    headers: Vec<(&'static str, &'static str)>,
) -> RawResponse {
    let upstream = Upstream::start(move |_| Reply::Raw(200, headers.clone(), body.clone())).await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let response = proxy.send("GET", path, &["X-Tenant-Id: alice"], b"").await;
    assert_eq!(upstream.requests().len(), 1, "the upstream was asked once");
    response
}

async fn json_as_alice(body: serde_json::Value) -> RawResponse {
    as_alice(
        body.to_string().into_bytes(),
        vec![("content-type", "application/json")],
    )
    .await
}

#[tokio::test]
async fn keep_drops_other_tenants_items_and_items_in_no_namespace() {
    let answer = json!({"sessions": [
        {"id": "u_alice__s1", "n": 1},
        {"id": "u_bob__s1", "n": 2},
        {"id": "s1", "n": 3},
        {"n": 4},
        {"id": "u_alice", "n": 5},
        {"id": "u_alicex__s1", "n": 6},
        {"id": "u_alice__s2", "n": 7}
    ], "next": null});
    let response = as_alice_at(
        "/sessions",
        answer.to_string().into_bytes(),
        vec![("content-type", "application/json")],
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"sessions": [
            {"id": "s1", "n": 1},
            {"id": "alice", "n": 5},
            {"id": "s2", "n": 7}
        ], "next": null})
    );
    assert_eq!(response.header("x-tenant-namespace"), Some("u_alice"));
}

#[tokio::test]
async fn guard_withholds_another_tenants_id_in_a_value() {
    let response =
        json_as_alice(json!({"results": [{"id": "u_alice__m1"}, {"id": "u_bob__m2"}]})).await;
    response.assert_refusal(502, "isolation_violation");
    assert!(!String::from_utf8_lossy(&response.body).contains("u_bob"));
}

#[tokio::test]
async fn guard_withholds_another_tenants_id_in_a_key() {
    let response = json_as_alice(json!({"by_session": {"u_bob__s1": 3}})).await;
    response.assert_refusal(502, "isolation_violation");
}

#[tokio::test]
async fn guard_sees_ids_behind_escapes_and_at_depth() {
    let escaped = br#"{"a":[[[{"b":"\u0075_bob__s1"}]]]}"#.to_vec();
    let response = as_alice(escaped, vec![("content-type", "application/json")]).await;
    response.assert_refusal(502, "isolation_violation");
}

#[tokio::test]
async fn guard_withholds_another_tenants_id_in_location() {
    let response = as_alice(
        br#"{"ok":true}"#.to_vec(),
        vec![
            ("content-type", "application/json"),
            ("location", "/v1/sessions/u_bob__s1/memories/7"),
        ],
    )
    .await;
    response.assert_refusal(502, "isolation_violation");
    assert_eq!(response.header("location"), None);

    let encoded = as_alice(
        br#"{"ok":true}"#.to_vec(),
        vec![
            ("content-type", "application/json"),
            ("link", "</v1/sessions/u%5Fbob__s1>; rel=\"next\""),
        ],
    )
    .await;
    encoded.assert_refusal(502, "isolation_violation");

    let content_location = as_alice(
        br#"{"ok":true}"#.to_vec(),
        vec![
            ("content-type", "application/json"),
            ("content-location", "/v1/sessions/u_bob__s1"),
        ],
    )
    .await;
    content_location.assert_refusal(502, "isolation_violation");
}

#[tokio::test]
async fn guard_withholds_another_tenants_id_in_any_header() {
    for (name, value) in [
        ("x-thread-id", "u_bob__t1"),
        ("set-cookie", "session=u_bob__s1; Path=/; HttpOnly"),
        ("x-memory-ids", "u_alice__m1, u%5Fbob__m2"),
    ] {
        let response = as_alice(
            br#"{"ok":true}"#.to_vec(),
            vec![("content-type", "application/json"), (name, value)],
        )
        .await;
        response.assert_refusal(502, "isolation_violation");
        assert_eq!(response.header(name), None, "{name} was withheld");
    }
}

#[tokio::test]
async fn unwrap_covers_any_header() {
    let response = as_alice(
        br#"{"ok":true}"#.to_vec(),
        vec![
            ("content-type", "application/json"),
            ("x-thread-id", "u_alice__t1"),
            ("set-cookie", "session=u_alice__s1; Path=/"),
        ],
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-thread-id"), Some("t1"));
    assert_eq!(response.header("set-cookie"), Some("session=s1; Path=/"));
}

#[tokio::test]
async fn a_gzip_answer_is_withheld_because_it_cannot_be_inspected() {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(br#"{"id":"u_bob__s1"}"#).unwrap();
    let response = as_alice(
        gzip.finish().unwrap(),
        vec![
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
    )
    .await;
    response.assert_refusal(502, "isolation_violation");
}

#[tokio::test]
async fn a_text_answer_is_withheld_because_it_cannot_be_inspected() {
    let response = as_alice(
        b"memory u_bob__s1: likes tea".to_vec(),
        vec![("content-type", "text/plain")],
    )
    .await;
    response.assert_refusal(502, "isolation_violation");
    let untyped = as_alice(br#"{"id":"u_bob__s1"}"#.to_vec(), vec![]).await;
    untyped.assert_refusal(502, "isolation_violation");
}

#[tokio::test]
async fn strings_that_are_not_namespace_shaped_pass() {
    let upstream = Upstream::start(|seen| {
        let body = seen.header("x-answer").unwrap_or_default().to_owned();
        Reply::Raw(
            200,
            vec![("content-type", "application/json")],
            body.into_bytes(),
        )
    })
    .await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let harmless = [
        "U_bob__x",
        "u-bob",
        "xu_bob__x",
        "see u_bob__x",
        "u_",
        "u__",
        "u_bob_x",
        "u_Bob__x",
    ];
    for text in harmless {
        for answer in [json!({ "v": text }), json!({ text: 1 })] {
            let header = format!("X-Answer: {answer}");
            let response = proxy
                .send("GET", "/x", &["X-Tenant-Id: alice", &header], b"")
                .await;
            assert_eq!(response.status, 200, "{answer} was withheld: {response:?}");
            assert_eq!(response.json(), answer);
        }
    }
    let tripping = ["u_bob__x", "u_bob__x is bob's", "u_bob__", "u_-2d__x"];
    for text in tripping {
        let header = format!("X-Answer: {}", json!({ "v": text }));
        let response = proxy
            .send("GET", "/x", &["X-Tenant-Id: alice", &header], b"")
            .await;
        assert_eq!(response.status, 502, "{text} was delivered: {response:?}");
    }
}

#[tokio::test]
async fn a_bare_root_trips_only_once_its_tenant_is_known() {
    let upstream = Upstream::start(|_| {
        Reply::Raw(
            200,
            vec![("content-type", "application/json")],
            br#"{"owner":"u_zed"}"#.to_vec(),
        )
    })
    .await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let before = proxy.send("GET", "/x", &["X-Tenant-Id: alice"], b"").await;
    assert_eq!(before.status, 200, "zed is nobody yet: {before:?}");
    assert_eq!(before.json(), json!({"owner": "u_zed"}));
    let zed = proxy.send("GET", "/x", &["X-Tenant-Id: zed"], b"").await;
    assert_eq!(
        zed.json(),
        json!({"owner": "zed"}),
        "zed's own root unwraps"
    );
    let after = proxy.send("GET", "/x", &["X-Tenant-Id: alice"], b"").await;
    after.assert_refusal(502, "isolation_violation");
}

#[tokio::test]
async fn violations_are_counted() {
    let upstream = Upstream::start(|_| Reply::With(200, r#"{"id":"u_bob__1"}"#, vec![])).await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    for _ in 0..3 {
        let response = proxy.send("GET", "/x", &["X-Tenant-Id: alice"], b"").await;
        response.assert_refusal(502, "isolation_violation");
    }
    let app = proxy.running.as_ref().unwrap().app.clone();
    assert_eq!(app.metrics.isolation_violations.get(), 3);
    let metrics = proxy.admin_get("/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("tenantgate_isolation_violations_total 3"),
        "{text}"
    );
}

#[tokio::test]
async fn unwrap_restores_ids_in_values_keys_and_headers() {
    let response = as_alice(
        json!({"id": "u_alice__m1", "user_id": "u_alice", "by": {"u_alice__s1": 1},
               "text": "u_alice__m1 stays inside text", "n": 1.50})
        .to_string()
        .into_bytes(),
        vec![
            ("content-type", "application/json"),
            (
                "location",
                "/v1/sessions/u_alice__my%20s1/memories/u_alice__m1?u=u_alice",
            ),
        ],
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"id": "m1", "user_id": "alice", "by": {"s1": 1},
               "text": "m1 stays inside text", "n": 1.50})
    );
    assert_eq!(
        response.header("location"),
        Some("/v1/sessions/my%20s1/memories/m1?u=alice")
    );
}

#[tokio::test]
async fn unwrap_false_delivers_namespaced_ids() {
    let response = as_alice_at(
        "/wrapped/x",
        br#"{"id":"u_alice__m1"}"#.to_vec(),
        vec![("content-type", "application/json")],
    )
    .await;
    assert_eq!(response.body, br#"{"id":"u_alice__m1"}"#);
}

#[tokio::test]
async fn unprepend_drops_the_leading_root() {
    let response = as_alice_at(
        "/tags",
        br#"{"items":[{"tags":["u_alice","red"]},{"tags":["blue"]},{"tags":[]}]}"#.to_vec(),
        vec![("content-type", "application/json")],
    )
    .await;
    assert_eq!(
        response.json(),
        json!({"items":[{"tags":["red"]},{"tags":["blue"]},{"tags":[]}]})
    );
}

#[tokio::test]
async fn untouched_answers_keep_their_bytes() {
    let exact = br#"{ "embedding" : [3.141592653589793238, 1e400],"b":"\u00e9" }"#;
    let response = as_alice(exact.to_vec(), vec![("content-type", "application/json")]).await;
    assert_eq!(response.body, exact);
}

#[tokio::test]
async fn passthrough_streams_an_sse_answer_untouched() {
    let upstream =
        Upstream::start(|_| Reply::Sse(b"data: {\"id\":\"u_alice__m1\"}\n\n", b"data: done\n\n"))
            .await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let request = common::request_bytes("GET", "/stream", &["X-Tenant-Id: alice"], b"");
    let response = common::read_streamed(proxy.addr, &request, "u_alice__m1", &upstream).await;
    assert_eq!(response.status, 200);
    assert!(response.complete);
    assert_eq!(
        response.body,
        b"data: {\"id\":\"u_alice__m1\"}\n\ndata: done\n\n"
    );
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert_eq!(response.header("x-tenant-namespace"), Some("u_alice"));
}

#[tokio::test]
async fn tenant_routes_ask_for_identity_encoding() {
    let upstream = Upstream::ok().await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    proxy
        .send(
            "GET",
            "/x",
            &["X-Tenant-Id: alice", "Accept-Encoding: gzip, br"],
            b"",
        )
        .await;
    assert_eq!(
        upstream.only_request().all("accept-encoding"),
        vec!["identity"]
    );
}

#[tokio::test]
async fn an_answer_over_max_response_body_is_refused() {
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
    let response = as_alice(big.into_bytes(), vec![("content-type", "application/json")]).await;
    response.assert_refusal(502, "response_too_large");
}

#[tokio::test]
async fn refusals_on_tenant_routes_name_the_namespace_too() {
    let upstream = Upstream::start(|_| Reply::With(200, r#"{"id":"u_bob__1"}"#, vec![])).await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let response = proxy.send("GET", "/x", &["X-Tenant-Id: alice"], b"").await;
    response.assert_refusal(502, "isolation_violation");
    assert_eq!(response.header("x-tenant-namespace"), Some("u_alice"));
}

#[tokio::test]
async fn an_upstream_error_page_is_the_backend_failing_not_a_leak() {
    for (status, content_type) in [(503, "text/html"), (500, "text/plain"), (502, "")] {
        let headers = if content_type.is_empty() {
            vec![]
        } else {
            vec![("content-type", content_type)]
        };
        let upstream = Upstream::start(move |_| {
            Reply::Raw(
                status,
                headers.clone(),
                b"<h1>u_bob__s1 is down</h1>".to_vec(),
            )
        })
        .await;
        let proxy = Proxy::start(CONFIG, &upstream).await;
        let response = proxy
            .send("GET", "/answer", &["X-Tenant-Id: alice"], b"")
            .await;
        response.assert_refusal(502, "upstream_unavailable");
        assert!(
            !String::from_utf8_lossy(&response.body).contains("down"),
            "the page is withheld"
        );
    }
    // A JSON error from the backend is inspected and delivered like any answer.
    let upstream = Upstream::start(|_| {
        Reply::Raw(
            500,
            vec![("content-type", "application/json")],
            br#"{"error":"u_alice__s1 failed"}"#.to_vec(),
        )
    })
    .await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let response = proxy
        .send("GET", "/answer", &["X-Tenant-Id: alice"], b"")
        .await;
    assert_eq!(response.status, 500);
    assert_eq!(response.body, br#"{"error":"s1 failed"}"#);
}

/// With `ids_at`, the guard and unwrap look only where the answer holds ids: the
/// user's own text elsewhere (a document that reads `u_bob`) is returned as stored.
#[tokio::test]
async fn ids_at_confines_the_guard_and_unwrap_to_the_id_fields() {
    let answer = json!({
        "tenant": "u_alice",
        "name": "u_bob",
        "metadata": {"ref": "u_alice__doc7", "u_bob__key": "u_zed__x"},
    });
    let body = serde_json::to_vec(&answer).unwrap();
    let got = as_alice_at(
        "/collections/one",
        body,
        vec![("content-type", "application/json")],
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.json());
    assert_eq!(
        got.json(),
        json!({
            "tenant": "alice",
            "name": "u_bob",
            "metadata": {"ref": "u_alice__doc7", "u_bob__key": "u_zed__x"},
        })
    );
    // At an id field the guard still withholds another tenant's id.
    let list = json!([{"tenant": "u_alice"}, {"tenant": "u_bob__x"}]);
    let body = serde_json::to_vec(&list).unwrap();
    let got = as_alice_at(
        "/collections",
        body,
        vec![("content-type", "application/json")],
    )
    .await;
    got.assert_refusal(502, "isolation_violation");
}
