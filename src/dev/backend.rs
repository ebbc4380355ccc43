//! The playground's memory backend: in memory, and deliberately unsafe the way real
//! single-tenant backends are. Memories live under a session id and carry a user id
//! that nobody checks; session names collide across users; a search without a session
//! searches everyone; one endpoint lists every session, another the newest memories of
//! all users; delete-all and reset wipe everything. tenantgate in front of it is what
//! makes it safe.
//!
//! | call | answers |
//! | --- | --- |
//! | `POST /v1/sessions/{sid}/memories` `{"text", "user_id"?}` | 201, the memory, `Location` naming it |
//! | `GET /v1/sessions/{sid}/memories` | `{"memories": [...]}` of that session |
//! | `GET /v1/sessions` | `{"sessions": [{"id", "memories"}]}`, every user's |
//! | `POST /v1/search` `{"query", "session_id"?, "user_id"?}` | `{"results": [...]}`; no filter = everyone |
//! | `GET /v1/memories/recent` | `{"memories": [...]}`, the newest of all users |
//! | `DELETE /v1/memories`, `POST /v1/reset` | everything deleted |
//! | `GET /v1/health` | `{"status": "ok"}` |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const MAX_BODY: usize = 1 << 20;
const RECENT: usize = 10;

#[derive(Debug, Clone, Serialize)]
struct Memory {
    id: String,
    session_id: String,
    user_id: Option<String>,
    text: String,
}

#[derive(Default)]
struct Store {
    memories: Vec<Memory>,
    created: u64,
}

#[derive(Deserialize)]
struct NewMemory {
    text: String,
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct Search {
    query: String,
    session_id: Option<String>,
    user_id: Option<String>,
}

/// A running backend; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts the backend on a free port of 127.0.0.1.
pub async fn start() -> std::io::Result<Backend> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let store = Arc::new(Mutex::new(Store::default()));
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            let service = service_fn(move |request| {
                let store = store.clone();
                async move { Ok::<_, Infallible>(answer(&store, request).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(Backend { addr, task })
}

type Reply = Response<Full<Bytes>>;

async fn answer(store: &Mutex<Store>, request: Request<Incoming>) -> Reply {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": "too large"})),
    };
    let segments: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .skip(1)
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
    match (&parts.method, segments.as_slice()) {
        (&Method::POST, ["v1", "sessions", session, "memories"]) => {
            match serde_json::from_slice::<NewMemory>(&body) {
                Ok(new) => store.add(session, new),
                Err(e) => bad_request(e),
            }
        }
        (&Method::GET, ["v1", "sessions", session, "memories"]) => {
            let memories = store.matching(|m| m.session_id == *session);
            reply(StatusCode::OK, json!({ "memories": memories }))
        }
        (&Method::GET, ["v1", "sessions"]) => reply(StatusCode::OK, store.sessions()),
        (&Method::POST, ["v1", "search"]) => match serde_json::from_slice::<Search>(&body) {
            Ok(search) => {
                let results = store.search(&search);
                reply(StatusCode::OK, json!({ "results": results }))
            }
            Err(e) => bad_request(e),
        },
        (&Method::GET, ["v1", "memories", "recent"]) => {
            let start = store.memories.len().saturating_sub(RECENT);
            let recent = &store.memories[start..];
            reply(StatusCode::OK, json!({ "memories": recent }))
        }
        (&Method::DELETE, ["v1", "memories"]) | (&Method::POST, ["v1", "reset"]) => {
            let deleted = store.memories.len();
            *store = Store::default();
            reply(StatusCode::OK, json!({ "deleted": deleted }))
        }
        (&Method::GET, ["v1", "health"]) => reply(StatusCode::OK, json!({"status": "ok"})),
        _ => reply(StatusCode::NOT_FOUND, json!({"error": "no such endpoint"})),
    }
}

impl Store {
    fn add(&mut self, session: &str, new: NewMemory) -> Reply {
        self.created += 1;
        let memory = Memory {
            id: format!("mem_{}", self.created),
            session_id: session.to_owned(),
            user_id: new.user_id,
            text: new.text,
        };
        let location = format!(
            "/v1/sessions/{}/memories/{}",
            utf8_percent_encode(session, NON_ALPHANUMERIC),
            memory.id
        );
        let mut response = reply(StatusCode::CREATED, json!(memory));
        if let Ok(location) = location.parse() {
            response.headers_mut().insert(header::LOCATION, location);
        }
        self.memories.push(memory);
        response
    }

    fn matching(&self, wanted: impl Fn(&Memory) -> bool) -> Vec<&Memory> {
        self.memories.iter().filter(|m| wanted(m)).collect()
    }

    /// Every user's sessions: the backend has no notion of whose they are.
    fn sessions(&self) -> serde_json::Value {
        let mut sessions: Vec<(&str, usize)> = Vec::new();
        for memory in &self.memories {
            match sessions.iter_mut().find(|(id, _)| *id == memory.session_id) {
                Some((_, count)) => *count += 1,
                None => sessions.push((&memory.session_id, 1)),
            }
        }
        let sessions: Vec<_> = sessions
            .into_iter()
            .map(|(id, count)| json!({"id": id, "memories": count}))
            .collect();
        json!({ "sessions": sessions })
    }

    fn search(&self, search: &Search) -> Vec<&Memory> {
        let query = search.query.to_lowercase();
        self.matching(|m| {
            m.text.to_lowercase().contains(&query)
                && search
                    .session_id
                    .as_ref()
                    .is_none_or(|s| *s == m.session_id)
                && search
                    .user_id
                    .as_ref()
                    .is_none_or(|u| Some(u) == m.user_id.as_ref())
        })
    }
}

fn bad_request(error: serde_json::Error) -> Reply {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"error": format!("bad body: {error}")}),
    )
}

fn reply(status: StatusCode, body: serde_json::Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
