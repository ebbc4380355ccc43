//! Opaque-id ownership (SPEC 4.3) and first-contact provisioning (SPEC 4.4) against a
//! real upstream that mints ids: ids are learned from answers, required wherever a
//! route names them, never learned twice, forgotten, imported, erased by offboarding,
//! and kept across a restart of the real binary.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{Binary, Proxy, RawResponse, Reply, Seen, Upstream};

const TOKEN: &str = "Authorization: Bearer admin-token";

const CONFIG: &str = r#"
[upstream]
url = "${UPSTREAM}"
[admin]
token = "admin-token"

[[provision]]
request = "POST /tenants"
json = '{"name": "{ns}"}'
ok = [200, 409]

[[offboard]]
request = "DELETE /tenants/{ns}"
ok = [200, 404]

[[route]]
match = "POST /collections"
scope = "tenant"
response.learn = { "/id" = "collection" }

[[route]]
match = "GET /collections"
scope = "tenant"
response.keep = { items = "", owned = "collection", at = "/id" }

[[route]]
match = "POST /collections/{id}/get"
scope = "tenant"
rewrite.path = { id = "owned:collection" }

[[route]]
match = "DELETE /collections/{id}"
scope = "tenant"
rewrite.path = { id = "owned:collection" }
response.forget = true

[[route]]
match = "POST /query"
scope = "tenant"
rewrite.json = { "/collection_id" = "owned:collection" }
rewrite.query = { c = "owned:collection" }
rewrite.header = { X-Collection = "owned:collection" }
"#;

