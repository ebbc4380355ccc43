//! Test harness: a real recording upstream on an ephemeral port, tenantgate in-process
//! on port 0, and a raw-socket HTTP/1.1 client that sends bytes exactly as written (so
//! path and header tricks reach the proxy unmodified). Everything binds 127.0.0.1.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tenantgate::app::Services;
use tenantgate::config::{self, Overrides};
use tenantgate::server::{self, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Upper bound for any single wait in a test: nothing here should take this long.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, exactly as they arrived.
    pub target: String,
    /// Header names (lower-case) and values, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// How the upstream answers.
#[derive(Clone)]
pub enum Reply {
    /// 200 with a small JSON body.
    Ok,
    /// This status and JSON body, plus these headers.
    With(u16, &'static str, Vec<(&'static str, &'static str)>),
    /// Reads the request, then never answers.
    Never,
    /// Sends headers and part of a declared body, then stalls.
    StallMidBody,
    /// Answers 200 after this delay.
    After(Duration),
    /// Streams `first`, waits for the test to open the gate, then sends `rest`.
    Gated(&'static [u8], &'static [u8]),
    /// As `Gated`, as a `text/event-stream`.
    Sse(&'static [u8], &'static [u8]),
    /// Exactly this status, these headers and these body bytes.
    Raw(u16, Vec<(&'static str, &'static str)>, Vec<u8>),
}

type Behaviour = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Opened by the test to release a `Reply::Gated` body.
    pub gate: Arc<Notify>,
    /// Notified when the first byte of a request body arrives.
    pub body_started: Arc<Notify>,
    /// Counts accepted TCP connections.
    pub connections: Arc<Mutex<usize>>,
}

impl Upstream {
    pub async fn start(behaviour: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Self {
            addr,
            seen: Arc::default(),
            gate: Arc::new(Notify::new()),
            body_started: Arc::new(Notify::new()),
            connections: Arc::default(),
        };
        let behaviour: Behaviour = Arc::new(behaviour);
        let (seen, gate, started, connections) = (
            upstream.seen.clone(),
            upstream.gate.clone(),
            upstream.body_started.clone(),
            upstream.connections.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                *connections.lock().unwrap() += 1;
                let (seen, gate, started, behaviour) = (
                    seen.clone(),
                    gate.clone(),
                    started.clone(),
                    behaviour.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (seen, gate, started, behaviour) = (
                            seen.clone(),
                            gate.clone(),
                            started.clone(),
                            behaviour.clone(),
                        );
                        async move {
                            Ok::<_, Infallible>(
                                answer(req, &seen, gate, &started, &behaviour).await,
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        upstream
    }

    pub async fn ok() -> Self {
        Self::start(|_| Reply::Ok).await
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn only_request(&self) -> Seen {
        let seen = self.requests();
        assert_eq!(
            seen.len(),
            1,
            "expected exactly one upstream request, got {seen:#?}"
        );
        seen.into_iter().next().unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn gated(
    gate: Arc<Notify>,
    first: &'static [u8],
    rest: &'static [u8],
    content_type: Option<&'static str>,
) -> Response<TestBody> {
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
    tokio::spawn(async move {
        let _ = tx.send(Frame::data(Bytes::from_static(first))).await;
        gate.notified().await;
        let _ = tx.send(Frame::data(Bytes::from_static(rest))).await;
    });
    let mut response = Response::builder();
    if let Some(content_type) = content_type {
        response = response.header("content-type", content_type);
    }
    response.body(body.boxed()).unwrap()
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(
    req: Request<Incoming>,
    seen: &Mutex<Vec<Seen>>,
    gate: Arc<Notify>,
    started: &Notify,
    behaviour: &Behaviour,
) -> Response<TestBody> {
    let (parts, mut body) = req.into_parts();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            if bytes.is_empty() && !data.is_empty() {
                started.notify_one();
            }
            bytes.extend_from_slice(data);
        }
    }
    let record = Seen {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: bytes,
    };
    let reply = behaviour(&record);
    seen.lock().unwrap().push(record);
    let json = |status: u16, body: &'static str| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
            .unwrap()
    };
    match reply {
        Reply::Ok => json(200, r#"{"ok":true}"#),
        Reply::With(status, body, headers) => {
            let mut response = json(status, body);
            for (n, v) in headers {
                response.headers_mut().append(n, v.parse().unwrap());
            }
            response
        }
        Reply::Never => std::future::pending().await,
        Reply::After(delay) => {
            tokio::time::sleep(delay).await;
            json(200, r#"{"ok":"late"}"#)
        }
        Reply::StallMidBody => {
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
            tokio::spawn(async move {
                let _ = tx
                    .send(Frame::data(Bytes::from_static(b"{\"partial\":")))
                    .await;
                std::future::pending::<()>().await;
                drop(tx);
            });
            Response::builder()
                .header("content-length", "100")
                .body(body.boxed())
                .unwrap()
        }
        Reply::Gated(first, rest) => gated(gate, first, rest, None),
        Reply::Sse(first, rest) => gated(gate, first, rest, Some("text/event-stream")),
        Reply::Raw(status, headers, body) => {
            let mut response = Response::builder().status(status);
            for (n, v) in headers {
                response = response.header(n, v);
            }
            response.body(Full::new(Bytes::from(body)).boxed()).unwrap()
        }
    }
}

/// tenantgate running in-process on 127.0.0.1:0, both listeners.
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub running: Option<Running>,
}

impl Proxy {
    /// Starts tenantgate with this config text (listen addresses are overridden to
    /// ephemeral loopback ports). `${UPSTREAM}` in the text is the upstream's URL.
    pub async fn start(config_text: &str, upstream: &Upstream) -> Self {
        let text = config_text.replace("${UPSTREAM}", &upstream.url());
        Self::start_raw(&text).await
    }

    /// As `start`, with a chosen clock and usage store.
    pub async fn start_with(config_text: &str, upstream: &Upstream, services: Services) -> Self {
        let text = config_text.replace("${UPSTREAM}", &upstream.url());
        Self::launch(&text, services).await
    }

    pub async fn start_raw(config_text: &str) -> Self {
        Self::launch(config_text, Services::default()).await
    }

    /// Starts tenantgate from a config file, which it then watches and reloads. The
    /// file names its own (ephemeral) listen addresses: nothing overrides them.
    pub async fn start_file(path: &std::path::Path, services: Services) -> Self {
        let overrides = Overrides::default();
        let snapshot = config::load_file(path, &overrides, &|_| None)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
        let source = Some((path.to_owned(), overrides));
        let running = server::start_with(snapshot, source, services)
            .await
            .unwrap();
        Self {
            addr: running.proxy_addr,
            admin: running.admin_addr,
            running: Some(running),
        }
    }

    async fn launch(config_text: &str, services: Services) -> Self {
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin_listen: Some("127.0.0.1:0".parse().unwrap()),
            upstream: None,
        };
        let env = |name: &str| match name {
            "TEST_SECRET" => Some("from-env".to_owned()),
            _ => None,
        };
        let snapshot = config::load_str(config_text, "test.toml", &overrides, &env)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
        let running = server::start_with(snapshot, None, services).await.unwrap();
        Self {
            addr: running.proxy_addr,
            admin: running.admin_addr,
            running: Some(running),
        }
    }

    /// Sends raw bytes to the proxy and reads the response (the request should say
    /// `Connection: close`).
    pub async fn raw(&self, request: &[u8]) -> RawResponse {
        raw(self.addr, request).await
    }

    /// A well-formed request with these extra header lines.
    pub async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[&str],
        body: &[u8],
    ) -> RawResponse {
        raw(self.addr, &request_bytes(method, target, headers, body)).await
    }

    pub async fn send_admin(&self, method: &str, path: &str, headers: &[&str]) -> RawResponse {
        raw(self.admin, &request_bytes(method, path, headers, b"")).await
    }

    pub async fn admin_get(&self, path: &str, headers: &[&str]) -> RawResponse {
        raw(self.admin, &request_bytes("GET", path, headers, b"")).await
    }
}

pub fn request_bytes(method: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("{method} {target} HTTP/1.1\r\nHost: tenantgate.test\r\nConnection: close\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// False when the connection ended before the declared body was complete.
    pub complete: bool,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a SPEC 7 refusal: status, JSON content type, `{"error":{"code","message"}}`.
    pub fn assert_refusal(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status for {code}: {self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.len() > 10, "a refusal explains itself: {body}");
    }
}

pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    tokio::time::timeout(PATIENCE, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        read_response(&mut stream).await
    })
    .await
    .expect("the proxy answered within the test's patience")
}

pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data).await;
    parse_response(&data)
}

pub fn parse_response(mut data: &[u8]) -> RawResponse {
    // Interim 1xx responses (100 Continue) precede the real one.
    while data.starts_with(b"HTTP/1.1 1") {
        let end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("complete interim head");
        data = &data[end + 4..];
    }
    let split = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no complete response head in {:?}",
                String::from_utf8_lossy(data)
            )
        });
    let head = String::from_utf8_lossy(&data[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &data[split + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let (body, complete) = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        (rest[..rest.len().min(len)].to_vec(), rest.len() >= len)
    } else {
        (rest.to_vec(), true)
    };
    RawResponse {
        status,
        headers,
        body,
        complete,
    }
}

fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
        else {
            return (body, false);
        };
        rest = &rest[eol + 2..];
        if size == 0 {
            return (body, true);
        }
        if rest.len() < size + 2 {
            body.extend_from_slice(&rest[..rest.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Sends `request`, reads until `first` has arrived (proving the proxy streamed it while
/// the upstream still held the rest), opens the upstream's gate and reads to the end.
pub async fn read_streamed(
    addr: SocketAddr,
    request: &[u8],
    first: &str,
    upstream: &Upstream,
) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&received).contains(first) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before {first:?} arrived");
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first part arrived while the upstream was still holding the rest");
    upstream.gate.notify_one();
    let mut tail = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut tail))
        .await
        .expect("the rest arrived")
        .unwrap();
    received.extend_from_slice(&tail);
    parse_response(&received)
}

/// A `tenantgate run` child process, ended by the test by pid.
pub struct Binary {
    pub child: tokio::process::Child,
    pub pid: String,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// Everything it printed on stdout (the audit log), collected as it comes.
    pub stdout: Arc<Mutex<Vec<u8>>>,
}

impl Binary {
    /// Starts `tenantgate run --config PATH` on ephemeral ports and waits until it
    /// serves.
    pub async fn run(config: &std::path::Path) -> Self {
        Self::launch(config, false).await
    }

    /// As `run`, naming the config in `TENANTGATE_CONFIG` instead of `--config`.
    pub async fn run_from_env(config: &std::path::Path) -> Self {
        Self::launch(config, true).await
    }

    async fn launch(config: &std::path::Path, from_env: bool) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"));
        command.args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]);
        if from_env {
            command.env("TENANTGATE_CONFIG", config);
        } else {
            command
                .arg("--config")
                .arg(config)
                .env_remove("TENANTGATE_CONFIG");
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap().to_string();
        let stdout: Arc<Mutex<Vec<u8>>> = Arc::default();
        let (mut out, collected) = (child.stdout.take().unwrap(), stdout.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                collected.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let (proxy, admin) = tokio::time::timeout(PATIENCE, async {
            loop {
                let line = stderr
                    .next_line()
                    .await
                    .unwrap()
                    .expect("tenantgate serves");
                let field = |name: &str| {
                    let at = line.find(name)? + name.len();
                    line[at..]
                        .split_whitespace()
                        .next()?
                        .parse::<SocketAddr>()
                        .ok()
                };
                if let (Some(p), Some(a)) = (field("proxy_addr="), field("admin_addr=")) {
                    return (p, a);
                }
            }
        })
        .await
        .unwrap();
        // Keep draining stderr so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
        Self {
            child,
            pid,
            proxy,
            admin,
            stdout,
        }
    }

    /// Sends a signal (`-HUP`, ...) to this child, by pid.
    pub async fn signal(&self, signal: &str) {
        let sent = tokio::process::Command::new("kill")
            .args([signal, &self.pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
    }

    /// Sends a signal (`-TERM`, `-KILL`, ...) and waits for the child to exit.
    pub async fn stop(mut self, signal: &str) -> Option<i32> {
        self.signal(signal).await;
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap()
            .unwrap()
            .code()
    }
}
