//! The recording upstream: a real HTTP server on an ephemeral loopback port that keeps
//! every request it receives ([`Seen`]) and answers as the test's behaviour says ([`Reply`]).

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
use tokio::net::TcpListener;
use tokio::sync::Notify;

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
    /// As `Gated`, as `application/json`.
    GatedJson(&'static [u8], &'static [u8]),
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

impl Reply {
    /// This status and a JSON body.
    pub fn json(status: u16, body: String) -> Self {
        Reply::Raw(
            status,
            vec![("content-type", "application/json")],
            body.into_bytes(),
        )
    }
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
        Reply::GatedJson(first, rest) => gated(gate, first, rest, Some("application/json")),
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
