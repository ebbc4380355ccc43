//! Usage survives restarts (SPEC 8): the real binary with an embedded store in a temp
//! directory, stopped gracefully or killed, then started again on the same store.

mod common;

use std::time::Duration;

use common::{Binary, Upstream};

const TOKEN: &str = "Authorization: Bearer admin-token";

fn config(upstream: &Upstream, dir: &std::path::Path, flush: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[admin]\ntoken = \"admin-token\"\n\
         [store]\npath = \"{}\"\nflush = \"{flush}\"\n\
         [log]\naudit_file = \"{}\"\naudit_flush = \"1h\"\n\
         [[route]]\nmatch = \"GET /m\"\nscope = \"tenant\"\n\
         [[route]]\nmatch = \"GET /s\"\nscope = \"shared\"\n",
        upstream.url(),
        dir.join("data").display(),
        dir.join("audit.jsonl").display()
    )
}

async fn workload(run: &Binary) {
    for (tenant, n) in [("alice", 3), ("bob", 2)] {
        for _ in 0..n {
            let header = format!("X-Tenant-Id: {tenant}");
            let request = common::request_bytes("GET", "/m", &[&header], b"");
            assert_eq!(common::raw(run.proxy, &request).await.status, 200);
        }
    }
    let shared = common::request_bytes("GET", "/s", &[], b"");
    assert_eq!(common::raw(run.proxy, &shared).await.status, 200);
}

async fn usage(run: &Binary) -> (serde_json::Value, serde_json::Value) {
    let get = |path: &str| common::request_bytes("GET", path, &[TOKEN], b"");
    let by_user = common::raw(run.admin, &get("/usage/by-user")).await.json();
    let mut today = common::raw(run.admin, &get("/usage/today")).await.json();
    today.as_object_mut().unwrap().remove("fraction_used");
    (by_user, today)
}

#[tokio::test]
async fn a_graceful_stop_loses_nothing() {
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    // A long flush: only the shutdown flush can have written the rows.
    std::fs::write(&path, config(&upstream, dir.path(), "1h")).unwrap();
    let first = Binary::run(&path).await;
    workload(&first).await;
    let before = usage(&first).await;
    assert_eq!(before.0[0]["user_id"], "alice");
    assert_eq!(before.0[0]["events"], 3);
    assert_eq!(before.1["events"], 6);
    let audit = dir.path().join("audit.jsonl");
    assert_eq!(
        std::fs::read(&audit).unwrap(),
        b"",
        "no line before the stop"
    );
    assert_eq!(first.stop("-TERM").await, Some(0));
    // The audit log went to [log] audit_file, one JSON line per request, every line
    // written by the stop: audit_flush = "1h" writes none before it.
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{audit}");
    assert_eq!(lines[0]["tenant"], "alice");
    assert_eq!(lines[0]["units"], 1);
    assert_eq!(lines[5]["route"], "GET /s");
    assert!(lines[5].get("tenant").is_none());

    let second = Binary::run(&path).await;
    assert_eq!(usage(&second).await, before, "identical after a restart");
    // And counting goes on from there.
    workload(&second).await;
    let after = usage(&second).await;
    assert_eq!(after.0[0]["events"], 6);
    assert_eq!(second.stop("-TERM").await, Some(0));
}

#[tokio::test]
async fn a_crash_loses_at_most_one_flush_interval() {
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    let flush = Duration::from_millis(200);
    std::fs::write(&path, config(&upstream, dir.path(), "200ms")).unwrap();
    let first = Binary::run(&path).await;
    workload(&first).await;
    // Everything older than one flush interval is on disk when the process dies (no
    // query ran before the kill: queries flush, and would hide a broken flusher).
    tokio::time::sleep(flush * 3).await;
    assert_eq!(first.stop("-KILL").await, None, "killed by a signal");

    let second = Binary::run(&path).await;
    let (by_user, today) = usage(&second).await;
    let counts: Vec<(&str, u64, u64)> = by_user
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["user_id"].as_str().unwrap(),
                r["events"].as_u64().unwrap(),
                r["units"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [("alice", 3, 3), ("bob", 2, 2)]);
    assert_eq!(today["events"], 6, "the shared call counts for the project");
    assert_eq!(second.stop("-TERM").await, Some(0));
}

#[tokio::test]
async fn the_shutdown_flush_alone_writes_the_last_rows() {
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    // A long flush and no query between the workload and SIGTERM (a query flushes):
    // only the flush on the way out can have written these rows.
    std::fs::write(&path, config(&upstream, dir.path(), "1h")).unwrap();
    let first = Binary::run(&path).await;
    workload(&first).await;
    assert_eq!(first.stop("-TERM").await, Some(0));

    let second = Binary::run(&path).await;
    let (by_user, today) = usage(&second).await;
    let counts: Vec<(&str, u64)> = by_user
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["user_id"].as_str().unwrap(),
                r["events"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [("alice", 3), ("bob", 2)]);
    assert_eq!(today["events"], 6);
    assert_eq!(second.stop("-TERM").await, Some(0));
}

#[tokio::test]
async fn after_a_restart_another_tenants_bare_root_is_still_withheld() {
    // The upstream names bob's root in every answer to alice.
    let upstream = Upstream::start(|seen| match seen.header("x-ns") {
        Some("u_alice") => common::Reply::With(200, r#"{"owner":"u_bob"}"#, vec![]),
        _ => common::Reply::Ok,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantgate.toml");
    let text = config(&upstream, dir.path(), "1h").replace(
        "match = \"GET /m\"\nscope = \"tenant\"\n",
        "match = \"GET /m\"\nscope = \"tenant\"\nset_headers = { X-NS = \"{ns}\" }\n",
    );
    std::fs::write(&path, text).unwrap();
    let ask = |tenant: &str| {
        let header = format!("X-Tenant-Id: {tenant}");
        common::request_bytes("GET", "/m", &[&header], b"")
    };
    let first = Binary::run(&path).await;
    assert_eq!(common::raw(first.proxy, &ask("bob")).await.status, 200);
    common::raw(first.proxy, &ask("alice"))
        .await
        .assert_refusal(502, "isolation_violation");
    assert_eq!(first.stop("-TERM").await, Some(0));

    // A new process has seen no request from bob, but the store has his rows.
    let second = Binary::run(&path).await;
    common::raw(second.proxy, &ask("alice"))
        .await
        .assert_refusal(502, "isolation_violation");
    assert_eq!(second.stop("-TERM").await, Some(0));
}
