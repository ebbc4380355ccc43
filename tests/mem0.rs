//! `config/presets/mem0.toml` against a recording upstream that replays the Mem0 OSS
//! REST server's request and response shapes (server/main.py of mem0ai/mem0 at
//! 8d5b786): the server is not published on a package registry, so this is the
//! contract as its source defines it. Two users; every memory route's upstream request
//! is checked as Mem0 would read it, every dangerous route and filter operator is
//! refused before the upstream, and list answers are scoped.

mod common;

use common::{Proxy, Reply, Seen, Upstream};
use serde_json::{json, Value};

const ALICE_MEMORY: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const BOB_MEMORY: &str = "bbbbbbbb-0000-4000-8000-000000000002";

fn query_param(seen: &Seen, name: &str) -> Option<String> {
    let query = seen.target.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then(|| v.to_owned())
    })
}

/// A memory as Mem0's get_all and search answer it.
fn memory(id: &str, user: &str, text: &str) -> Value {
    json!({
        "id": id, "memory": text, "hash": "5d41402abc4b2a76b9719d911017c592",
        "metadata": {"topic": "travel"}, "score": 0.83,
        "created_at": "2026-12-01T10:00:00+00:00", "updated_at": null,
        "user_id": user, "agent_id": format!("{user}__planner"), "run_id": null,
        "actor_id": null, "role": "user"
    })
}

/// Mem0's answers by route, for whichever user the (rewritten) request names. The
/// list answer also carries another user's memory, as a misconfigured backend would:
/// `keep` must drop it.
fn mem0(seen: &Seen) -> Reply {
    let path = seen.target.split('?').next().unwrap_or_default();
    let body: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
    let own = |user: &str| match user {
        "u_bob" => BOB_MEMORY,
        _ => ALICE_MEMORY,
    };
    let answer = match (seen.method.as_str(), path) {
        ("POST", "/memories") => {
            let user = body["user_id"].as_str().unwrap_or_default();
            json!({"results": [{"id": own(user), "memory": "Likes Lisbon", "event": "ADD"}]})
        }
        ("GET", "/memories") => {
            let user = query_param(seen, "user_id").unwrap_or_default();
            let other = if user == "u_bob" { "u_alice" } else { "u_bob" };
            json!({"results": [memory(own(&user), &user, "Likes Lisbon; u_bob__x is a string"),
                               memory(own(other), other, "someone else's")]})
        }
        ("POST", "/search") => {
            let user = body["filters"]["user_id"].as_str().unwrap_or_default();
            let other = if user == "u_bob" { "u_alice" } else { "u_bob" };
            json!({"results": [memory(own(other), other, "someone else's"),
                               memory(own(user), user, "Likes Lisbon")]})
        }
        ("GET", p) if p.ends_with("/history") => json!([{
            "id": "h-1", "memory_id": &p[10..46], "old_memory": null,
            "new_memory": "Likes Lisbon", "event": "ADD", "created_at": "2026-12-01T10:00:00+00:00",
            "updated_at": null, "is_deleted": false, "actor_id": null, "role": "user"
        }]),
        ("GET", p) => {
            let user = if p.contains("bbbbbbbb") {
                "u_bob"
            } else {
                "u_alice"
            };
            memory(&p[10..], user, "Likes Lisbon")
        }
        ("PUT", _) => json!({"message": "Memory updated successfully!"}),
        ("DELETE", "/memories") => json!({"message": "All relevant memories deleted"}),
        ("DELETE", _) => json!({"message": "Memory deleted successfully"}),
        _ => json!({"detail": "Not Found"}),
    };
    Reply::json(200, answer.to_string())
}

async fn start() -> (Upstream, Proxy) {
    let upstream = Upstream::start(mem0).await;
    let preset = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/presets/mem0.toml"),
    )
    .expect("the preset");
    let config = preset
        .replace("http://127.0.0.1:8888", &upstream.url())
        .replace("${MEM0_API_KEY}", "admin-key-of-mem0");
    let proxy = Proxy::start_raw(&config).await;
    (upstream, proxy)
}

async fn call(
    proxy: &Proxy,
    method: &str,
    target: &str,
    user: &str,
    body: &str,
) -> common::RawResponse {
    let tenant = format!("X-Tenant-Id: {user}");
    let mut headers = vec![
        "Content-Type: application/json",
        "X-API-Key: the-client-s-own",
        "Authorization: Bearer the-client-s-own-jwt",
    ];
    if !user.is_empty() {
        headers.push(&tenant);
    }
    proxy.send(method, target, &headers, body.as_bytes()).await
}

fn last(upstream: &Upstream) -> Seen {
    upstream
        .requests()
        .pop()
        .expect("a request reached the upstream")
}

