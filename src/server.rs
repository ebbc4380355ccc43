//! The process's two listeners and their lifecycle: start, serve, drain (SPEC 9).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::listen::Connections;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{App, Services};
use crate::clock::{Clock, SystemClock};
use crate::config::{Overrides, Snapshot};
use crate::store::embedded::Embedded;
use crate::store::records::Records;
use crate::store::redis::usage::RedisUsage;
use crate::store::redis::Redis;
use crate::store::{StoreError, Usage};
use crate::{admin, listen, pipeline};

const ADMIN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} for the {listener} listener: {source}")]
    Listen {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub app: Arc<App>,
    stop_proxy: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    proxy: JoinHandle<Connections>,
    admin: JoinHandle<Connections>,
    sweeper: JoinHandle<()>,
    canary: JoinHandle<()>,
    follower: JoinHandle<()>,
    flusher: JoinHandle<()>,
    watcher: Option<JoinHandle<()>>,
}

/// The first retry after a failed flush, doubled on every further failure up to
/// [`FLUSH_BACKOFF_MAX`]: a failing store is not rewritten the whole backlog on
/// every event.
const FLUSH_BACKOFF_MIN: Duration = Duration::from_millis(100);
const FLUSH_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Writes usage every `every`; with "0s", as soon as an event is recorded. After a
/// failure, the next attempt waits out the backoff instead.
async fn flush(app: Arc<App>, every: Duration) {
    let mut backoff = Duration::ZERO;
    loop {
        if !backoff.is_zero() {
            tokio::time::sleep(backoff.max(every)).await;
        } else if every.is_zero() {
            app.usage.recorded.notified().await;
        } else {
            tokio::time::sleep(every).await;
        }
        backoff = if flush_now(&app).await {
            Duration::ZERO
        } else {
            (backoff * 2).clamp(FLUSH_BACKOFF_MIN, FLUSH_BACKOFF_MAX)
        };
    }
}

/// One flush; false when it failed (counted; the rows stay pending).
async fn flush_now(app: &Arc<App>) -> bool {
    let usage = app.usage.clone();
    let failed = match tokio::task::spawn_blocking(move || usage.flush()).await {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    app.metrics.store_flush_failures.inc();
    let pending = app.usage.pending_rows();
    tracing::warn!(error = %failed, pending, "usage flush failed; the rows stay pending and are retried after a backoff");
    false
}

/// At a stop with the shared store away, keeps the unwritten usage in a file under
/// `[store] path` for the next start.
async fn spool(app: &Arc<App>) {
    let Some(redis) = app.redis.clone() else {
        return;
    };
    let (usage, dir) = (app.usage.clone(), app.snapshot().config.store.path.clone());
    let shown = dir.display().to_string();
    let spooled =
        tokio::task::spawn_blocking(move || usage.spool_to(&dir, redis.batch_field())).await;
    match spooled {
        Ok(Ok(rows)) => tracing::warn!(
            rows,
            dir = shown,
            "redis is away at the stop: usage kept for the next start"
        ),
        Ok(Err(error)) => {
            tracing::error!(%error, dir = shown, "usage could not be kept for the next start; it is lost")
        }
        Err(error) => {
            tracing::error!(%error, "usage could not be kept for the next start; it is lost")
        }
    }
}

async fn sweep(app: Arc<App>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        app.limiter.sweep(app.clock.mono());
        app.usage.forget_before(app.clock.utc_day());
        if app.redis.is_some() {
            // Tenants first seen by another replica are known to this one's leak
            // guard within a sweep: one read of today's index.
            let (reader, today) = (app.clone(), app.clock.utc_day());
            if let Ok(Ok(tenants)) =
                tokio::task::spawn_blocking(move || reader.usage.tenants_on(today)).await
            {
                app.tenants.seed(tenants.iter().map(String::as_str));
            }
        }
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// False when `shutdown_grace` ran out with requests still in flight.
    pub in_flight_finished: bool,
}

/// How far back the usage store is read for the tenants the leak guard knows.
const KNOWN_HISTORY_DAYS: u64 = 365;

/// After a restart the leak guard must still recognise a bare root of every tenant the
/// store has rows for, not only of those seen since.
async fn seed_known_tenants(app: &Arc<App>) {
    let days = KNOWN_HISTORY_DAYS;
    let (reader, today) = (app.clone(), app.clock.utc_day());
    let from = today.saturating_sub(days.saturating_sub(1));
    match tokio::task::spawn_blocking(move || reader.usage.tenants(from, today)).await {
        Ok(Ok(rows)) => {
            app.tenants
                .seed(rows.iter().map(|(tenant, _)| tenant.as_str()));
            tracing::info!(
                tenants = app.tenants.known_len(),
                "known tenants read from the usage store"
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "known tenants could not be read from the usage store")
        }
        Err(e) => {
            tracing::warn!(error = %e, "known tenants could not be read from the usage store")
        }
    }
}

/// How often idle limiter buckets are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Starts with the system clock and the store `[store]` names: the embedded file
/// under `path`, or the Redis every replica shares.
pub async fn start(
    first: Snapshot,
    source: Option<(PathBuf, Overrides)>,
) -> Result<Running, StartError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let services = match first.config.store.redis.clone() {
        None => open_embedded(first.config.store.path.clone(), clock).await?,
        Some(settings) => open_shared(&settings, &first.config.store.path, clock).await?,
    };
    start_with(first, source, services).await
}

