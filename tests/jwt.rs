//! `[identity] mode = "jwt"` end to end (SPEC 2): tokens signed here with real keys
//! (`tests/keys/`, test-only) for HS256, RS256, ES256 and EdDSA; every way a token is
//! refused; the tenant header against the claim; a watched JWKS file rotated and
//! corrupted; `jwks_url` served by a local provider, rotated and taken down. Token
//! times are checked against the proxy's manual clock.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{Proxy, RawResponse, Reply, Upstream, PATIENCE};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tenantgate::app::Services;
use tenantgate::clock::ManualClock;

/// The proxy's clock starts here (2026-11-22T23:00:00Z); tokens are dated from it.
const NOW: u64 = 1_795_388_400;

fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

fn key_bytes(name: &str) -> Vec<u8> {
    std::fs::read(keys_dir().join(name)).unwrap()
}

fn encoding_key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::HS256 => {
            EncodingKey::from_secret(b"a-shared-secret-of-at-least-32-bytes").unwrap()
        }
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&key_bytes("rsa.key")).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&key_bytes("ec.key")).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&key_bytes("ed.key")).unwrap(),
        other => panic!("no test key for {other:?}"),
    }
}

fn sign_with(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    sign_with(alg, &encoding_key(alg), kid, claims)
}

/// Claims valid at NOW for `sub`, with the configured issuer and audience.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": "https://auth.test", "aud": "memory", "exp": NOW + 600, "iat": NOW})
}

/// The JWK of one of the test keys, with a kid.
fn jwk(alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(alg), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// Routes and limits every test shares; `identity` is the `[identity]` body.
fn config(identity: &str) -> String {
    format!(
        r#"
[upstream]
url = "${{UPSTREAM}}"
[identity]
mode = "jwt"
issuer = "https://auth.test"
audience = "memory"
leeway = "30s"
{identity}
[limits]
default_plan = "p"
[limits.plans.p]
rate = 1000
per = "1h"
[tenants.dave]
burst = 2
[tenants.erin]
upstream_headers = {{ Authorization = "Bearer erin-upstream-key" }}
[[route]]
match = "GET /v1/memories"
scope = "tenant"
[route.rewrite.query]
user_id = "bind"
[[route]]
match = "GET /v1/shared"
scope = "shared"
"#
    )
}

struct Setup {
    proxy: Proxy,
    upstream: Upstream,
    clock: Arc<ManualClock>,
}

impl Setup {
    async fn start(identity: &str) -> Self {
        let upstream = Upstream::ok().await;
        let clock = Arc::new(ManualClock::at(Duration::from_secs(NOW)));
        let services = Services {
            clock: clock.clone(),
            ..Services::default()
        };
        let proxy = Proxy::start_with(&config(identity), &upstream, services).await;
        Self {
            proxy,
            upstream,
            clock,
        }
    }

    async fn get(&self, token: &str, extra: &[&str]) -> RawResponse {
        let auth = format!("Authorization: Bearer {token}");
        let mut headers = vec![auth.as_str()];
        headers.extend_from_slice(extra);
        self.proxy.send("GET", "/v1/memories", &headers, b"").await
    }

    async fn failures(&self, reason: &str) -> f64 {
        self.proxy
            .metric(&format!(
                "tenantgate_authentication_failures_total{{reason=\"{reason}\"}}"
            ))
            .await
    }
}

fn file_identity(path: &Path) -> String {
    format!("keys_file = {:?}\n", path.display().to_string())
}

#[tokio::test]
async fn a_valid_token_of_each_algorithm_names_the_tenant_and_never_reaches_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("keys.pem");
    let pems: Vec<u8> = ["rsa.pub", "ec.pub", "ed.pub"]
        .iter()
        .flat_map(|f| key_bytes(f))
        .collect();
    std::fs::write(&pem, pems).unwrap();
    let from_pem = Setup::start(&file_identity(&pem)).await;
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let token = sign(alg, None, &claims("alice"));
        let response = from_pem.get(&token, &[]).await;
        assert_eq!(response.status, 200, "{alg:?}: {response:?}");
        let seen = from_pem.upstream.requests().pop().unwrap();
        assert!(seen.target.contains("user_id=u_alice"), "{alg:?}: {seen:?}");
        assert_eq!(
            seen.header("authorization"),
            None,
            "the token is never forwarded"
        );
        assert!(
            !seen.headers.iter().any(|(_, v)| v.contains(&token)),
            "{seen:?}"
        );
    }

    let secret = Setup::start("hs256_secret = \"a-shared-secret-of-at-least-32-bytes\"").await;
    let token = sign(Algorithm::HS256, None, &claims("bob"));
    assert_eq!(secret.get(&token, &[]).await.status, 200);
    assert!(secret
        .upstream
        .only_request()
        .target
        .contains("user_id=u_bob"));
}

