//! The floor under tenantgate's figures: a bare hyper proxy, the same hyper server and
//! hyper-util pooled client tenantgate uses, with nothing in between (no routing, no
//! rewrite, no limits, no metering, no audit line). scripts/bench.py measures it beside
//! tenantgate, so what tenantgate adds over the libraries it is built on is visible.
//!
//!   cargo run --release --manifest-path scripts/floor/Cargo.toml -- 127.0.0.1:LISTEN http://127.0.0.1:UPSTREAM

use std::convert::Infallible;

use http::Uri;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen: std::net::SocketAddr = args.next().ok_or("listen address")?.parse()?;
    let upstream: Uri = args.next().ok_or("upstream url")?.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let service = service_fn(move |mut request: hyper::Request<Incoming>| {
                    let (client, upstream) = (client.clone(), upstream.clone());
                    async move {
                        let mut parts = upstream.into_parts();
                        parts.path_and_query = request.uri().path_and_query().cloned();
                        *request.uri_mut() = Uri::from_parts(parts).expect("uri");
                        request.headers_mut().remove(http::header::HOST);
                        let answer = match client.request(request).await {
                            Ok(answer) => answer.map(http_body_util::Either::Left),
                            Err(_) => {
                                let mut failed = hyper::Response::new(
                                    http_body_util::Either::Right(http_body_util::Empty::new()),
                                );
                                *failed.status_mut() = http::StatusCode::BAD_GATEWAY;
                                failed
                            }
                        };
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