fn sent_json(seen: &Seen) -> Value {
    serde_json::from_slice(&seen.body).expect("a JSON body upstream")
}

#[tokio::test]
async fn every_memory_route_reaches_mem0_as_the_callers_own() {
    let (upstream, proxy) = start().await;

    // add: user_id injected or bound, agent_id and run_id prefixed; the id is learned.
    let added = call(&proxy, "POST", "/memories", "alice",
        r#"{"messages":[{"role":"user","content":"I love Lisbon"}],"agent_id":"planner","run_id":"r1"}"#).await;
    assert_eq!(added.status, 200, "{}", added.text());
    let seen = last(&upstream);
    assert_eq!(
        seen.header("x-api-key"),
        Some("admin-key-of-mem0"),
        "the client's key never reaches Mem0"
    );
    assert_eq!(
        seen.header("authorization"),
        None,
        "nor its Bearer token, which Mem0 would check first"
    );
    let body = sent_json(&seen);
    assert_eq!(
        (&body["user_id"], &body["agent_id"], &body["run_id"]),
        (
            &json!("u_alice"),
            &json!("u_alice__planner"),
            &json!("u_alice__r1")
        )
    );
    assert_eq!(added.json()["results"][0]["id"], ALICE_MEMORY);
    let added = call(
        &proxy,
        "POST",
        "/memories",
        "bob",
        r#"{"messages":[{"role":"user","content":"I love Porto"}],"user_id":"bob"}"#,
    )
    .await;
    assert_eq!(added.status, 200);
    assert_eq!(sent_json(&last(&upstream))["user_id"], "u_bob");

    // list: the query bound (injected when absent), the answer unwrapped and scoped.
    let listed = call(
        &proxy,
        "GET",
        "/memories?agent_id=planner&top_k=5",
        "alice",
        "",
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let seen = last(&upstream);
    assert_eq!(query_param(&seen, "user_id").as_deref(), Some("u_alice"));
    assert_eq!(
        query_param(&seen, "agent_id").as_deref(),
        Some("u_alice__planner")
    );
    assert_eq!(query_param(&seen, "top_k").as_deref(), Some("5"));
    let results = listed.json()["results"].as_array().cloned().unwrap();
    assert_eq!(
        results.len(),
        1,
        "bob's memory in the answer is dropped: {results:?}"
    );
    assert_eq!(
        (&results[0]["user_id"], &results[0]["agent_id"]),
        (&json!("alice"), &json!("planner"))
    );
    assert_eq!(
        results[0]["memory"], "Likes Lisbon; u_bob__x is a string",
        "memory text is returned as stored"
    );

    // search: both user_ids bound (the top-level one wins in Mem0), agent_id prefixed.
    let found = call(
        &proxy,
        "POST",
        "/search",
        "alice",
        r#"{"query":"travel","filters":{"agent_id":"planner","topic":"*"},"top_k":3}"#,
    )
    .await;
    assert_eq!(found.status, 200, "{}", found.text());
    let body = sent_json(&last(&upstream));
    assert_eq!(body["user_id"], "u_alice");
    assert_eq!(
        body["filters"],
        json!({"agent_id":"u_alice__planner","topic":"*","user_id":"u_alice"})
    );
    let results = found.json()["results"].as_array().cloned().unwrap();
    assert_eq!(
        results.len(),
        1,
        "bob's memory in the answer is dropped: {results:?}"
    );
    assert_eq!(results[0]["user_id"], "alice");

    // one memory: alice owns hers, bob gets 404 for it on every route, Mem0 sees none.
    let one = format!("/memories/{ALICE_MEMORY}");
    let history = format!("{one}/history");
    let before = upstream.requests().len();
    for (method, target, body) in [
        ("GET", &one, ""),
        ("PUT", &one, r#"{"text":"Likes Porto"}"#),
        ("GET", &history, ""),
        ("DELETE", &one, ""),
    ] {
        call(&proxy, method, target, "bob", body)
            .await
            .assert_refusal(404, "not_found");
    }
    call(
        &proxy,
        "GET",
        &format!("/memories/{BOB_MEMORY}"),
        "alice",
        "",
    )
    .await
    .assert_refusal(404, "not_found");
    assert_eq!(
        upstream.requests().len(),
        before,
        "no refused call reached Mem0"
    );
    let got = call(&proxy, "GET", &one, "alice", "").await;
    assert_eq!((got.status, &got.json()["user_id"]), (200, &json!("alice")));
    assert_eq!(
        call(&proxy, "PUT", &one, "alice", r#"{"text":"Likes Porto"}"#)
            .await
            .status,
        200
    );
    let past = call(&proxy, "GET", &history, "alice", "").await;
    assert_eq!(
        (past.status, &past.json()[0]["memory_id"]),
        (200, &json!(ALICE_MEMORY))
    );
    assert_eq!(call(&proxy, "DELETE", &one, "alice", "").await.status, 200);
    call(&proxy, "GET", &one, "alice", "")
        .await
        .assert_refusal(404, "not_found");

    // delete all: bound like the list, never "everyone".
    assert_eq!(
        call(&proxy, "DELETE", "/memories", "alice", "")
            .await
            .status,
        200
    );
    assert_eq!(
        query_param(&last(&upstream), "user_id").as_deref(),
        Some("u_alice")
    );
}

#[tokio::test]
async fn another_users_ids_wildcards_operators_and_dangerous_routes_never_reach_mem0() {
    let (upstream, proxy) = start().await;
    let mismatched = [
        ("POST", "/memories", r#"{"messages":[],"user_id":"bob"}"#),
        ("GET", "/memories?user_id=bob", ""),
        ("DELETE", "/memories?user_id=u_bob", ""),
        ("POST", "/search", r#"{"query":"q","user_id":"bob"}"#),
        (
            "POST",
            "/search",
            r#"{"query":"q","filters":{"user_id":"bob"}}"#,
        ),
        (
            "POST",
            "/search",
            r#"{"query":"q","filters":{"user_id":"*"}}"#,
        ),
    ];
    for (method, target, body) in mismatched {
        call(&proxy, method, target, "alice", body)
            .await
            .assert_refusal(403, "tenant_mismatch");
    }
    let malformed = [
        // operator objects and lists at an id
        r#"{"query":"q","filters":{"user_id":{"in":["alice","bob"]}}}"#,
        r#"{"query":"q","filters":{"agent_id":{"ne":"x"}}}"#,
        r#"{"query":"q","user_id":null}"#,
        // logic operators, at the top of filters and deeper
        r#"{"query":"q","filters":{"OR":[{"user_id":"bob"}]}}"#,
        r#"{"query":"q","filters":{"NOT":[{"topic":"x"}]}}"#,
        r#"{"query":"q","filters":{"AND":[{"topic":"x"}]}}"#,
        r#"{"query":"q","filters":{"$or":[{"user_id":"bob"}]}}"#,
        r#"{"query":"q","filters":{"topic":{"$not":{"eq":"x"}}}}"#,
        r#"{"query":"q","filters":{"a":{"b":{"$and":[]}}}}"#,
        // look-alikes a case-insensitive or duplicate-tolerant parser might read
        r#"{"query":"q","filters":{"User_Id":"bob"}}"#,
        r#"{"query":"q","user_id":"alice","user_id":"bob"}"#,
    ];
    for body in malformed {
        let refused = call(&proxy, "POST", "/search", "alice", body).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text());
        refused.assert_refusal(400, "bad_request");
    }
    for target in [
        "/memories?user_id[]=bob",
        "/memories?User_Id=bob",
        "/memories?user_id=alice&user_id=bob",
    ] {
        call(&proxy, "GET", target, "alice", "")
            .await
            .assert_refusal(400, "bad_request");
    }
    let denied = [
        ("POST", "/reset"),
        ("GET", "/configure"),
        ("POST", "/configure"),
        ("GET", "/configure/providers"),
        ("POST", "/generate-instructions"),
        ("POST", "/auth/login"),
        ("GET", "/api-keys"),
        ("POST", "/api-keys"),
        ("GET", "/entities"),
        ("DELETE", "/entities/user/u_bob"),
        ("GET", "/requests"),
        ("GET", "/"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/memories/x/other"),
    ];
    for (method, target) in denied {
        call(&proxy, method, target, "alice", "{}")
            .await
            .assert_refusal(403, "route_not_allowed");
    }
    call(&proxy, "GET", "/memories", "", "")
        .await
        .assert_refusal(400, "tenant_required");
    call(&proxy, "POST", "/search", "", r#"{"query":"q"}"#)
        .await
        .assert_refusal(400, "tenant_required");
    assert!(
        upstream.requests().is_empty(),
        "nothing reached Mem0: {:?}",
        upstream.requests()
    );

    // A "*" agent_id is prefixed into a literal id, which names nobody else's.
    let found = call(
        &proxy,
        "POST",
        "/search",
        "alice",
        r#"{"query":"q","filters":{"agent_id":"*"}}"#,
    )
    .await;
    assert_eq!(found.status, 200);
    assert_eq!(
        sent_json(&last(&upstream))["filters"]["agent_id"],
        "u_alice__*"
    );
}
