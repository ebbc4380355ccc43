//! `[listen.tls]` (SPEC 5): an HTTPS client (rustls) through tenantgate to a plain
//! upstream over HTTP/1.1 and HTTP/2 by ALPN; a certificate swap picked up for new
//! connections within a second while an open keep-alive connection keeps working; a
//! corrupt new certificate keeps the old one; a client that stalls mid-handshake is
//! cut; client certificates against `client_ca`. Certificates are made here (rcgen).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Proxy, Upstream, PATIENCE};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tenantgate::app::Services;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::pki::{ca, leaf, Ca};

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

struct Setup {
    proxy: Proxy,
    upstream: Upstream,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start(server: &(String, String), client_ca: Option<&Ca>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), &server.0).unwrap();
        std::fs::write(dir.path().join("tls.key"), &server.1).unwrap();
        let mut tls = format!(
            "cert = {:?}\nkey = {:?}\n",
            dir.path().join("tls.crt").display().to_string(),
            dir.path().join("tls.key").display().to_string()
        );
        if let Some(ca) = client_ca {
            std::fs::write(dir.path().join("clients.pem"), ca.pem()).unwrap();
            let path = dir.path().join("clients.pem").display().to_string();
            tls.push_str(&format!("client_ca = {path:?}\n"));
        }
        let upstream = Upstream::ok().await;
        let text = format!(
            "[listen]\naddr = \"127.0.0.1:0\"\nheader_read_timeout = \"500ms\"\n[listen.tls]\n{tls}\
             [admin]\naddr = \"127.0.0.1:0\"\n[reload]\ndebounce = \"50ms\"\npoll = \"1s\"\n\
             [upstream]\nurl = \"{}\"\n[[route]]\nmatch = \"GET /v1/memories\"\nscope = \"tenant\"\n",
            upstream.url()
        );
        std::fs::write(dir.path().join("tenantgate.toml"), text).unwrap();
        let proxy =
            Proxy::start_file(&dir.path().join("tenantgate.toml"), Services::default()).await;
        Self {
            proxy,
            upstream,
            dir,
        }
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(
    addr: SocketAddr,
    ca: &Ca,
    alpn: &[&[u8]],
    client: Option<&(String, String)>,
) -> std::io::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

fn request() -> http::Request<Empty<Bytes>> {
    http::Request::get("https://localhost/v1/memories")
        .header("x-tenant-id", "alice")
        .body(Empty::new())
        .unwrap()
}

