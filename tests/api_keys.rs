//! `[identity] mode = "api_key"` end to end (SPEC 2): keys looked up by SHA-256 in a
//! watched file; rotation with old and new listed, revocation by deleting a line, each
//! in effect within a second; the key header never forwarded; keys never logged.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Binary, Proxy, RawResponse, Upstream};
use sha2::{Digest, Sha256};
use tenantgate::app::Services;

/// Each edit of the keys file must be in effect within this.
const IN_EFFECT: Duration = Duration::from_secs(1);

const ALICE_OLD: &str = "tg_alice_0ld_6f1c2a9e";
const ALICE_NEW: &str = "tg_alice_n3w_b4d7e810";
const BOB: &str = "tg_bob_77a0c3f5d2";

fn line(key: &str, tenant: &str) -> String {
    format!(
        "\"{}\" = \"{tenant}\"\n",
        hex::encode(Sha256::digest(key.as_bytes()))
    )
}

fn keys_file(entries: &[(&str, &str)]) -> String {
    let mut text = "[keys]\n".to_owned();
    for (key, tenant) in entries {
        text.push_str(&line(key, tenant));
    }
    text
}

fn config(upstream: &Upstream, keys: &Path, key_header: &str) -> String {
    format!(
        r#"[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[log]
level = "debug"
[reload]
debounce = "50ms"
poll = "1s"
[upstream]
url = "{}"
[identity]
mode = "api_key"
key_header = "{key_header}"
keys_file = {:?}
[limits]
default_plan = "p"
[limits.plans.p]
rate = 1000
per = "1h"
[tenants.bob]
burst = 2
[tenants.alice]
upstream_headers = {{ Authorization = "Bearer alice-upstream-key" }}
[[route]]
match = "GET /v1/memories"
scope = "tenant"
[route.rewrite.query]
user_id = "bind"
"#,
        upstream.url(),
        keys.display().to_string()
    )
}

struct Setup {
    proxy: Proxy,
    upstream: Upstream,
    keys: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start(entries: &[(&str, &str)], key_header: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys.toml");
        std::fs::write(&keys, keys_file(entries)).unwrap();
        let upstream = Upstream::ok().await;
        let path = dir.path().join("tenantgate.toml");
        std::fs::write(&path, config(&upstream, &keys, key_header)).unwrap();
        let proxy = Proxy::start_file(&path, Services::default()).await;
        Self {
            proxy,
            upstream,
            keys,
            _dir: dir,
        }
    }

    async fn get(&self, key: &str, extra: &[&str]) -> RawResponse {
        let header = format!("X-Api-Key: {key}");
        let mut headers = vec![header.as_str()];
        headers.extend_from_slice(extra);
        self.proxy.send("GET", "/v1/memories", &headers, b"").await
    }