/// A backend that mints `c-NAME` for a collection named NAME, lists three ids, and
/// answers everything else with `{"ok":true}`.
fn backend(seen: &Seen) -> Reply {
    let path = seen.target.split('?').next().unwrap_or_default();
    match (seen.method.as_str(), path) {
        ("POST", "/collections") => {
            let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap_or_default();
            let name = body["name"].as_str().unwrap_or("x");
            Reply::json(201, format!(r#"{{"id":"c-{name}","name":"{name}"}}"#))
        }
        ("GET", "/collections") => Reply::json(
            200,
            r#"[{"id":"c-a1","n":1},{"id":"c-b1","n":2},{"id":"c-nobody","n":3}]"#.to_owned(),
        ),
        _ => Reply::json(200, r#"{"ok":true}"#.to_owned()),
    }
}

async fn send(proxy: &Proxy, method: &str, path: &str, tenant: &str, body: &str) -> RawResponse {
    let header = format!("X-Tenant-Id: {tenant}");
    let headers = [header.as_str(), "Content-Type: application/json"];
    proxy.send(method, path, &headers, body.as_bytes()).await
}

async fn create(proxy: &Proxy, tenant: &str, name: &str) -> RawResponse {
    send(
        proxy,
        "POST",
        "/collections",
        tenant,
        &format!(r#"{{"name":"{name}"}}"#),
    )
    .await
}

fn forwarded(upstream: &Upstream, target: &str) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|s| s.target == target)
        .count()
}

#[tokio::test]
async fn learned_ids_are_required_everywhere_and_others_get_an_indistinguishable_404() {
    let upstream = Upstream::start(backend).await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    assert_eq!(create(&proxy, "alice", "a1").await.status, 201);
    assert_eq!(create(&proxy, "bob", "b1").await.status, 201);

    let get = |tenant: &'static str, id: &'static str| {
        let path = format!("/collections/{id}/get");
        let proxy = &proxy;
        async move { send(proxy, "POST", &path, tenant, "{}").await }
    };
    assert_eq!(get("alice", "c-a1").await.status, 200);
    let bobs = get("bob", "c-a1").await;
    let nobodys = get("bob", "c-zzz").await;
    bobs.assert_refusal(404, "not_found");
    assert_eq!(bobs.json(), nobodys.json(), "existence is not revealed");
    assert_eq!(forwarded(&upstream, "/collections/c-a1/get"), 1);

    // The same check at a JSON field, a query parameter and a header.
    let query = |tenant, body: &str, extra: &[&str]| {
        let header = format!("X-Tenant-Id: {tenant}");
        let mut headers = vec![header, "Content-Type: application/json".to_owned()];
        headers.extend(extra.iter().map(|h| h.to_string()));
        let body = body.to_owned();
        let proxy = &proxy;
        async move {
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            proxy
                .send("POST", "/query?c=c-b1", &headers, body.as_bytes())
                .await
        }
    };
    assert_eq!(
        query("bob", r#"{"collection_id":"c-b1"}"#, &[])
            .await
            .status,
        200
    );
    query("bob", r#"{"collection_id":"c-a1"}"#, &[])
        .await
        .assert_refusal(404, "not_found");
    query("bob", r#"{"collection_id":["c-b1","c-a1"]}"#, &[])
        .await
        .assert_refusal(404, "not_found");
    query("bob", r#"{"collection_id":null}"#, &["X-Collection: c-a1"])
        .await
        .assert_refusal(404, "not_found");
    // null is the backend's "not given": forwarded as is.
    assert_eq!(
        query("bob", r#"{"collection_id":null}"#, &[]).await.status,
        200
    );
    query("alice", r#"{"collection_id":"c-a1"}"#, &[])
        .await
        .assert_refusal(404, "not_found");
    assert_eq!(
        forwarded(&upstream, "/query?c=c-b1"),
        2,
        "refusals never went upstream"
    );

    let metrics = String::from_utf8(proxy.admin_get("/metrics", &[]).await.body).unwrap();
    assert!(
        metrics.contains("tenantgate_ownership_denials_total 6"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_first_owner_wins_and_lists_keep_only_owned_items() {
    let upstream = Upstream::start(backend).await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    assert_eq!(create(&proxy, "alice", "a1").await.status, 201);
    // The backend hands bob the id alice owns: the answer is withheld.
    create(&proxy, "bob", "a1")
        .await
        .assert_refusal(502, "isolation_violation");
    send(&proxy, "POST", "/collections/c-a1/get", "bob", "{}")
        .await
        .assert_refusal(404, "not_found");

    let listed = send(&proxy, "GET", "/collections", "alice", "").await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json(), serde_json::json!([{"id": "c-a1", "n": 1}]));
    let listed = send(&proxy, "GET", "/collections", "carol", "").await;
    assert_eq!(listed.json(), serde_json::json!([]));
}

#[tokio::test]
async fn forget_drops_ownership_and_import_adds_it_all_or_nothing() {
    let upstream = Upstream::start(backend).await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    assert_eq!(create(&proxy, "alice", "a1").await.status, 201);
    assert_eq!(
        send(&proxy, "DELETE", "/collections/c-a1", "alice", "")
            .await
            .status,
        200
    );
    send(&proxy, "POST", "/collections/c-a1/get", "alice", "{}")
        .await
        .assert_refusal(404, "not_found");

    let import = |rows: &str| {
        let request = common::request_bytes(
            "POST",
            "/admin/ownership",
            &[TOKEN, "Content-Type: application/json"],
            rows.as_bytes(),
        );
        let admin = proxy.admin;
        async move { common::raw(admin, &request).await }
    };
    let imported = import(r#"[{"kind":"collection","id":"c-old","tenant":"alice"}]"#).await;
    assert_eq!(imported.status, 200, "{:?}", imported.json());
    assert_eq!(imported.json()["imported"], 1);
    assert_eq!(
        send(&proxy, "POST", "/collections/c-old/get", "alice", "{}")
            .await
            .status,
        200
    );
    import(r#"[{"kind":"collection","id":"c-new","tenant":"bob"},{"kind":"collection","id":"c-old","tenant":"bob"}]"#)
        .await
        .assert_refusal(400, "bad_request");
    send(&proxy, "POST", "/collections/c-new/get", "bob", "{}")
        .await
        .assert_refusal(404, "not_found");
    import("{}").await.assert_refusal(400, "bad_request");
}

#[tokio::test]
async fn fifty_first_requests_provision_once_and_a_failed_run_is_retried() {
    let fail_first = Arc::new(AtomicUsize::new(1));
    let failing = fail_first.clone();
    let upstream = Upstream::start(move |seen| {
        if seen.target == "/tenants" && failing.fetch_sub(1, Ordering::AcqRel) == 1 {
            return Reply::json(500, r#"{"error":"not yet"}"#.to_owned());
        }
        backend(seen)
    })
    .await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    // The first run fails: the request is refused and never forwarded.
    create(&proxy, "alice", "a0")
        .await
        .assert_refusal(502, "upstream_unavailable");
    assert_eq!(forwarded(&upstream, "/collections"), 0);

    let mut first_requests = tokio::task::JoinSet::new();
    for i in 0..50 {
        let addr = proxy.addr;
        let body = format!(r#"{{"name":"n{i}"}}"#);
        let request = common::request_bytes(
            "POST",
            "/collections",
            &["X-Tenant-Id: alice", "Content-Type: application/json"],
            body.as_bytes(),
        );
        first_requests.spawn(async move { common::raw(addr, &request).await.status });
    }
    let statuses = first_requests.join_all().await;
    assert!(statuses.iter().all(|&s| s == 201), "{statuses:?}");
    let runs = upstream.requests();
    let provisions: Vec<&Seen> = runs.iter().filter(|s| s.target == "/tenants").collect();
    assert_eq!(provisions.len(), 2, "one failed run, then exactly one");
    assert_eq!(provisions[1].body, br#"{"name": "u_alice"}"#);
    // Every forwarded request came after the successful run.
    let position = |p: &Seen| runs.iter().position(|s| std::ptr::eq(s, p)).unwrap_or(0);
    let first_forward = runs
        .iter()
        .position(|s| s.target == "/collections")
        .unwrap();
    assert!(position(provisions[1]) < first_forward);
}

#[tokio::test]
async fn offboarding_runs_its_steps_then_erases_ownership_and_provisioning() {
    let upstream = Upstream::start(backend).await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    assert_eq!(create(&proxy, "alice", "a1").await.status, 201);
    let offboarded = proxy
        .send_admin("DELETE", "/admin/tenants/alice", &[TOKEN])
        .await;
    assert_eq!(offboarded.status, 200, "{:?}", offboarded.json());
    assert_eq!(offboarded.json()["owned_ids"], 1);
    assert_eq!(offboarded.json()["provisioned"], 1);
    assert_eq!(
        forwarded(&upstream, "/tenants/u_alice"),
        1,
        "the offboard step ran"
    );
    // Back again: provisioned anew, and the old id is no longer hers.
    send(&proxy, "POST", "/collections/c-a1/get", "alice", "{}")
        .await
        .assert_refusal(404, "not_found");
    assert_eq!(create(&proxy, "alice", "a2").await.status, 201);
    let provisions = upstream
        .requests()
        .iter()
        .filter(|s| s.target == "/tenants")
        .count();
    assert_eq!(provisions, 2);
}

#[tokio::test]
async fn ownership_and_provisioning_survive_a_restart_of_the_binary() {
    let upstream = Upstream::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    let audit = dir.path().join("audit.jsonl");
    let text = CONFIG.replace("${UPSTREAM}", &upstream.url())
        + &format!(
            "[store]\npath = \"{}\"\n[log]\naudit_file = \"{}\"\n",
            dir.path().join("data").display(),
            audit.display()
        );
    std::fs::write(&path, text).unwrap();
    let request = |tenant: &str, method: &str, path: &str, body: &str| {
        let header = format!("X-Tenant-Id: {tenant}");
        common::request_bytes(
            method,
            path,
            &[&header, "Content-Type: application/json"],
            body.as_bytes(),
        )
    };

    let first = Binary::run(&path).await;
    let created = common::raw(
        first.proxy,
        &request("alice", "POST", "/collections", r#"{"name":"a1"}"#),
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(
        first.stop("-KILL").await,
        None,
        "killed: only what was written before the answer counts"
    );

    let second = Binary::run(&path).await;
    let get = request("alice", "POST", "/collections/c-a1/get", "{}");
    assert_eq!(common::raw(second.proxy, &get).await.status, 200);
    let bob = request("bob", "POST", "/collections/c-a1/get", "{}");
    common::raw(second.proxy, &bob)
        .await
        .assert_refusal(404, "not_found");
    let provisions = upstream
        .requests()
        .iter()
        .filter(|s| s.target == "/tenants" && s.body.windows(7).any(|w| w == b"u_alice"))
        .count();
    assert_eq!(
        provisions, 1,
        "alice was not provisioned again after the restart"
    );
    second.stop("-TERM").await;
    // The attempt can be found afterwards: the audit line names the id and the refusal.
    let lines = std::fs::read_to_string(&audit).unwrap();
    let attempt: serde_json::Value = lines
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|l: &serde_json::Value| l["tenant"] == "bob")
        .expect("bob's request is in the audit log");
    assert_eq!(attempt["owned"], "collection:c-a1");
    assert_eq!(attempt["reason"], "not_found");
    assert_eq!(attempt["status"], 404);
}

#[tokio::test]
async fn offboarding_waits_for_a_request_in_flight_and_erases_what_it_learned() {
    let upstream = Upstream::start(|seen| match (seen.method.as_str(), seen.target.as_str()) {
        ("POST", "/collections") => Reply::GatedJson(br#"{"id":"c-late""#, b"}"),
        _ => backend(seen),
    })
    .await;
    let proxy = Proxy::start(CONFIG, &upstream).await;
    let addr = proxy.addr;
    let create = common::request_bytes(
        "POST",
        "/collections",
        &["X-Tenant-Id: alice", "Content-Type: application/json"],
        br#"{"name":"late"}"#,
    );
    let creating = tokio::spawn(async move { common::raw(addr, &create).await });
    for _ in 0..200 {
        if forwarded(&upstream, "/collections") == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        forwarded(&upstream, "/collections"),
        1,
        "the create is in flight"
    );
    let delete = common::request_bytes("DELETE", "/admin/tenants/alice", &[TOKEN], b"");
    let admin = proxy.admin;
    let offboarding = tokio::spawn(async move { common::raw(admin, &delete).await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !offboarding.is_finished(),
        "offboarding waits for alice's request"
    );
    upstream.gate.notify_one();
    assert_eq!(creating.await.unwrap().status, 200);
    let offboarded = offboarding.await.unwrap();
    assert_eq!(offboarded.status, 200, "{:?}", offboarded.json());
    assert_eq!(
        offboarded.json()["owned_ids"],
        1,
        "the id learned meanwhile is erased too"
    );
    let app = &proxy.running.as_ref().unwrap().app;
    assert_eq!(app.records.owner("collection", "c-late"), None);
}
