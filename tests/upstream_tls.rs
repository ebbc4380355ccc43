//! https upstreams (SPEC 5): certificates made here with rcgen, a real rustls server
//! on an ephemeral port that counts the requests that reached it. A private CA from
//! `ca_file`; an upstream that does not verify (unknown CA, wrong name) is 502 with
//! nothing sent; mTLS with and without the client certificate configured; a watched
//! `ca_file` that is fixed takes effect for new connections. A handshake that stalls
//! is a connect failure: an idempotent request is sent again on a new connection with
//! its whole body (the failed attempt never read it), a POST is not.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Proxy, PATIENCE};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tenantgate::app::Services;

use common::pki::{ca, leaf, Ca};

/// What the https upstream saw: requests that got through, and per handshake the
/// name the client asked for and whether it showed a certificate.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    handshakes: Mutex<Vec<(Option<String>, bool)>>,
    /// Each request's method and whole body, as the upstream read it.
    bodies: Mutex<Vec<(String, Vec<u8>)>>,
    /// Connections accepted and then never answered (no handshake).
    stalled: AtomicUsize,
}

/// A rustls server answering 200 to every request; with `client_ca`, it demands a
/// client certificate signed by it.
async fn https_upstream(cert: &(String, String), client_ca: Option<&Ca>) -> (u16, Arc<Seen>) {
    https_upstream_stalling(cert, client_ca, 0).await
}

/// As `https_upstream`, but the first `stall_first` connections are accepted and left
/// silent, so the client's handshake times out: a connect failure after the TCP
/// connect itself succeeded.
async fn https_upstream_stalling(
    cert: &(String, String),
    client_ca: Option<&Ca>,
    stall_first: usize,
) -> (u16, Arc<Seen>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.0.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let recorder = seen.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            if recorder.stalled.load(Ordering::SeqCst) < stall_first {
                recorder.stalled.fetch_add(1, Ordering::SeqCst);
                held.push(tcp);
                continue;
            }
            let (acceptor, seen) = (acceptor.clone(), recorder.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let conn = tls.get_ref().1;
                let shake = (
                    conn.server_name().map(str::to_owned),
                    conn.peer_certificates().is_some(),
                );
                seen.handshakes.lock().unwrap().push(shake);
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        use http_body_util::BodyExt;
                        let method = req.method().to_string();
                        let body = req.into_body().collect().await?.to_bytes().to_vec();
                        seen.bodies.lock().unwrap().push((method, body));
                        seen.requests.fetch_add(1, Ordering::SeqCst);
                        let body = Full::new(bytes::Bytes::from_static(b"{\"ok\":true}"));
                        Ok::<_, hyper::Error>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(body)
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, seen)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn config(port: u16, tls: &str) -> String {
    format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [reload]\ndebounce = \"50ms\"\npoll = \"1s\"\n\
         [upstream]\nurl = \"https://localhost:{port}\"\npool_idle_timeout = \"1s\"\n{tls}\n\
         [[route]]\nmatch = \"GET /v1/memories\"\nscope = \"tenant\"\n"
    )
}

async fn proxy(dir: &Path, text: &str) -> Proxy {
    let path = dir.join("tenantgate.toml");
    std::fs::write(&path, text).unwrap();
    Proxy::start_file(&path, Services::default()).await
}

async fn get(proxy: &Proxy) -> common::RawResponse {
    proxy
        .send("GET", "/v1/memories", &["X-Tenant-Id: alice"], b"")
        .await
}

#[tokio::test]
async fn an_upstream_signed_by_the_ca_file_is_reached_with_sni_and_others_are_502() {
    let private = ca("private CA");
    let (port, seen) = https_upstream(&leaf(&private, &["localhost"]), None).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &private.pem());
    let trusted = proxy(dir.path(), &config(port, &format!("ca_file = {ca_file:?}"))).await;
    let response = get(&trusted).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
    let shake = seen.handshakes.lock().unwrap()[0].clone();
    assert_eq!(
        shake.0.as_deref(),
        Some("localhost"),
        "SNI from the URL host"
    );

    // Without the private CA (webpki roots only): refused before anything is sent.
    let other = tempfile::tempdir().unwrap();
    let untrusted = proxy(other.path(), &config(port, "")).await;
    get(&untrusted)
        .await
        .assert_refusal(502, "upstream_unavailable");
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "nothing reached it"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_502_and_nothing_is_sent() {
    let private = ca("private CA");
    let (port, seen) = https_upstream(&leaf(&private, &["memory.other.test"]), None).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &private.pem());
    let p = proxy(dir.path(), &config(port, &format!("ca_file = {ca_file:?}"))).await;
    get(&p).await.assert_refusal(502, "upstream_unavailable");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn mtls_to_the_upstream_works_with_the_client_certificate_and_fails_without() {
    let private = ca("private CA");
    let clients = ca("client CA");
    let (port, seen) = https_upstream(&leaf(&private, &["localhost"]), Some(&clients)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &private.pem());
    let (cert, key) = leaf(&clients, &["tenantgate"]);
    let cert_file = write(dir.path(), "client.crt", &cert);
    let key_file = write(dir.path(), "client.key", &key);
    let with = proxy(
        dir.path(),
        &config(
            port,
            &format!(
                "ca_file = {ca_file:?}\nclient_cert = {cert_file:?}\nclient_key = {key_file:?}"
            ),
        ),
    )
    .await;
    assert_eq!(get(&with).await.status, 200);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
    assert!(
        seen.handshakes.lock().unwrap()[0].1,
        "a client certificate was shown"
    );

    let other = tempfile::tempdir().unwrap();
    let ca_only = write(other.path(), "ca.pem", &private.pem());
    let without = proxy(
        other.path(),
        &config(port, &format!("ca_file = {ca_only:?}")),
    )
    .await;
    get(&without)
        .await
        .assert_refusal(502, "upstream_unavailable");
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "nothing reached it"
    );
}