#[tokio::test]
async fn expiry_and_not_before_are_judged_by_the_proxy_clock_with_leeway() {
    let setup = Setup::start("hs256_secret = \"a-shared-secret-of-at-least-32-bytes\"").await;
    let mut c = claims("alice");
    c["exp"] = json!(NOW + 60);
    let token = sign(Algorithm::HS256, None, &c);
    assert_eq!(setup.get(&token, &[]).await.status, 200);
    // 20 s past exp: inside the 30 s leeway.
    setup.clock.advance(Duration::from_secs(80));
    assert_eq!(setup.get(&token, &[]).await.status, 200, "within leeway");
    setup.clock.advance(Duration::from_secs(11));
    setup
        .get(&token, &[])
        .await
        .assert_refusal(401, "unauthenticated");
    assert_eq!(setup.failures("expired").await, 1.0);

    let mut early = claims("alice");
    early["nbf"] = json!(NOW + 91 + 40);
    let token = sign(Algorithm::HS256, None, &early);
    setup
        .get(&token, &[])
        .await
        .assert_refusal(401, "unauthenticated");
    assert_eq!(setup.failures("not_yet_valid").await, 1.0);
    setup.clock.advance(Duration::from_secs(15));
    assert_eq!(
        setup.get(&token, &[]).await.status,
        200,
        "nbf within leeway"
    );
}

#[tokio::test]
async fn every_bad_token_is_401_with_its_reason_and_nothing_reaches_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[jwk(Algorithm::RS256, "k1")])).unwrap();
    let setup = Setup::start(&file_identity(&file)).await;
    let rsa_public_pem = key_bytes("rsa.pub");

    let mut wrong_issuer = claims("alice");
    wrong_issuer["iss"] = json!("https://evil.test");
    let mut wrong_audience = claims("alice");
    wrong_audience["aud"] = json!(["other"]);
    let mut no_exp = claims("alice");
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_sub = claims("alice");
    no_sub.as_object_mut().unwrap().remove("sub");
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims("alice").to_string())
    );
    // The classic confusion: HS256 keyed with the RSA public key the proxy holds.
    let confused = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(&rsa_public_pem).unwrap(),
        Some("k1"),
        &claims("alice"),
    );
    let other_rsa = EncodingKey::from_rsa_pem(&key_bytes("rsa2.key")).unwrap();
    let forged = sign_with(Algorithm::RS256, &other_rsa, Some("k1"), &claims("alice"));
    let valid = sign(Algorithm::RS256, Some("k1"), &claims("alice"));
    let (head, rest) = valid.split_once('.').unwrap();
    let tampered = format!(
        "{head}.{}.{}",
        URL_SAFE_NO_PAD.encode(claims("bob").to_string()),
        rest.split_once('.').unwrap().1
    );
    let cases: Vec<(&str, String)> = vec![
        ("alg none", none),
        ("HS256 with the RSA public key as secret", confused),
        (
            "unknown kid",
            sign(Algorithm::RS256, Some("k9"), &claims("alice")),
        ),
        ("signed by another key", forged),
        ("claims swapped under a valid signature", tampered),
        (
            "wrong issuer",
            sign(Algorithm::RS256, Some("k1"), &wrong_issuer),
        ),
        (
            "wrong audience",
            sign(Algorithm::RS256, Some("k1"), &wrong_audience),
        ),
        ("no exp", sign(Algorithm::RS256, Some("k1"), &no_exp)),
        (
            "no tenant claim",
            sign(Algorithm::RS256, Some("k1"), &no_sub),
        ),
        ("garbage", "not-a-jwt".to_owned()),
        ("three dots of garbage", "a.b.c".to_owned()),
    ];
    for (what, token) in &cases {
        let response = setup.get(token, &["X-Tenant-Id: alice"]).await;
        response.assert_refusal(401, "unauthenticated");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer"),
            "{what}"
        );
    }
    for (reason, n) in [
        ("algorithm", 2.0),
        ("unknown_kid", 1.0),
        ("signature", 2.0),
        ("issuer", 1.0),
        ("audience", 1.0),
        ("no_exp", 1.0),
        ("claim", 1.0),
        ("malformed", 2.0),
    ] {
        assert_eq!(setup.failures(reason).await, n, "{reason}");
    }
    assert!(setup.upstream.requests().is_empty());
    // Proof that the setup accepts the good token.
    assert_eq!(setup.get(&valid, &[]).await.status, 200);
}

