//! The process's two listeners and their lifecycle: start, serve, drain (SPEC 9).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{App, Services};
use crate::config::{Overrides, Snapshot};
use crate::{admin, listen, pipeline};

/// Few admin clients (probes, Prometheus, an operator) ever connect at once.
const ADMIN_MAX_CONNECTIONS: usize = 64;
const ADMIN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for the {listener} listener: {source}")]
pub struct StartError {
    pub listener: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub app: Arc<App>,
    stop_proxy: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    proxy: JoinHandle<GracefulShutdown>,
    admin: JoinHandle<GracefulShutdown>,
    sweeper: JoinHandle<()>,
    watcher: Option<JoinHandle<()>>,
}

async fn sweep(app: Arc<App>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        app.limiter.sweep(app.clock.mono());
        app.usage.forget_before(app.clock.utc_day());
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// False when `shutdown_grace` ran out with requests still in flight.
    pub in_flight_finished: bool,
}

/// How often idle limiter buckets are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

pub async fn start(
    first: Snapshot,
    source: Option<(PathBuf, Overrides)>,
) -> Result<Running, StartError> {
    start_with(first, source, Services::default()).await
}

/// As [`start`], with a chosen clock and usage store.
pub async fn start_with(
    first: Snapshot,
    source: Option<(PathBuf, Overrides)>,
    services: Services,
) -> Result<Running, StartError> {
    let listen = first.config.listen.clone();
    let admin_addr = first.config.admin.addr;
    let bind = |listener: &'static str, addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|source| StartError {
            listener,
            addr,
            source,
        })
    };
    let proxy_listener = bind("proxy", listen.addr).await?;
    let admin_listener = bind("admin", admin_addr).await?;
    let local = |l: &TcpListener, addr| l.local_addr().unwrap_or(addr);
    let proxy_addr = local(&proxy_listener, listen.addr);
    let admin_addr = local(&admin_listener, admin_addr);

    let app = App::new(first, source, services);
    let sweeper = tokio::spawn(sweep(app.clone()));
    let watcher = app.source_path().map(|path| {
        let settings = app.snapshot().config.reload;
        crate::config::watch::start(app.clone(), path.to_owned(), settings)
    });
    let (stop_proxy, proxy_stopped) = watch::channel(false);
    let (stop_admin, admin_stopped) = watch::channel(false);

    let proxy_app = app.clone();
    let proxy = tokio::spawn(listen::serve(
        proxy_listener,
        listen::http_builder(&listen),
        listen.max_connections,
        proxy_stopped,
        move |request, peer| pipeline::handle(proxy_app.clone(), request, peer),
    ));
    let admin_app = app.clone();
    let admin = tokio::spawn(listen::serve(
        admin_listener,
        listen::http_builder(&listen),
        ADMIN_MAX_CONNECTIONS,
        admin_stopped,
        move |request, _peer| admin::handle(admin_app.clone(), request),
    ));
    tracing::info!(%proxy_addr, %admin_addr, "tenantgate is serving");
    Ok(Running {
        proxy_addr,
        admin_addr,
        app,
        stop_proxy,
        stop_admin,
        proxy,
        admin,
        sweeper,
        watcher,
    })
}

impl Running {
    /// SPEC 9: `/readyz` turns 503, the proxy keeps serving for `drain_delay` (so
    /// endpoints controllers stop sending), stops accepting, and lets in-flight requests
    /// finish for up to `shutdown_grace`.
    pub async fn drain(self) -> Drained {
        let listen = self.app.snapshot().config.listen.clone();
        self.app.start_draining();
        tracing::info!(drain_delay = ?listen.drain_delay, "draining: readiness is now 503");
        tokio::time::sleep(listen.drain_delay).await;

        let _ = self.stop_proxy.send(true);
        let in_flight_finished = match self.proxy.await {
            Ok(connections) => tokio::time::timeout(listen.shutdown_grace, connections.shutdown())
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !in_flight_finished {
            tracing::warn!(grace = ?listen.shutdown_grace, "shutdown grace ran out with requests in flight");
        }
        let _ = self.stop_admin.send(true);
        if let Ok(connections) = self.admin.await {
            let _ = tokio::time::timeout(ADMIN_GRACE, connections.shutdown()).await;
        }
        self.sweeper.abort();
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
        tracing::info!("drained");
        Drained { in_flight_finished }
    }
}
