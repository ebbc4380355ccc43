//! Accepting connections: HTTP/1.1 and prior-knowledge h2c on one port, bounded in
//! connections, header size, header read time (from the first byte on: see `sniff`)
//! and HTTP/2 streams, with HTTP/2 keep-alive pings and an idle timeout, and
//! drain-aware.

pub mod connection;
mod sniff;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::body::{self, ProxyBody};
use crate::spec::units::{Dur, Size};
use crate::spec::{at, Errors, KeyPath};
pub use connection::Connections;
use connection::{Idle, Streams};

/// hyper refuses a smaller read buffer, and the headers must fit in it.
const MIN_HEADER_BYTES: u64 = 8 * 1024;
const MAX_HEADER_BYTES: u64 = 16 * 1024 * 1024;

/// `[listen]` as the file writes it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenSpec {
    pub addr: SocketAddr,
    pub shutdown_grace: Dur,
    pub drain_delay: Dur,
    pub header_read_timeout: Dur,
    pub idle_timeout: Dur,
    pub max_header_bytes: Size,
    pub max_connections: usize,
    pub tls: Option<tls::TlsSpec>,
}

impl Default for ListenSpec {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace: Dur(Duration::from_secs(20)),
            drain_delay: Dur(Duration::ZERO),
            header_read_timeout: Dur(Duration::from_secs(10)),
            idle_timeout: Dur(Duration::from_secs(300)),
            max_header_bytes: Size(64 * 1024),
            max_connections: 10_000,
            tls: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ListenSettings {
    pub addr: SocketAddr,
    pub shutdown_grace: Duration,
    pub drain_delay: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// `[listen.tls]`: HTTPS; its files are swapped on reload, turning it on or off
    /// needs a restart.
    pub tls: Option<tls::ServerTls>,
}

impl ListenSettings {
    /// The connection bounds only a restart can change (the address aside).
    pub fn connection_bounds(&self) -> (Duration, Duration, usize, usize) {
        (
            self.header_read_timeout,
            self.idle_timeout,
            self.max_header_bytes,
            self.max_connections,
        )
    }
}

/// Compiles `[listen]`; errors are reported at `base` + the key.
pub fn compile(spec: &ListenSpec, base: &KeyPath, errors: &mut Errors) -> ListenSettings {
    let path = |k: &str| at(base, &[k]);
    if spec.max_header_bytes.0 < MIN_HEADER_BYTES {
        errors.add(
            path("max_header_bytes"),
            "max_header_bytes must be at least 8KiB",
        );
    }
    if spec.max_header_bytes.0 > MAX_HEADER_BYTES {
        errors.add(
            path("max_header_bytes"),
            "max_header_bytes must be at most 16MiB",
        );
    }
    if spec.max_connections == 0 {
        errors.add(
            path("max_connections"),
            "max_connections must be at least 1",
        );
    }
    if spec.header_read_timeout.0.is_zero() {
        errors.add(
            path("header_read_timeout"),
            "header_read_timeout must be more than 0s",
        );
    }
    if spec.idle_timeout.0.is_zero() {
        errors.add(path("idle_timeout"), "idle_timeout must be more than 0s");
    }
    ListenSettings {
        addr: spec.addr,
        shutdown_grace: spec.shutdown_grace.0,
        drain_delay: spec.drain_delay.0,
        header_read_timeout: spec.header_read_timeout.0,
        idle_timeout: spec.idle_timeout.0,
        max_header_bytes: usize::try_from(spec.max_header_bytes.0).unwrap_or(usize::MAX),
        max_connections: spec.max_connections,
        tls: spec
            .tls
            .as_ref()
            .and_then(|t| tls::compile(t, &at(base, &["tls"]), errors)),
    }
}

/// HTTP/2 bounds: enough streams for an app's fan-out, few enough that one client
/// cannot queue unbounded work; the reset limits defuse rapid-reset style floods.
const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;
/// An HTTP/2 connection is pinged after this long without a frame, and closed when the
/// ping is not answered within the timeout: a dead peer never holds a slot for long.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

pub fn http_builder(settings: &ListenSettings) -> auto::Builder<TokioExecutor> {
    let header_bytes = settings.max_header_bytes;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The timer is what makes header_read_timeout fire at all.
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX));
    builder
}

/// What bounds a listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_connections: usize,
    /// Also the deadline for a new connection's first bytes.
    pub header_read_timeout: Duration,
    /// How long an HTTP/2 connection may hold no open stream.
    pub idle_timeout: Duration,
}