#[tokio::test]
async fn the_tenant_header_must_agree_with_the_token_and_is_not_proof_alone() {
    let setup = Setup::start("hs256_secret = \"a-shared-secret-of-at-least-32-bytes\"").await;
    let token = sign(Algorithm::HS256, None, &claims("alice"));
    assert_eq!(
        setup.get(&token, &["X-Tenant-Id: alice"]).await.status,
        200,
        "the same tenant twice is fine"
    );
    setup
        .get(&token, &["X-Tenant-Id: bob"])
        .await
        .assert_refusal(403, "tenant_mismatch");
    let bare = setup
        .proxy
        .send("GET", "/v1/memories", &["X-Tenant-Id: bob"], b"")
        .await;
    bare.assert_refusal(401, "unauthenticated");
    assert_eq!(setup.failures("unverified_tenant_header").await, 1.0);
    let nothing = setup.proxy.send("GET", "/v1/memories", &[], b"").await;
    nothing.assert_refusal(401, "unauthenticated");
    assert_eq!(setup.failures("missing").await, 1.0);
    // A shared route works without any identity.
    let shared = setup.proxy.send("GET", "/v1/shared", &[], b"").await;
    assert_eq!(shared.status, 200);
    assert_eq!(setup.upstream.requests().len(), 2);
}

#[tokio::test]
async fn invalid_credentials_claiming_a_tenant_consume_none_of_its_rate_limit() {
    let setup = Setup::start("hs256_secret = \"a-shared-secret-of-at-least-32-bytes\"").await;
    let forged = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"the attacker's guess").unwrap(),
        None,
        &claims("dave"),
    );
    for _ in 0..5 {
        setup
            .get(&forged, &["X-Tenant-Id: dave"])
            .await
            .assert_refusal(401, "unauthenticated");
    }
    let token = sign(Algorithm::HS256, None, &claims("dave"));
    // dave's bucket holds 2: both are still his.
    for _ in 0..2 {
        assert_eq!(setup.get(&token, &[]).await.status, 200);
    }
    setup
        .get(&token, &[])
        .await
        .assert_refusal(429, "rate_limited");
}