async fn open_embedded(path: PathBuf, clock: Arc<dyn Clock>) -> Result<Services, StoreError> {
    let today = clock.utc_day();
    let (usage, records) = tokio::task::spawn_blocking(move || {
        let backend = Embedded::open(&path)?;
        tracing::info!(file = %backend.file.display(), "store open");
        let records = Records::open(Box::new(backend.clone()))?;
        Ok::<_, StoreError>((Usage::open(Box::new(backend), today)?, records))
    })
    .await
    .map_err(|e| StoreError(e.to_string()))??;
    Ok(Services {
        clock,
        usage: Arc::new(usage),
        records: Arc::new(records),
        redis: None,
    })
}

/// Opens the shared store. A replica starts while Redis is away (it decides under
/// `on_store_error` until Redis answers), so reading what Redis holds is best effort
/// here: ownership is asked again per request, today's usage per admission.
pub async fn open_shared(
    settings: &crate::store::settings::RedisSettings,
    spool: &std::path::Path,
    clock: Arc<dyn Clock>,
) -> Result<Services, StoreError> {
    let redis = Redis::open(settings)?;
    redis.warm().await;
    let today = clock.utc_day();
    let shared = redis.clone();
    let spool = spool.to_owned();
    let (usage, records) = tokio::task::spawn_blocking(move || {
        let backend = || Box::new(RedisUsage(shared.clone()));
        let usage = Usage::open(backend(), today).unwrap_or_else(|error| {
            tracing::warn!(%error, "today's usage could not be read from redis; it is read per request once redis answers");
            Usage::over(backend())
        });
        match usage.unspool_from(&spool) {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "usage spooled at the last stop is replayed"),
            Err(error) => {
                tracing::error!(%error, "the usage spooled at the last stop could not be read")
            }
        }
        let records = Records::shared(shared.clone()).unwrap_or_else(|error| {
            tracing::warn!(%error, "ownership could not be read from redis; it is read per request once redis answers");
            Records::shared_empty(shared.clone())
        });
        (usage, records)
    })
    .await
    .map_err(|e| StoreError(e.to_string()))?;
    tracing::info!(url = %settings.redacted_url(), up = redis.is_up(), on_store_error = settings.on_error.name(), "shared store open");
    Ok(Services {
        clock,
        usage: Arc::new(usage),
        records: Arc::new(records),
        redis: Some(redis),
    })
}

/// As [`start`], with a chosen clock and usage store.
pub async fn start_with(
    first: Snapshot,
    source: Option<(PathBuf, Overrides)>,
    services: Services,
) -> Result<Running, StartError> {
    let listen = first.config.listen.clone();
    let first_flush = first.config.store.flush;
    let admin_addr = first.config.admin.addr;
    let bind = |listener: &'static str, addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen {
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
    seed_known_tenants(&app).await;
    let sweeper = tokio::spawn(sweep(app.clone()));
    let canary = tokio::spawn(crate::verify::periodic(app.clone()));
    // With a shared store, this replica's view of the owners follows every replica's.
    let follower = tokio::spawn(app.records.clone().follow());
    let flusher = tokio::spawn(flush(app.clone(), first_flush));
    let watcher = app.source_path().map(|_| {
        let settings = app.snapshot().config.reload;
        crate::config::watch::start(app.clone(), settings)
    });
    let (stop_proxy, proxy_stopped) = watch::channel(false);
    let (stop_admin, admin_stopped) = watch::channel(false);

    let proxy_app = app.clone();
    let proxy = tokio::spawn(listen::serve(
        proxy_listener,
        listen::http_builder(&listen),
        listen.bounds(),
        app.listen_tls.clone(),
        proxy_stopped,
        move |request, peer| pipeline::handle(proxy_app.clone(), request, peer),
    ));
    let admin_app = app.clone();
    let admin = tokio::spawn(listen::serve(
        admin_listener,
        listen::http_builder(&listen),
        listen.bounds(),
        app.admin_tls.clone(),
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
        canary,
        follower,
        flusher,
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
        self.canary.abort();
        self.follower.abort();
        self.flusher.abort();
        if !flush_now(&self.app).await {
            spool(&self.app).await;
        }
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
        tracing::info!("drained");
        Drained { in_flight_finished }
    }
}