type H1 = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn http1(tls: Tls) -> H1 {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn status_h1(sender: &mut H1) -> Result<u16, hyper::Error> {
    let mut req = request();
    *req.uri_mut() = "/v1/memories".parse().unwrap();
    req.headers_mut()
        .insert("host", http::HeaderValue::from_static("localhost"));
    let response = sender.send_request(req).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

fn presented(tls: &Tls) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn an_https_client_reaches_a_plain_upstream_over_http1_and_h2_by_alpn() {
    let ca = ca("test CA");
    let setup = Setup::start(&leaf(&ca, &["localhost"]), None).await;
    let tls = connect(setup.proxy.addr, &ca, &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut h1 = http1(tls).await;
    assert_eq!(status_h1(&mut h1).await.unwrap(), 200);

    let tls = connect(setup.proxy.addr, &ca, &[b"h2", b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = h2.send_request(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let seen = setup.upstream.requests();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.header("x-forwarded-proto") == Some("https")),
        "{seen:?}"
    );

    // Plain HTTP on the TLS port is not served.
    let mut plain = TcpStream::connect(setup.proxy.addr).await.unwrap();
    plain
        .write_all(b"GET /v1/memories HTTP/1.1\r\nHost: x\r\nX-Tenant-Id: alice\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(setup.upstream.requests().len(), 2);
}

#[tokio::test]
async fn a_new_certificate_serves_new_connections_while_an_open_one_keeps_working() {
    let ca = ca("test CA");
    let first = leaf(&ca, &["localhost"]);
    let setup = Setup::start(&first, None).await;
    let tls = connect(setup.proxy.addr, &ca, &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(presented(&tls), der(&first.0));
    let mut open = http1(tls).await;
    assert_eq!(status_h1(&mut open).await.unwrap(), 200);

    let second = leaf(&ca, &["localhost"]);
    // Key first, then certificate: in between the pair does not match and that reload
    // is refused; the certificate's arrival completes it.
    common::replace_file(&setup.dir.path().join("tls.key"), &second.1);
    common::replace_file(&setup.dir.path().join("tls.crt"), &second.0);
    let started = Instant::now();
    loop {
        let tls = connect(setup.proxy.addr, &ca, &[b"http/1.1"], None)
            .await
            .unwrap();
        if presented(&tls) == der(&second.0) {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "new certificate after {took:?}"
    );
    eprintln!("new certificate served after {took:?}");
    assert_eq!(
        status_h1(&mut open).await.unwrap(),
        200,
        "the connection opened before the swap still works"
    );

    // A corrupt certificate is refused whole; the one in use stays.
    let errors = "tenantgate_config_reloads_total{result=\"error\"}";
    let before = setup.proxy.metric(errors).await;
    common::replace_file(
        &setup.dir.path().join("tls.crt"),
        "-----BEGIN CERTIFICATE-----\nnope\n",
    );
    setup
        .proxy
        .until_metric_moves(errors, before, PATIENCE)
        .await;
    let tls = connect(setup.proxy.addr, &ca, &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(presented(&tls), der(&second.0));

    // A config without [listen.tls] would turn TLS off: refused whole, TLS kept.
    common::replace_file(&setup.dir.path().join("tls.crt"), &second.0);
    let config = setup.dir.path().join("tenantgate.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let (start, end) = (
        text.find("[listen.tls]").unwrap(),
        text.find("[admin]").unwrap(),
    );
    let plain = format!("{}{}", &text[..start], &text[end..]);
    let before = setup.proxy.metric(errors).await;
    common::replace_file(&config, &plain);
    setup
        .proxy
        .until_metric_moves(errors, before, PATIENCE)
        .await;
    let tls = connect(setup.proxy.addr, &ca, &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(status_h1(&mut http1(tls).await).await.unwrap(), 200);
}

#[tokio::test]
async fn a_client_that_stalls_mid_handshake_is_cut_at_header_read_timeout() {
    let ca = ca("test CA");
    let setup = Setup::start(&leaf(&ca, &["localhost"]), None).await;
    let mut stalled = TcpStream::connect(setup.proxy.addr).await.unwrap();
    // A TLS record header announcing a ClientHello that never comes.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, stalled.read(&mut buf)).await;
    let took = started.elapsed();
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(
        took >= Duration::from_millis(400),
        "cut after {took:?}, before the timeout"
    );
    // Meanwhile the listener serves others.
    let tls = connect(setup.proxy.addr, &ca, &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(status_h1(&mut http1(tls).await).await.unwrap(), 200);
}

#[tokio::test]
async fn client_certificates_are_required_against_client_ca() {
    let server_ca = ca("test CA");
    let clients = ca("client CA");
    let setup = Setup::start(&leaf(&server_ca, &["localhost"]), Some(&clients)).await;
    let app = leaf(&clients, &["app"]);
    let tls = connect(setup.proxy.addr, &server_ca, &[b"http/1.1"], Some(&app))
        .await
        .unwrap();
    assert_eq!(status_h1(&mut http1(tls).await).await.unwrap(), 200);

    // Without one (TLS 1.3 reports it after the client's side of the handshake).
    let refused = match connect(setup.proxy.addr, &server_ca, &[b"http/1.1"], None).await {
        Err(_) => true,
        Ok(tls) => status_h1(&mut http1(tls).await).await.is_err(),
    };
    assert!(refused);
    let stranger = leaf(&ca("another CA"), &["app"]);
    let refused = match connect(
        setup.proxy.addr,
        &server_ca,
        &[b"http/1.1"],
        Some(&stranger),
    )
    .await
    {
        Err(_) => true,
        Ok(tls) => status_h1(&mut http1(tls).await).await.is_err(),
    };
    assert!(refused);
    assert_eq!(setup.upstream.requests().len(), 1);
}

#[test]
fn header_mode_on_a_public_tls_listener_needs_trust_network_unless_clients_show_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("test CA");
    let (cert, key) = leaf(&ca, &["localhost"]);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key, clients) = (
        write("c.pem", &cert),
        write("k.pem", &key),
        write("ca.pem", &ca.pem()),
    );
    let load = |extra: &str| {
        let text = format!(
            "[listen]\naddr = \"0.0.0.0:8443\"\n[listen.tls]\ncert = {cert:?}\nkey = {key:?}\n{extra}\
             [upstream]\nurl = \"http://127.0.0.1:1\"\n[[route]]\nmatch = \"GET /x\"\nscope = \"shared\"\n"
        );
        tenantgate::config::load_str(&text, "t.toml", &Default::default(), &|_| None)
            .err()
            .map(|e| e.to_string())
    };
    assert!(load("").unwrap().contains("header mode trusts X-Tenant-Id"));
    assert_eq!(load(&format!("client_ca = {clients:?}\n")), None);
    let _ = Path::new(&cert);
}

#[tokio::test]
async fn the_admin_listener_takes_its_own_tls() {
    let ca = ca("test CA");
    let (cert, key) = leaf(&ca, &["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key) = (path("admin.crt", &cert), path("admin.key", &key));
    let upstream = Upstream::ok().await;
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[admin.tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [upstream]\nurl = \"{}\"\n[[route]]\nmatch = \"GET /v1/memories\"\nscope = \"tenant\"\n",
        upstream.url()
    );
    let config = path("tenantgate.toml", &text);
    let proxy = Proxy::start_file(Path::new(&config), Services::default()).await;
    let tls = connect(proxy.admin, &ca, &[b"http/1.1"], None)
        .await
        .unwrap();
    let mut admin = http1(tls).await;
    let mut req = http::Request::get("/healthz")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    *req.uri_mut() = "/healthz".parse().unwrap();
    let response = admin.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    // The proxy listener stays plain HTTP.
    let plain = proxy
        .send("GET", "/v1/memories", &["X-Tenant-Id: alice"], b"")
        .await;
    assert_eq!(plain.status, 200);
}
