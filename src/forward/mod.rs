//! Stage 5: the request's final form and the pooled upstream client. Client headers
//! are cleaned, forwarding headers and the configured credentials added; one client
//! serves every tenant, and nothing tenant-specific lives on a connection.

pub mod compile;
pub mod outgoing;
pub mod tls;

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{IdleTimeout, ProxyBody};
use crate::refusal::Refusal;
use crate::BoxError;
pub use compile::{ForwardSettings, UpstreamSettings};
pub use outgoing::{internal_request, prepare, Outgoing};

/// The settings that shape the connection pool itself; changing them needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

impl PoolSettings {
    pub fn of(upstream: &UpstreamSettings) -> Self {
        Self {
            connect_timeout: upstream.connect_timeout,
            idle_timeout: upstream.pool_idle_timeout,
        }
    }
}

#[derive(Clone)]
pub struct Upstream {
    client: Client<tls::Connector, Reclaimable>,
    pool: PoolSettings,
    /// The TLS client settings new connections use; swapped with the config.
    tls: Arc<arc_swap::ArcSwap<rustls::ClientConfig>>,
}

impl Upstream {
    pub fn new(pool: PoolSettings) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(pool.connect_timeout));
        http.set_nodelay(true);
        // https is layered on by the connector.
        http.enforce_http(false);
        let tls = Arc::new(arc_swap::ArcSwap::new(tls::default_config()));
        let connector = tls::Connector::new(http, tls.clone(), pool.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            // Without a timer the idle timeout is never enforced and idle sockets pile up.
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(pool.idle_timeout)
            .pool_max_idle_per_host(256)
            .build(connector);
        Self { client, pool, tls }
    }

    /// New https connections use these TLS settings (those in the pool keep theirs);
    /// an http upstream has none to install.
    pub fn use_tls(&self, settings: &UpstreamSettings) {
        if let Some(tls) = &settings.tls {
            self.tls.store(tls.config.clone());
        }
    }

    pub fn pool(&self) -> &PoolSettings {
        &self.pool
    }

    /// Sends the request and waits for response headers, at most `settings.timeout` in
    /// all. A connect failure is retried for idempotent methods (the body is handed
    /// back untouched when the connection never came up).
    pub async fn send(
        &self,
        settings: &UpstreamSettings,
        outgoing: Outgoing,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let deadline = tokio::time::Instant::now() + settings.timeout;
        let retries = if is_idempotent(&outgoing.method) {
            settings.retries
        } else {
            0
        };
        let Outgoing {
            method,
            uri,
            headers,
            body,
        } = outgoing;
        let mut body = Some(body);
        let mut headers = Some(headers);
        let mut attempt = 0;
        loop {
            // Only an attempt that may be followed by another needs its body back.
            let last = attempt >= retries;
            let slot = (!last).then(|| Arc::new(Mutex::new(body.take())));
            let reclaimable = match &slot {
                Some(slot) => Reclaimable::new(slot.clone()),
                None => Reclaimable::direct(body.take()),
            };
            let mut request = Request::new(reclaimable);
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri.clone();
            *request.version_mut() = Version::HTTP_11;
            // The last possible attempt takes the headers instead of copying them.
            let attempt_headers = if last {
                headers.take()
            } else {
                headers.clone()
            };
            *request.headers_mut() = attempt_headers.unwrap_or_default();
            let result = tokio::time::timeout_at(deadline, self.client.request(request)).await;
            match result {
                Err(_) => return Err(Refusal::UpstreamTimeout),
                Ok(Ok(response)) => {
                    let idle = settings.body_timeout;
                    return Ok(response.map(|b: Incoming| IdleTimeout::new(b, idle).boxed_unsync()));
                }
                Ok(Err(error)) => {
                    let reclaimed = slot.and_then(|slot| {
                        slot.lock().unwrap_or_else(PoisonError::into_inner).take()
                    });
                    if error.is_connect() && reclaimed.is_some() {
                        tracing::debug!(%error, attempt, "upstream connect failed; retrying");
                        body = reclaimed;
                        attempt += 1;
                        continue;
                    }
                    tracing::warn!(error = %error_chain(&error), "upstream request failed");
                    return Err(Refusal::UpstreamUnavailable);
                }
            }
        }
    }
}

pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A request body that stays in a shared slot until the client first polls it, so a
/// request that failed before its connection was up can be sent again with the same,
/// unread body. Once taken, it streams without touching the lock again. The last
/// attempt (every attempt of a request that is never retried) has no slot.
pub struct Reclaimable {
    slot: Option<Arc<Mutex<Option<ProxyBody>>>>,
    taken: Option<ProxyBody>,
}

impl Reclaimable {
    fn new(slot: Arc<Mutex<Option<ProxyBody>>>) -> Self {
        Self {
            slot: Some(slot),
            taken: None,
        }
    }

    /// A body that is not given back: no slot, no lock.
    fn direct(body: Option<ProxyBody>) -> Self {
        Self {
            slot: None,
            taken: body,
        }
    }

    fn take_from_slot(&self) -> Option<ProxyBody> {
        let slot = self.slot.as_ref()?;
        slot.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn with_slot<R>(&self, f: impl FnOnce(Option<&ProxyBody>) -> R) -> R {
        match (&self.taken, &self.slot) {
            (Some(body), _) => f(Some(body)),
            (None, Some(slot)) => f(slot.lock().unwrap_or_else(PoisonError::into_inner).as_ref()),
            (None, None) => f(None),
        }
    }
}

impl Body for Reclaimable {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.taken.is_none() {
            self.taken = self.take_from_slot();
        }
        match self.taken.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.with_slot(|b| b.is_none_or(Body::is_end_stream))
    }

    fn size_hint(&self) -> SizeHint {
        self.with_slot(|b| b.map_or_else(|| SizeHint::with_exact(0), Body::size_hint))
    }
}
