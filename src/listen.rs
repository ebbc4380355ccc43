//! Accepting connections: HTTP/1.1 and prior-knowledge h2c on one port, bounded in
//! connections, header size, header read time and HTTP/2 streams, and drain-aware.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::body::ProxyBody;
use crate::config::ListenSettings;

/// HTTP/2 bounds: enough streams for an app's fan-out, few enough that one client
/// cannot queue unbounded work; the reset limits defuse rapid-reset style floods.
const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;

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
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Accepts until `stop` turns true, then stops accepting and hands back the tracker of
/// the connections still open, so the caller can drain them.
pub async fn serve<H, F>(
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
    handler: H,
) -> GracefulShutdown
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
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
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let response = handler(request, peer);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    graceful
}

/// Resolves once the stop flag is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}