#[tokio::test]
async fn a_tenants_own_upstream_credential_replaces_the_token_in_authorization() {
    let setup = Setup::start("hs256_secret = \"a-shared-secret-of-at-least-32-bytes\"").await;
    let token = sign(Algorithm::HS256, None, &claims("erin"));
    assert_eq!(setup.get(&token, &[]).await.status, 200);
    let seen = setup.upstream.only_request();
    assert_eq!(seen.all("authorization"), ["Bearer erin-upstream-key"]);
    assert!(seen.target.ends_with("user_id=u_erin"));
}

#[tokio::test]
async fn a_nested_claim_by_dotted_path_or_json_pointer_becomes_the_tenant() {
    for (claim, value) in [
        ("org.member", json!({"org": {"member": "carol"}})),
        (
            "/https:~1~1app.test~1uid",
            json!({"https://app.test/uid": 7}),
        ),
    ] {
        let identity =
            format!("hs256_secret = \"a-shared-secret-of-at-least-32-bytes\"\nclaim = {claim:?}\n");
        let setup = Setup::start(&identity).await;
        let mut c = claims("ignored");
        for (k, v) in value.as_object().unwrap() {
            c[k] = v.clone();
        }
        let response = setup.get(&sign(Algorithm::HS256, None, &c), &[]).await;
        assert_eq!(response.status, 200, "{claim}: {response:?}");
        let target = setup.upstream.only_request().target;
        let expected = if claim.starts_with('/') {
            "user_id=u_7"
        } else {
            "user_id=u_carol"
        };
        assert!(target.contains(expected), "{claim}: {target}");
    }
}

