//! The command line as a user meets it: `check` messages and exit codes, and a real
//! `tenantgate run` process driven by signals, sent by pid.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Binary, Upstream};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tenantgate");

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn tenantgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("TENANTGATE_CONFIG")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_reports_errors_as_file_line_col_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("syntax.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\nx = [\n", ":4:1: "),
        ("duration.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\ntimeout = \"soon\"\n", ":3:11: invalid duration \"soon\""),
        ("unknown.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\nretry = 2\n", ":3:1: unknown field `retry`"),
        ("env.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\nset_headers = { Authorization = \"Bearer ${TG_TEST_UNSET}\" }\n", ":3:33: environment variable TG_TEST_UNSET is not set"),
        ("route.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"GET /a\"\nscope = \"tenant\"\n[[route]]\nmatch = \"GET /a/%2e%2e/b\"\nscope = \"tenant\"\n", ":7:9: path template \"/a/%2e%2e/b\" is not a canonical path"),
        ("method.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"get /a\"\nscope = \"shared\"\n", ":4:9: method \"get\" is not an upper-case method name"),
        ("scope.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"GET /a\"\nscope = \"public\"\n", ":5:9: unknown variant `public`"),
        ("trust.toml", "[listen]\naddr = \"0.0.0.0:8080\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n", ":2:8: header mode trusts X-Tenant-Id from anyone"),
        ("priv.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"POST /p\"\nscope = \"privileged\"\n", ":5:9: a privileged route needs [tenant] privileged_token"),
        ("tenant.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[tenants.\"a,b\"]\nblocked = true\n", ":3:1: [tenants.\"a,b\"] is not a valid tenant id"),
        ("missing.toml", "[listen]\naddr = \"127.0.0.1:1\"\n", "missing field `upstream`"),
        ("deny-path.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"GET /a/{id}\"\nscope = \"tenant\"\nrewrite.path = { id = \"deny\" }\n", ":6:23: deny is not allowed in path rules"),
        ("prepend-query.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"GET /a\"\nscope = \"tenant\"\nrewrite.query = { ids = \"prepend\" }\n", "prepend is not allowed in query rules"),
        ("prepend-header.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"GET /a\"\nscope = \"tenant\"\nrewrite.header = { X-Ids = \"prepend\" }\n", "prepend is not allowed in header rules"),
        ("owned.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"GET /a/{id}\"\nscope = \"tenant\"\nrewrite.path = { id = \"owned:my memory\" }\n", ":6:23: owned:my memory: a kind is a name"),
        ("rest.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"GET /a/{*rest}\"\nscope = \"tenant\"\nrewrite.path = { rest = \"prefix\" }\n", "{*rest} is never rewritten"),
        ("shared-rewrite.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"GET /a\"\nscope = \"shared\"\nrewrite.query = { user_id = \"bind\" }\n", ":5:9: rewrite rules and {ns}/{tenant} templates apply only to tenant routes"),
        ("pointer.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"POST /a\"\nscope = \"tenant\"\nrewrite.json = { \"user_id\" = \"bind\" }\n", "must start with /"),
        ("separator.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[tenant]\nseparator = \"-\"\n", ":4:13: separator \"-\" must contain a character the tenant encoder never emits"),
        ("dot.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[tenant]\nseparator = \".\"\n", ":4:13: separator"),
        ("main.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[tenant]\nmain_namespace = \"u_bob\"\n", ":4:18: main_namespace \"u_bob\" parses as a tenant's namespace"),
        ("audit-flush.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\n[log]\naudit_flush = \"0s\"\n", ":4:15: audit_flush must be at least 1ms"),
        ("credential-template.toml", "[upstream]\nurl = \"http://127.0.0.1:1\"\nset_headers = { X-User = \"{ns}\" }\n", "templates ({ns}, {tenant}) belong in a tenant route's set_headers"),
    ];
    for (name, text, expected) in cases {
        let path = write(dir.path(), name, text);
        let (code, _, stderr) = tenantgate(&["check", "--config", &path]).await;
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.starts_with(&path), "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in {stderr:?}"
        );
    }
    let (code, _, stderr) =
        tenantgate(&["check", "--config", "/nonexistent/tenantgate.toml"]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("/nonexistent/tenantgate.toml:1:1: cannot read"),
        "{stderr}"
    );
}