#[tokio::test]
async fn a_fixed_ca_file_is_picked_up_for_new_connections() {
    let private = ca("private CA");
    let (port, seen) = https_upstream(&leaf(&private, &["localhost"]), None).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = ca("some other CA");
    let ca_file = write(dir.path(), "ca.pem", &wrong.pem());
    let p = proxy(dir.path(), &config(port, &format!("ca_file = {ca_file:?}"))).await;
    get(&p).await.assert_refusal(502, "upstream_unavailable");
    common::replace_file(Path::new(&ca_file), &private.pem());
    let started = Instant::now();
    while get(&p).await.status != 200 {
        assert!(
            started.elapsed() < PATIENCE,
            "the new ca_file was never used"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn tls_files_are_refused_for_an_http_upstream_and_a_lone_client_cert_is_refused() {
    let load = |upstream: &str| {
        let text =
            format!("[upstream]\n{upstream}\n[[route]]\nmatch = \"GET /x\"\nscope = \"shared\"\n");
        tenantgate::config::load_str(&text, "t.toml", &Default::default(), &|_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(load("url = \"http://127.0.0.1:1\"\nca_file = \"/x\"")
        .contains("ca_file is for https:// upstreams"));
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "c.pem", &ca("x").pem());
    assert!(load(&format!(
        "url = \"https://127.0.0.1:1\"\nclient_cert = {cert:?}"
    ))
    .contains("mTLS needs both client_cert and client_key"));
    assert!(
        load("url = \"https://127.0.0.1:1\"\nca_file = \"/nonexistent/ca.pem\"")
            .contains("cannot read /nonexistent/ca.pem")
    );
    assert_eq!(
        load(
            "url = \"https://127.0.0.1:1\"\nca_file = \"\"\nclient_cert = \"\"\nclient_key = \"\""
        ),
        "",
        "SPEC 5's empty strings mean unset"
    );
}

#[tokio::test]
async fn an_upstream_that_stalls_the_handshake_is_a_connect_failure_within_connect_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        // Accepts and never says a word.
        while let Ok((tcp, _)) = listener.accept().await {
            keep.lock().unwrap().push(tcp);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let text = config(port, "connect_timeout = \"300ms\"\ntimeout = \"20s\"");
    let p = proxy(dir.path(), &text).await;
    let started = Instant::now();
    get(&p).await.assert_refusal(502, "upstream_unavailable");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "refused after {took:?}");
    assert_eq!(
        held.lock().unwrap().len(),
        2,
        "one retry, as for any connect failure"
    );
}

#[tokio::test]
async fn an_idempotent_request_whose_first_connect_fails_is_sent_again_with_its_whole_body() {
    let private = ca("private CA");
    let (port, seen) = https_upstream_stalling(&leaf(&private, &["localhost"]), None, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &private.pem());
    // Both methods routed, so only the retry rule tells them apart.
    let files = |port| {
        config(
            port,
            &format!("ca_file = {ca_file:?}\nconnect_timeout = \"300ms\""),
        ) + "[[route]]\nmatch = \"PUT /v1/files\"\nscope = \"tenant\"\n\
             [[route]]\nmatch = \"POST /v1/files\"\nscope = \"tenant\"\n"
    };
    let p = proxy(dir.path(), &files(port)).await;
    // Larger than one read, so the body streams from the client in several frames.
    let body: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let put = p
        .send(
            "PUT",
            "/v1/files",
            &[
                "X-Tenant-Id: alice",
                "Content-Type: application/octet-stream",
            ],
            &body,
        )
        .await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(
        seen.stalled.load(Ordering::SeqCst),
        1,
        "the first connect failed"
    );
    {
        let bodies = seen.bodies.lock().unwrap();
        assert_eq!(bodies.len(), 1, "sent once, on the second connection");
        assert_eq!(bodies[0].0, "PUT");
        assert!(
            bodies[0].1 == body,
            "the whole body, unread by the failed attempt: {} bytes",
            bodies[0].1.len()
        );
    }

    // A POST is not retried: the next connect stalls and it is 502, nothing sent.
    let (port, seen) = https_upstream_stalling(&leaf(&private, &["localhost"]), None, 1).await;
    let other = tempfile::tempdir().unwrap();
    let p = proxy(other.path(), &files(port)).await;
    p.send("POST", "/v1/files", &["X-Tenant-Id: alice"], &body)
        .await
        .assert_refusal(502, "upstream_unavailable");
    assert_eq!(seen.stalled.load(Ordering::SeqCst), 1);
    assert!(
        seen.bodies.lock().unwrap().is_empty(),
        "no second attempt for a POST"
    );
}