impl ListenSettings {
    pub fn bounds(&self) -> Bounds {
        Bounds {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// The server settings a TLS listener hands each new connection; the config swaps
/// them on reload.
pub type Terminator = Arc<arc_swap::ArcSwap<rustls::ServerConfig>>;

/// Serves `listener` until `stop`: each connection gets a slot, TLS when `tls` is
/// set (the handshake and the first bytes together within `header_read_timeout`),
/// then HTTP/1.1 or HTTP/2 by its first bytes (an h2 client, with or without ALPN,
/// starts with the preface).
pub async fn serve<H, F>(
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    bounds: Bounds,
    tls: Option<Terminator>,
    mut stop: watch::Receiver<bool>,
    handler: H,
) -> Connections
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let connections = Connections::default();
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    let builders = Arc::new((builder.clone().http1_only(), builder.http2_only()));
    loop {
        // Waiting for a free slot before accepting leaves excess connections in the
        // kernel backlog instead of accepting work we would have to drop.
        let permit = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            permit = slots.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Accepted {
            peer,
            builders: builders.clone(),
            drain: connections.watcher(),
            bounds,
            handler: handler.clone(),
        };
        let tls = tls.as_ref().map(|t| t.load_full());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + connection.bounds.header_read_timeout;
            match tls {
                None => connection.serve(stream, deadline).await,
                Some(config) => {
                    let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                    match tokio::time::timeout_at(deadline, handshake).await {
                        Ok(Ok(stream)) => connection.serve(stream, deadline).await,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, peer = %connection.peer, "TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(peer = %connection.peer, "no TLS handshake within header_read_timeout; closing");
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    connections
}

/// One accepted connection and what serving it needs.
struct Accepted<H> {
    peer: SocketAddr,
    builders: Arc<(auto::Builder<TokioExecutor>, auto::Builder<TokioExecutor>)>,
    drain: tokio::sync::watch::Receiver<()>,
    bounds: Bounds,
    handler: H,
}

impl<H, F> Accepted<H>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    async fn serve<S>(self, io: S, deadline: tokio::time::Instant)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            peer,
            builders,
            drain,
            bounds,
            handler,
        } = self;
        // Until the protocol is known hyper has no timer of its own running.
        let (protocol, io) = match tokio::time::timeout_at(deadline, sniff::sniff(io)).await {
            Ok(Ok(sniffed)) => sniffed,
            Ok(Err(error)) => {
                tracing::debug!(%error, %peer, "connection closed before a request");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "no request within header_read_timeout; closing");
                return;
            }
        };
        let streams = (protocol == sniff::Protocol::Http2).then(Arc::<Streams>::default);
        let open = streams.clone();
        let service = service_fn(move |request| {
            let stream = open.as_ref().map(Streams::open);
            let response = handler(request, peer);
            async move {
                let response = response.await;
                Ok::<_, Infallible>(match stream {
                    // The stream is open until its answer's body ends.
                    Some(stream) => response.map(|b| body::on_end(b, move |_| drop(stream))),
                    None => response,
                })
            }
        });
        let builder = match protocol {
            sniff::Protocol::Http1 => &builders.0,
            sniff::Protocol::Http2 => &builders.1,
        };
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let idle = streams.map(|streams| Idle {
            streams,
            timeout: bounds.idle_timeout,
        });
        let shutdown = |c: Pin<&mut _>| auto::Connection::graceful_shutdown(c);
        if let Err(error) = connection::drive(connection, shutdown, drain, idle).await {
            tracing::debug!(%error, %peer, "connection ended with an error");
        }
    }
}

/// Resolves once the stop flag is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::compile_str;

    fn compiled(toml: &str) -> Result<ListenSettings, Vec<String>> {
        compile_str(toml, |spec: &ListenSpec, errors| {
            Some(compile(spec, &Vec::new(), errors))
        })
    }

    #[test]
    fn compiles_the_defaults_and_given_values() {
        let listen = compiled("addr = \"127.0.0.1:0\"\nmax_header_bytes = \"32KiB\"\n").unwrap();
        assert_eq!(listen.addr, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(listen.max_header_bytes, 32 * 1024);
        assert_eq!(listen.header_read_timeout, Duration::from_secs(10));
    }

    #[test]
    fn refuses_each_bad_value_at_its_key() {
        let errors =
            compiled("max_header_bytes = 100\nmax_connections = 0\nheader_read_timeout = \"0s\"\n")
                .unwrap_err();
        assert_eq!(
            errors,
            [
                "1:20: max_header_bytes must be at least 8KiB",
                "2:19: max_connections must be at least 1",
                "3:23: header_read_timeout must be more than 0s",
            ]
        );
        let errors = compiled("max_header_bytes = \"17MiB\"").unwrap_err();
        assert_eq!(errors, ["1:20: max_header_bytes must be at most 16MiB"]);
    }
}