#[tokio::test]
async fn check_summarises_and_warns_about_shadowed_routes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "ok.toml",
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nname = \"all\"\nmatch = \"* /v1/{*rest}\"\nscope = \"shared\"\n[[route]]\nname = \"late\"\nmatch = \"GET /v1/x\"\nscope = \"tenant\"\n[[route]]\nname = \"events\"\nmatch = \"GET /events\"\nscope = \"tenant\"\nresponse.passthrough = true\n",
    );
    let (code, stdout, stderr) = tenantgate(&["check", "--config", &path]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("header mode"), "{stdout}");
    assert!(stdout.contains("routes    3"), "{stdout}");
    assert!(
        stdout.contains("passthrough (answers reach the caller uninspected): events"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: route \"late\" can never match: the earlier route \"all\""),
        "{stdout}"
    );
}

#[tokio::test]
async fn version_and_usage_errors_have_their_exit_codes() {
    let (code, stdout, _) = tenantgate(&["--version"]).await;
    assert_eq!(code, 0);
    assert!(stdout.starts_with("tenantgate "));
    assert_eq!(tenantgate(&["frobnicate"]).await.0, 1);
    assert_eq!(
        tenantgate(&["run", "--listen", "not-an-address"]).await.0,
        1
    );
}

#[tokio::test]
async fn run_exits_2_when_it_cannot_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n[store]\npath = \"{}\"\n",
        dir.path().join("data").display()
    );
    let path = write(dir.path(), "c.toml", &text);
    let listen = taken.local_addr().unwrap().to_string();
    let (code, _, stderr) = tenantgate(&[
        "run",
        "--config",
        &path,
        "--listen",
        &listen,
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[tokio::test]
async fn run_serves_audits_reloads_on_sighup_and_exits_0_on_sigterm() {
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "[upstream]\nurl = \"{}\"\n[store]\npath = \"{}\"\n[reload]\nwatch = false\npoll = \"0s\"\n[[route]]\nmatch = \"GET /v1/a\"\nscope = \"tenant\"\n",
        upstream.url(),
        dir.path().join("data").display()
    );
    let path = write(dir.path(), "tenantgate.toml", &base);
    let run = Binary::run_from_env(Path::new(&path)).await;
    let proxy_addr = run.proxy;

    let ok = common::raw(
        proxy_addr,
        &common::request_bytes(
            "GET",
            "/v1/a",
            &["X-Tenant-Id: alice", "X-Request-Id: audit-1"],
            b"",
        ),
    )
    .await;
    assert_eq!(ok.status, 200);
    let refused = common::raw(
        proxy_addr,
        &common::request_bytes("GET", "/v1/b", &["X-Tenant-Id: alice"], b""),
    )
    .await;
    refused.assert_refusal(403, "route_not_allowed");
    // The audit writer is off the request path, and says whether it ever dropped.
    let metrics = common::raw(
        run.admin,
        &common::request_bytes("GET", "/metrics", &[], b""),
    )
    .await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.contains("\ntenantgate_audit_lines_dropped_total 0\n"),
        "{text}"
    );

    // SIGHUP: a new route appears; an invalid file changes nothing.
    std::fs::write(
        &path,
        format!("{base}[[route]]\nmatch = \"GET /v1/b\"\nscope = \"tenant\"\n"),
    )
    .unwrap();
    run.signal("-HUP").await;
    let mut reloaded = false;
    for _ in 0..100 {
        let r = common::raw(
            proxy_addr,
            &common::request_bytes("GET", "/v1/b", &["X-Tenant-Id: alice"], b""),
        )
        .await;
        if r.status == 200 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reloaded, "SIGHUP applied the new route");
    std::fs::write(&path, "this is not toml").unwrap();
    run.signal("-HUP").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let still = common::raw(
        proxy_addr,
        &common::request_bytes("GET", "/v1/b", &["X-Tenant-Id: alice"], b""),
    )
    .await;
    assert_eq!(
        still.status, 200,
        "an invalid file keeps the old config serving"
    );

    let stdout = run.stdout.clone();
    assert_eq!(run.stop("-TERM").await, Some(0));
    let stdout = String::from_utf8(stdout.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &lines[0];
    assert_eq!(first["request_id"], "audit-1");
    assert_eq!(first["tenant"], "alice");
    assert_eq!(first["route"], "GET /v1/a");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["decision"], "forwarded");
    assert_eq!(first["status"], 200);
    assert_eq!(first["upstream_status"], 200);
    assert_eq!(first["units"], 1);
    assert!(first["latency_ms"].as_f64().is_some() && first["timestamp"].is_string());
    let second = &lines[1];
    assert_eq!(second["decision"], "refused");
    assert_eq!(second["reason"], "route_not_allowed");
    assert_eq!(second["status"], 403);
    assert!(second.get("upstream_status").is_none());
    assert!(second.get("units").is_none(), "refusals cost nothing");
}