/// Polls (bounded) until the token's answer has this status.
async fn until_status(setup: &Setup, token: &str, status: u16) {
    let started = Instant::now();
    loop {
        if setup.get(token, &[]).await.status == status {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the token never got {status} within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A proxy started from a config file, which the watcher follows with its key file.
async fn from_file(dir: &Path, identity: &str) -> Setup {
    let upstream = Upstream::ok().await;
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[reload]\ndebounce = \"50ms\"\npoll = \"1s\"\n{}",
        config(identity).replace("${UPSTREAM}", &upstream.url())
    );
    let path = dir.join("tenantgate.toml");
    std::fs::write(&path, text).unwrap();
    let clock = Arc::new(ManualClock::at(Duration::from_secs(NOW)));
    let services = Services {
        clock: clock.clone(),
        ..Services::default()
    };
    let proxy = Proxy::start_file(&path, services).await;
    Setup {
        proxy,
        upstream,
        clock,
    }
}

#[tokio::test]
async fn a_watched_jwks_file_rotates_keys_and_a_corrupt_one_keeps_the_old_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("jwks.json");
    std::fs::write(&keys, jwks(&[jwk(Algorithm::RS256, "old")])).unwrap();
    let setup = from_file(dir.path(), &file_identity(&keys)).await;
    let old = sign(Algorithm::RS256, Some("old"), &claims("alice"));
    let new = sign(Algorithm::ES256, Some("new"), &claims("alice"));
    assert_eq!(setup.get(&old, &[]).await.status, 200);
    setup
        .get(&new, &[])
        .await
        .assert_refusal(401, "unauthenticated");

    // Rotation, step 1: both keys listed. Step 2: the old one removed.
    common::replace_file(
        &keys,
        &jwks(&[jwk(Algorithm::RS256, "old"), jwk(Algorithm::ES256, "new")]),
    );
    until_status(&setup, &new, 200).await;
    assert_eq!(setup.get(&old, &[]).await.status, 200, "overlap: both work");
    common::replace_file(&keys, &jwks(&[jwk(Algorithm::ES256, "new")]));
    until_status(&setup, &old, 401).await;
    assert_eq!(setup.get(&new, &[]).await.status, 200);

    // A corrupt file is refused whole: the keys in use stay, and it is counted.
    let errors = "tenantgate_config_reloads_total{result=\"error\"}";
    let before = setup.proxy.metric(errors).await;
    common::replace_file(&keys, "{\"keys\": [ {\"kty\": \"RSA\", ");
    setup
        .proxy
        .until_metric_moves(errors, before, PATIENCE)
        .await;
    assert_eq!(setup.get(&new, &[]).await.status, 200, "old keys kept");
    setup
        .get(&old, &[])
        .await
        .assert_refusal(401, "unauthenticated");
}

/// An identity provider: serves a JWKS document that the test can change or take
/// down, and counts the fetches.
struct Provider {
    server: Upstream,
    document: Arc<Mutex<String>>,
    down: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    async fn start(document: String) -> Self {
        let document = Arc::new(Mutex::new(document));
        let down = Arc::new(AtomicBool::new(false));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (d, x, f) = (document.clone(), down.clone(), fetches.clone());
        let server = Upstream::start(move |_| {
            f.fetch_add(1, Ordering::SeqCst);
            if x.load(Ordering::SeqCst) {
                return Reply::Raw(503, vec![], b"down".to_vec());
            }
            let body = d.lock().unwrap().clone().into_bytes();
            Reply::Raw(200, vec![("content-type", "application/json")], body)
        })
        .await;
        Self {
            server,
            document,
            down,
            fetches,
        }
    }

    fn url(&self) -> String {
        format!(
            "{}/realms/app/protocol/openid-connect/certs",
            self.server.url()
        )
    }
}

#[tokio::test]
async fn jwks_url_is_fetched_refetched_for_a_new_kid_at_most_once_per_window_and_kept_through_an_outage(
) {
    let provider = Provider::start(jwks(&[jwk(Algorithm::RS256, "a")])).await;
    let identity = format!(
        "jwks_url = {:?}\njwks_refresh = \"1h\"\njwks_min_refresh = \"1h\"\n",
        provider.url()
    );
    let setup = Setup::start(&identity).await;
    let a = sign(Algorithm::RS256, Some("a"), &claims("alice"));
    until_status(&setup, &a, 200).await;
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1);

    // The provider rotates: a token with the new kid makes the proxy fetch again.
    *provider.document.lock().unwrap() =
        jwks(&[jwk(Algorithm::RS256, "a"), jwk(Algorithm::EdDSA, "b")]);
    let b = sign(Algorithm::EdDSA, Some("b"), &claims("alice"));
    assert_eq!(setup.get(&b, &[]).await.status, 200);
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2);
    // Random kids within the window do not make it fetch again.
    for kid in ["x1", "x2", "x3"] {
        let random = sign(Algorithm::RS256, Some(kid), &claims("alice"));
        setup
            .get(&random, &[])
            .await
            .assert_refusal(401, "unauthenticated");
    }
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(setup.failures("unknown_kid").await, 3.0);
}