    /// Polls until `key` gets `status`; returns how long that took.
    async fn until(&self, key: &str, status: u16) -> Duration {
        let started = Instant::now();
        while started.elapsed() < IN_EFFECT {
            if self.get(key, &[]).await.status == status {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{key} did not get {status} within {IN_EFFECT:?}");
    }
}

#[tokio::test]
async fn a_key_names_its_tenant_and_is_never_forwarded() {
    let setup = Setup::start(&[(ALICE_OLD, "alice"), (BOB, "bob")], "X-Api-Key").await;
    let response = setup.get(ALICE_OLD, &[]).await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = setup.upstream.only_request();
    assert!(seen.target.ends_with("user_id=u_alice"), "{seen:?}");
    assert_eq!(seen.header("x-api-key"), None);
    assert_eq!(
        seen.all("authorization"),
        ["Bearer alice-upstream-key"],
        "Pattern B: the tenant's own upstream credential"
    );
    assert!(!seen.headers.iter().any(|(_, v)| v.contains(ALICE_OLD)));

    setup
        .get("tg_never_issued", &[])
        .await
        .assert_refusal(401, "unauthenticated");
    setup
        .get(ALICE_OLD, &["X-Tenant-Id: bob"])
        .await
        .assert_refusal(403, "tenant_mismatch");
    setup
        .proxy
        .send("GET", "/v1/memories", &["X-Tenant-Id: alice"], b"")
        .await
        .assert_refusal(401, "unauthenticated");
    setup
        .proxy
        .send(
            "GET",
            "/v1/memories",
            &[&format!("X-Api-Key: {BOB}"), &format!("X-Api-Key: {BOB}")],
            b"",
        )
        .await
        .assert_refusal(401, "unauthenticated");
    assert_eq!(setup.upstream.requests().len(), 1);
}

#[tokio::test]
async fn a_bearer_key_in_authorization_works_the_same() {
    let setup = Setup::start(&[(BOB, "bob")], "Authorization").await;
    let response = setup
        .proxy
        .send(
            "GET",
            "/v1/memories",
            &[&format!("Authorization: Bearer {BOB}")],
            b"",
        )
        .await;
    assert_eq!(response.status, 200);
    let seen = setup.upstream.only_request();
    assert!(seen.target.ends_with("user_id=u_bob"));
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test]
async fn keys_rotate_with_an_overlap_and_are_revoked_by_deleting_their_line() {
    let setup = Setup::start(&[(ALICE_OLD, "alice")], "X-Api-Key").await;
    assert_eq!(setup.get(ALICE_OLD, &[]).await.status, 200);
    setup
        .get(ALICE_NEW, &[])
        .await
        .assert_refusal(401, "unauthenticated");

    // Rotation: the new key is listed beside the old; both work.
    common::replace_file(
        &setup.keys,
        &keys_file(&[(ALICE_OLD, "alice"), (ALICE_NEW, "alice")]),
    );
    let took = setup.until(ALICE_NEW, 200).await;
    assert_eq!(setup.get(ALICE_OLD, &[]).await.status, 200, "overlap");
    eprintln!("new key in effect after {took:?}");

    // Revocation: the old key's line is deleted.
    common::replace_file(&setup.keys, &keys_file(&[(ALICE_NEW, "alice")]));
    let took = setup.until(ALICE_OLD, 401).await;
    eprintln!("old key revoked after {took:?}");
    assert_eq!(setup.get(ALICE_NEW, &[]).await.status, 200);

    // A broken edit keeps the keys in use.
    let errors = "tenantgate_config_reloads_total{result=\"error\"}";
    let before = setup.proxy.metric(errors).await;
    common::replace_file(&setup.keys, "[keys]\n\"not-a-digest\" = \"alice\"\n");
    setup
        .proxy
        .until_metric_moves(errors, before, IN_EFFECT)
        .await;
    assert_eq!(setup.get(ALICE_NEW, &[]).await.status, 200);
    setup
        .get(ALICE_OLD, &[])
        .await
        .assert_refusal(401, "unauthenticated");
}

#[tokio::test]
async fn unknown_keys_consume_none_of_the_claimed_tenants_rate_limit() {
    let setup = Setup::start(&[(BOB, "bob")], "X-Api-Key").await;
    for i in 0..5 {
        setup
            .get(&format!("tg_bob_guess_{i}"), &["X-Tenant-Id: bob"])
            .await
            .assert_refusal(401, "unauthenticated");
    }
    for _ in 0..2 {
        assert_eq!(setup.get(BOB, &[]).await.status, 200);
    }
    setup
        .get(BOB, &[])
        .await
        .assert_refusal(429, "rate_limited");
}

#[tokio::test]
async fn keys_appear_in_no_log_line_at_debug_level() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, keys_file(&[(ALICE_OLD, "alice")])).unwrap();
    let upstream = Upstream::ok().await;
    let path = dir.path().join("tenantgate.toml");
    std::fs::write(&path, config(&upstream, &keys, "X-Api-Key")).unwrap();
    let binary = Binary::run(&path).await;
    let addr = binary.proxy;
    let send = |key: &'static str| async move {
        let header = format!("X-Api-Key: {key}");
        let request = common::request_bytes("GET", "/v1/memories", &[&header], b"");
        common::raw(addr, &request).await
    };
    assert_eq!(send(ALICE_OLD).await.status, 200);
    assert_eq!(send("tg_wrong_key_5e5e5e").await.status, 401);
    // A graceful stop writes every buffered audit line before the process exits.
    let (stdout, stderr) = (binary.stdout.clone(), binary.stderr.clone());
    assert_eq!(binary.stop("-TERM").await, Some(0));
    let stdout = String::from_utf8(stdout.lock().unwrap().clone()).unwrap();
    let stderr = stderr.lock().unwrap().join("\n");
    assert!(stdout.contains("\"tenant\":\"alice\""), "audit: {stdout}");
    for secret in [ALICE_OLD, "tg_wrong_key_5e5e5e"] {
        assert!(!stdout.contains(secret), "audit log has {secret}");
        assert!(!stderr.contains(secret), "log has {secret}");
    }
}

#[tokio::test]
async fn a_config_naming_a_keys_file_that_appears_later_loads_when_it_does() {
    let setup = Setup::start(&[(ALICE_OLD, "alice")], "X-Api-Key").await;
    let path = setup.keys.with_file_name("tenantgate.toml");
    let later = setup.keys.with_file_name("keys-v2.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let errors = "tenantgate_config_reloads_total{result=\"error\"}";
    let before = setup.proxy.metric(errors).await;
    // The ConfigMap is updated before the Secret it names is.
    common::replace_file(&path, &text.replace("keys.toml", "keys-v2.toml"));
    setup
        .proxy
        .until_metric_moves(errors, before, common::PATIENCE)
        .await;
    assert_eq!(
        setup.get(ALICE_OLD, &[]).await.status,
        200,
        "old config serves"
    );
    std::fs::write(&later, keys_file(&[(BOB, "bob")])).unwrap();
    let started = Instant::now();
    while setup.get(BOB, &[]).await.status != 200 {
        assert!(
            started.elapsed() < common::PATIENCE,
            "the new keys file was never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    setup
        .get(ALICE_OLD, &[])
        .await
        .assert_refusal(401, "unauthenticated");
}