#[tokio::test]
async fn explain_prints_the_upstream_request_or_the_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "e.toml",
        "[upstream]\nurl = \"http://127.0.0.1:8000/base\"\n[[route]]\nname = \"add\"\nmatch = \"POST /v1/sessions/{sid}/memories\"\nscope = \"tenant\"\nset_headers = { X-User = \"{ns}\" }\nrewrite.path = { sid = \"prefix\" }\nrewrite.json = { \"/user_id\" = \"bind\" }\n",
    );
    let (code, stdout, stderr) = tenantgate(&[
        "explain",
        "--config",
        &path,
        "--tenant",
        "Alice",
        "POST /v1/sessions/s1/memories?x=1",
        "--body",
        r#"{"text":"tea","n":1.50}"#,
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(
            "tenant: \"Alice\", from the tenant header (header mode)\nroute: add\nupstream request:\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("  POST http://127.0.0.1:8000/base/v1/sessions/u_-41lice__s1/memories?x=1\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  x-user: u_-41lice\n"), "{stdout}");
    assert!(
        stdout.contains(r#"  {"text":"tea","n":1.50,"user_id":"u_-41lice"}"#),
        "{stdout}"
    );
    assert!(!stdout.contains("x-tenant-id"), "{stdout}");

    let (code, stdout, _) = tenantgate(&[
        "explain",
        "--config",
        &path,
        "--tenant",
        "alice",
        "POST /v1/sessions/s1/memories",
        "--body",
        r#"{"user_id":"bob"}"#,
    ])
    .await;
    assert_eq!(code, 0);
    assert!(
        stdout
            .starts_with("refused: 403 tenant_mismatch\n{\"error\":{\"code\":\"tenant_mismatch\""),
        "{stdout}"
    );
    let (_, stdout, _) = tenantgate(&["explain", "--config", &path, "GET /v1/../etc"]).await;
    assert!(stdout.starts_with("refused: 400 bad_path"), "{stdout}");
}

#[tokio::test]
async fn check_and_explain_show_the_jwt_identity_and_the_claim_that_became_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/rsa.pub");
    let config = format!(
        "[upstream]\nurl = \"http://127.0.0.1:8000\"\n[listen]\naddr = \"0.0.0.0:8080\"\n\
         [identity]\nmode = \"jwt\"\nkeys_file = {:?}\nclaim = \"org.member\"\naudience = \"memory\"\n\
         [[route]]\nname = \"list\"\nmatch = \"GET /v1/memories\"\nscope = \"tenant\"\nrewrite.query = {{ user_id = \"bind\" }}\n",
        keys.display().to_string()
    );
    let path = write(dir.path(), "jwt.toml", &config);
    let (code, stdout, stderr) = tenantgate(&["check", "--config", &path]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "  identity  jwt mode, Bearer token in authorization, tenant from claim org.member\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("    keys    keys_file "), "{stdout}");
    assert!(stdout.contains("(RS256)"), "{stdout}");

    let key =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/rsa.key")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &serde_json::json!({"org": {"member": "dana"}, "aud": "memory", "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&key).unwrap(),
    )
    .unwrap();
    let bearer = format!("Authorization: Bearer {token}");
    let (code, stdout, stderr) = tenantgate(&[
        "explain",
        "--config",
        &path,
        "-H",
        &bearer,
        "GET /v1/memories",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(
            "tenant: \"dana\", from claim org.member of a JWT verified with an RS256 key\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("GET http://127.0.0.1:8000/v1/memories?user_id=u_dana"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&token),
        "the token is not forwarded: {stdout}"
    );

    let (_, stdout, _) = tenantgate(&[
        "explain",
        "--config",
        &path,
        "-H",
        "Authorization: Bearer x.y.z",
        "GET /v1/memories",
    ])
    .await;
    assert!(
        stdout.starts_with("refused: 401 unauthenticated\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_shows_the_upstream_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let config = format!(
        "[upstream]\nurl = \"https://memory.internal:8443\"\nca_file = {ca_file:?}\n[[route]]\nmatch = \"GET /x\"\nscope = \"shared\"\n"
    );
    let path = write(dir.path(), "tls.toml", &config);
    let (code, stdout, stderr) = tenantgate(&["check", "--config", &path]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("  upstream  https://memory.internal:8443"),
        "{stdout}"
    );
    assert!(
        stdout.contains("    tls     webpki roots + 1 from ca_file\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_shows_the_listener_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert = write(dir.path(), "tls.crt", &cert.pem());
    let key = write(dir.path(), "tls.key", &key.serialize_pem());
    let config = format!(
        "[listen.tls]\ncert = {cert:?}\nkey = {key:?}\n[upstream]\nurl = \"http://127.0.0.1:8000\"\n[[route]]\nmatch = \"GET /x\"\nscope = \"shared\"\n"
    );
    let path = write(dir.path(), "tls.toml", &config);
    let (code, stdout, stderr) = tenantgate(&["check", "--config", &path]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("    tls     proxy HTTPS; admin plain HTTP\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_shows_the_shared_store_without_its_password_and_refuses_bad_store_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = |keys: &str| {
        format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[store]\nkind = \"redis\"\n{keys}\n[[route]]\nmatch = \"GET /x\"\nscope = \"shared\"\n"
        )
    };
    let good = write(
        dir.path(),
        "good.toml",
        &store("url = \"rediss://app:s3cret@redis.internal:6380/1\"\nreplicas = 3\non_store_error = \"fail_closed\""),
    );
    let (code, stdout, stderr) = tenantgate(&["check", "--config", &good]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("  store     redis rediss://app:***@redis.internal:6380/1 (flush 1s, timeout 100ms, on_store_error fail_closed, replicas 3): shared by every replica"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
    for (keys, complaint) in [
        ("", "kind = \"redis\" needs url"),
        ("url = \"http://:s3cret@redis:6379\"", "is not a Redis url"),
        (
            "url = \"redis://redis:6379\"\nca_file = \"/etc/ca.pem\"",
            "it needs a rediss:// url",
        ),
        (
            "url = \"redis://redis:6379\"\nreplicas = 0",
            "replicas is how many sidecars",
        ),
        (
            "url = \"redis://redis:6379\"\nkey_prefix = \"a{b}\"",
            "key_prefix is 1 to 64",
        ),
        (
            "url = \"redis://redis:6379\"\non_store_error = \"retry\"",
            "unknown variant",
        ),
    ] {
        let path = write(dir.path(), "bad.toml", &store(keys));
        let (code, stdout, stderr) = tenantgate(&["check", "--config", &path]).await;
        assert_eq!(code, 1, "{keys}: {stdout}");
        assert!(stderr.contains(complaint), "{keys}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

#[tokio::test]
async fn check_warns_about_keep_without_upstream_scoping_and_explain_shows_joined_and_added_values()
{
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "keep.toml",
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n\
         [[route]]\nname = \"unscoped-list\"\nmatch = \"GET /v1/sessions\"\nscope = \"tenant\"\nresponse.keep = { items = \"/items\", owner = \"/user_id\" }\n\
         [[route]]\nname = \"scoped-list\"\nmatch = \"GET /v1/mine\"\nscope = \"tenant\"\nrewrite.query = { user_id = \"bind\" }\nresponse.keep = { items = \"/items\", owner = \"/user_id\" }\n",
    );
    let (code, stdout, stderr) = tenantgate(&["check", "--config", &path]).await;
    assert_eq!(code, 0, "{stderr}");
    let warned: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("response.keep"))
        .collect();
    assert_eq!(warned.len(), 1, "{stdout}");
    assert!(warned[0].contains("route[0] (unscoped-list)"), "{stdout}");

    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/config/presets/langgraph.toml");
    let cases: [(&[&str], &str); 2] = [
        (
            &["GET /store/items?namespace=memories.prefs&key=k1"],
            "/store/items?namespace=u_alice~.memories.prefs&key=k1",
        ),
        (
            &[
                "--body",
                r#"{"prefix":["memories"],"max_depth":2}"#,
                "POST /store/namespaces",
            ],
            r#"{"prefix":["u_alice~","memories"],"max_depth":3}"#,
        ),
    ];
    for (request, upstream) in cases {
        let args = [
            &["explain", "--config", preset, "--tenant", "alice"],
            request,
        ]
        .concat();
        let (code, stdout, stderr) = tenantgate(&args).await;
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains(upstream), "{stdout}");
    }
}