#[tokio::test]
async fn jwks_url_keeps_the_last_good_keys_while_the_provider_is_down() {
    let provider = Provider::start(jwks(&[jwk(Algorithm::ES256, "a")])).await;
    let identity = format!(
        "jwks_url = {:?}\njwks_refresh = \"1s\"\njwks_min_refresh = \"1s\"\n",
        provider.url()
    );
    let setup = Setup::start(&identity).await;
    let token = sign(Algorithm::ES256, Some("a"), &claims("alice"));
    until_status(&setup, &token, 200).await;
    let ready = setup.proxy.admin_get("/readyz", &[]).await;
    assert_eq!(ready.status, 200);

    provider.down.store(true, Ordering::SeqCst);
    let started = Instant::now();
    while setup
        .proxy
        .metric("tenantgate_jwks_fetches_total{result=\"error\"}")
        .await
        < 2.0
    {
        assert!(started.elapsed() < PATIENCE, "the outage was never seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        setup.get(&token, &[]).await.status,
        200,
        "last good keys kept"
    );
    assert_eq!(setup.proxy.admin_get("/readyz", &[]).await.status, 200);

    // Back, with key a retired: the token verified (and cached) before is refused
    // once the new set is in.
    *provider.document.lock().unwrap() = jwks(&[jwk(Algorithm::ES256, "b")]);
    provider.down.store(false, Ordering::SeqCst);
    until_status(&setup, &token, 401).await;
    let b = sign(Algorithm::ES256, Some("b"), &claims("alice"));
    assert_eq!(setup.get(&b, &[]).await.status, 200);
}

#[tokio::test]
async fn before_the_first_jwks_fetch_the_proxy_is_not_ready_and_answers_503() {
    let provider = Provider::start(String::new()).await;
    provider.down.store(true, Ordering::SeqCst);
    let identity = format!(
        "jwks_url = {:?}\njwks_refresh = \"1s\"\njwks_min_refresh = \"1s\"\n",
        provider.url()
    );
    let setup = Setup::start(&identity).await;
    let token = sign(Algorithm::RS256, Some("a"), &claims("alice"));
    let response = setup.get(&token, &[]).await;
    response.assert_refusal(503, "identity_unavailable");
    assert_eq!(setup.proxy.admin_get("/readyz", &[]).await.status, 503);

    *provider.document.lock().unwrap() = jwks(&[jwk(Algorithm::RS256, "a")]);
    provider.down.store(false, Ordering::SeqCst);
    until_status(&setup, &token, 200).await;
    assert_eq!(setup.proxy.admin_get("/readyz", &[]).await.status, 200);
}

#[tokio::test]
async fn a_reload_keeps_the_fetched_keys_and_refuses_a_new_provider_it_cannot_reach() {
    let provider = Provider::start(jwks(&[jwk(Algorithm::RS256, "a")])).await;
    let dir = tempfile::tempdir().unwrap();
    let identity = |url: &str, refresh: &str| {
        format!("jwks_url = {url:?}\njwks_refresh = \"{refresh}\"\njwks_min_refresh = \"1s\"\n")
    };
    let setup = from_file(dir.path(), &identity(&provider.url(), "1h")).await;
    let token = sign(Algorithm::RS256, Some("a"), &claims("alice"));
    until_status(&setup, &token, 200).await;
    let path = dir.path().join("tenantgate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let reloads = |result: &str| format!("tenantgate_config_reloads_total{{result=\"{result}\"}}");

    // The provider goes away; a reload that changes only the timings keeps the keys.
    provider.down.store(true, Ordering::SeqCst);
    let retimed = text.replace("jwks_refresh = \"1h\"", "jwks_refresh = \"2h\"");
    assert_ne!(retimed, text);
    let before = setup.proxy.metric(&reloads("success")).await;
    common::replace_file(&path, &retimed);
    setup
        .proxy
        .until_metric_moves(&reloads("success"), before, PATIENCE)
        .await;
    assert_eq!(
        setup.get(&token, &[]).await.status,
        200,
        "keys kept across the reload"
    );
    assert_eq!(setup.proxy.admin_get("/readyz", &[]).await.status, 200);

    // A new provider that cannot be fetched is refused like a bad file.
    let elsewhere = retimed.replace(&provider.url(), "http://127.0.0.1:9/certs");
    let before = setup.proxy.metric(&reloads("error")).await;
    common::replace_file(&path, &elsewhere);
    setup
        .proxy
        .until_metric_moves(&reloads("error"), before, PATIENCE)
        .await;
    assert_eq!(
        setup.get(&token, &[]).await.status,
        200,
        "the old provider's keys serve"
    );
}

#[test]
fn unscoped_main_is_refused_in_a_verified_mode() {
    let text = config("hs256_secret = \"a-shared-secret-of-at-least-32-bytes\"")
        .replace("${UPSTREAM}", "http://127.0.0.1:1")
        + "[tenant]\nunscoped = \"main\"\n";
    let errors = tenantgate::config::load_str(
        &text,
        "t.toml",
        &tenantgate::config::Overrides::default(),
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.contains(
            "unscoped = \"main\" would let callers without a credential into tenant routes"
        ),
        "{errors}"
    );
}
