//! What the request handlers share: the current config snapshot, the upstream client
//! and the process's readiness. State that outlives a config lives here, beside the
//! snapshot, never inside it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::clock::{Clock, SystemClock};
use crate::config::watch::{Input, Reload};
use crate::config::{self, Overrides, Snapshot};
use crate::forward::{PoolSettings, Upstream};
use crate::limits::Limiter;
use crate::meter::Ledger;
use crate::store::records::Records;
use crate::store::redis::Redis;
use crate::store::{Tenants, Usage};
use crate::tenants::Offboarding;

/// The process's time, usage store and records; tests replace the clock.
#[derive(Debug, Clone)]
pub struct Services {
    pub clock: Arc<dyn Clock>,
    pub usage: Arc<Usage>,
    pub records: Arc<Records>,
    /// With `kind = "redis"`: what every replica shares (limits; the usage and records
    /// above are already over it).
    pub redis: Option<Arc<Redis>>,
}

impl Default for Services {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock::default()),
            usage: Arc::new(Usage::in_memory()),
            records: Arc::new(Records::in_memory()),
            redis: None,
        }
    }
}

pub struct App {
    config: ArcSwap<Snapshot>,
    generation: AtomicU64,
    draining: AtomicBool,
    pub upstream: Upstream,
    /// Every tenant's state (known, today's units, limiter bucket), in the table
    /// usage made: the leak guard reads which tenants are known from it.
    pub tenants: Arc<Tenants>,
    /// Tenants being offboarded right now: refused as blocked.
    pub offboarding: Arc<Offboarding>,
    pub metrics: crate::metrics::Metrics,
    /// Bucket state per tenant (stage 3); the limits themselves are in the snapshot.
    pub limiter: Arc<Limiter>,
    pub clock: Arc<dyn Clock>,
    pub usage: Arc<Usage>,
    /// The shared store, with `kind = "redis"`.
    pub redis: Option<Arc<Redis>>,
    /// Who owns which opaque backend id, and which tenants are provisioned.
    pub records: Arc<Records>,
    /// The proxy listener's TLS settings, when it serves HTTPS: new connections take
    /// the ones installed last.
    pub listen_tls: Option<crate::listen::Terminator>,
    /// The same for the admin listener (`[admin.tls]`).
    pub admin_tls: Option<crate::listen::Terminator>,
    /// The `jwks_url` key sets, kept across reloads that keep their URL.
    remote_keys: crate::identity::remote::RemoteRegistry,
    /// Provisioning runs in flight, one per tenant.
    pub provisioner: crate::provision::Provisioner,
    /// The bytes every buffered body together may hold (`[limits] max_buffered`).
    pub budget: Arc<crate::budget::Budget>,
    /// The usage store and clock, as the meter stage takes them.
    pub ledger: Ledger,
    /// Where reloads read from; `None` for a config given as text (tests, `dev`).
    source: Option<(PathBuf, Overrides)>,
    /// One reload at a time, whoever asks (watcher, SIGHUP, admin endpoint).
    reloading: std::sync::Mutex<()>,
}

/// What a reload did, for the log and for `POST /admin/reload`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadOutcome {
    pub applied: bool,
    pub generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Settings that changed in the file but only take effect after a restart.
    pub restart_required: Vec<&'static str>,
}

impl App {
    pub fn new(
        mut first: Snapshot,
        source: Option<(PathBuf, Overrides)>,
        services: Services,
    ) -> Arc<Self> {
        first.generation = 1;
        let metrics = crate::metrics::Metrics::new();
        if let Some(redis) = &services.redis {
            metrics.register(redis.collectors());
        }
        metrics.export_at_zero(
            crate::refusal::Refusal::CODES,
            crate::identity::AuthFailure::REASONS,
        );
        metrics.export_plans(crate::limits::policies(&first.config.limits));
        first.route_metrics = first
            .config
            .route
            .table
            .iter()
            .map(|r| metrics.route(&r.name))
            .collect();
        let upstream = Upstream::new(PoolSettings::of(&first.config.forward.upstream));
        upstream.use_tls(&first.config.forward.upstream);
        let ledger = Ledger {
            usage: services.usage.clone(),
            clock: services.clock.clone(),
        };
        let budget = crate::budget::Budget::new(first.config.max_buffered);
        let remote_keys = crate::identity::remote::RemoteRegistry::default();
        let terminator = |tls: &crate::listen::tls::ServerTls| {
            Arc::new(arc_swap::ArcSwap::new(tls.config.clone()))
        };
        let listen_tls = first.config.listen.tls.as_ref().map(terminator);
        let admin_tls = first.config.admin.tls.as_ref().map(terminator);
        remote_keys.adopt_into(&mut first.config.identity, &jwks_counters(&metrics));
        Arc::new(Self {
            config: ArcSwap::from_pointee(first),
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            upstream,
            tenants: services.usage.table().clone(),
            offboarding: Arc::default(),
            metrics,
            limiter: Arc::new(match &services.redis {
                Some(redis) => Limiter::shared(redis.clone(), services.usage.table().clone()),
                None => Limiter::over(services.usage.table().clone()),
            }),
            redis: services.redis,
            clock: services.clock,
            usage: services.usage,
            records: services.records,
            provisioner: crate::provision::Provisioner::default(),
            remote_keys,
            listen_tls,
            admin_tls,
            ledger,
            budget,
            source,
            reloading: std::sync::Mutex::new(()),
        })
    }

    /// The snapshot a request uses from start to end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.config.load_full()
    }

    /// False while the running config's `jwks_url` has never been fetched: the pod is
    /// not ready to verify anyone yet.
    pub fn identity_keys_loaded(&self) -> bool {
        match &self.snapshot().config.identity.proof {
            crate::identity::Proof::Jwt(jwt) => match &jwt.keys {
                crate::identity::jwt::JwtKeys::Remote(remote) => remote.current().is_some(),
                _ => true,
            },
            _ => true,
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Reads the config file again; installs it only if the whole file is valid.
    pub fn reload(&self) -> ReloadOutcome {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outcome = self.load_and_install();
        let result = if outcome.applied { "success" } else { "error" };
        self.metrics
            .config_reloads
            .with_label_values(&[result])
            .inc();
        if outcome.applied {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.metrics.config_last_success.set(now);
        }
        outcome
    }

    /// The file the config was loaded from, if any (the watcher follows it).
    pub fn source_path(&self) -> Option<&std::path::Path> {
        self.source.as_ref().map(|(path, _)| path.as_path())
    }

    fn load_and_install(&self) -> ReloadOutcome {
        let current = self.snapshot();
        let Some((path, overrides)) = &self.source else {
            return ReloadOutcome {
                applied: false,
                generation: current.generation,
                error: Some("this process was not started from a config file".to_owned()),
                restart_required: Vec::new(),
            };
        };
        match config::load_file(path, overrides, &config::process_env) {
            Ok(next) => match self.fetch_new_provider(&next) {
                Ok(()) => self.install(next),
                Err(error) => {
                    tracing::error!(%error, "config reload refused; the previous config keeps serving");
                    ReloadOutcome {
                        applied: false,
                        generation: current.generation,
                        error: Some(error),
                        restart_required: Vec::new(),
                    }
                }
            },
            Err(errors) => {
                tracing::error!(%errors, "config reload refused; the previous config keeps serving");
                ReloadOutcome {
                    applied: false,
                    generation: current.generation,
                    error: Some(errors.to_string()),
                    restart_required: Vec::new(),
                }
            }
        }
    }

    /// A reload that names a new `jwks_url` fetches it first (reloads run on blocking
    /// threads, so waiting here holds no worker).
    fn fetch_new_provider(&self, next: &Snapshot) -> Result<(), String> {
        let Some(remote) = self.remote_keys.unknown(&next.config.identity) else {
            return Ok(());
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(());
        };
        // On a thread of its own: `block_on` is refused on a runtime's own threads.
        let fetched = std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(remote.fetch_now()))
                .join()
                .unwrap_or_else(|_| Err("the fetch panicked".to_owned()))
        });
        fetched
            .map(|_| ())
            .map_err(|e| format!("[identity] jwks_url {} cannot be fetched: {e}", remote.url))
    }

    /// Swaps in a validated snapshot. Settings bound to sockets or to the connection pool
    /// keep their running values (reported, not half-applied).
    pub fn install(&self, mut next: Snapshot) -> ReloadOutcome {
        let current = self.snapshot();
        if let Err(error) = listeners_unchanged_in_kind(&current.config, &next.config) {
            tracing::error!(%error, "config reload refused; the previous config keeps serving");
            return ReloadOutcome {
                applied: false,
                generation: current.generation,
                error: Some(error),
                restart_required: Vec::new(),
            };
        }
        let restart_required = keep_restart_only(&current.config, &mut next.config);
        if !restart_required.is_empty() {
            tracing::warn!(settings = ?restart_required, "config changes that need a restart were not applied");
        }
        self.metrics
            .export_plans(crate::limits::policies(&next.config.limits));
        next.route_metrics = next
            .config
            .route
            .table
            .iter()
            .map(|r| self.metrics.route(&r.name))
            .collect();
        self.remote_keys
            .adopt_into(&mut next.config.identity, &jwks_counters(&self.metrics));
        self.upstream.use_tls(&next.config.forward.upstream);
        if let (Some(terminator), Some(tls)) = (&self.listen_tls, &next.config.listen.tls) {
            terminator.store(tls.config.clone());
        }
        if let (Some(terminator), Some(tls)) = (&self.admin_tls, &next.config.admin.tls) {
            terminator.store(tls.config.clone());
        }
        next.generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let generation = next.generation;
        self.config.store(Arc::new(next));
        tracing::info!(generation, "config reloaded");
        ReloadOutcome {
            applied: true,
            generation,
            error: None,
            restart_required,
        }
    }
}

/// A reload may not turn a listener's TLS on or off (that rebinds it), nor leave the
/// running listener exposed to an identity the new file only allowed for another
/// address or for client certificates: such a reload is refused whole, so the
/// listener and the config never disagree.
fn listeners_unchanged_in_kind(
    running: &config::Config,
    next: &config::Config,
) -> Result<(), String> {
    let flips = |a: bool, b: bool, what: &str| {
        if a == b {
            Ok(())
        } else {
            Err(format!(
                "turning {what} on or off needs a restart; the reload is refused"
            ))
        }
    };
    flips(
        running.listen.tls.is_some(),
        next.listen.tls.is_some(),
        "[listen.tls]",
    )?;
    flips(
        running.admin.tls.is_some(),
        next.admin.tls.is_some(),
        "[admin.tls]",
    )?;
    let client_certs = next.listen.tls.as_ref().is_some_and(|t| t.client_certs);
    if !next.identity.may_serve(running.listen.addr, client_certs) {
        return Err(format!(
            "header mode would trust the tenant header from anyone who can reach the running listener {}; the reload is refused",
            running.listen.addr
        ));
    }
    Ok(())
}

fn jwks_counters(metrics: &crate::metrics::Metrics) -> crate::identity::remote::FetchCounters {
    crate::identity::remote::FetchCounters {
        success: metrics.jwks_fetches("success"),
        error: metrics.jwks_fetches("error"),
    }
}

fn keep_restart_only(running: &config::Config, next: &mut config::Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if running.listen.addr != next.listen.addr {
        changed.push("listen.addr");
    }
    if running.admin.addr != next.admin.addr {
        changed.push("admin.addr");
    }
    if running.listen.connection_bounds() != next.listen.connection_bounds() {
        changed.push("listen.header_read_timeout/idle_timeout/max_header_bytes/max_connections");
    }
    let (up, next_up) = (&running.forward.upstream, &next.forward.upstream);
    if PoolSettings::of(up) != PoolSettings::of(next_up) {
        changed.push("upstream.connect_timeout/pool_idle_timeout");
    }
    if running.reload != next.reload {
        changed.push("reload");
    }
    if running.store != next.store {
        changed.push("store");
    }
    if running.audit_file != next.audit_file {
        changed.push("log.audit_file");
    }
    if running.audit_flush != next.audit_flush {
        changed.push("log.audit_flush");
    }
    next.audit_flush = running.audit_flush;
    next.reload = running.reload;
    next.store = running.store.clone();
    next.audit_file = running.audit_file.clone();
    if running.max_buffered != next.max_buffered {
        changed.push("limits.max_buffered");
    }
    next.max_buffered = running.max_buffered;
    if running.log_level != next.log_level {
        changed.push("log.level");
    }
    next.log_level.clone_from(&running.log_level);
    // The drain timings are read when the drain starts, so they apply on reload; the
    // address and connection bounds shape the running listeners.
    let (drain_delay, shutdown_grace) = (next.listen.drain_delay, next.listen.shutdown_grace);
    // New certificates apply on reload (TLS cannot flip: see
    // `listeners_unchanged_in_kind`).
    let tls = next.listen.tls.take();
    next.listen = running.listen.clone();
    next.listen.tls = tls;
    next.listen.drain_delay = drain_delay;
    next.listen.shutdown_grace = shutdown_grace;
    next.admin.addr = running.admin.addr;

    next.forward.upstream.connect_timeout = running.forward.upstream.connect_timeout;
    next.forward.upstream.pool_idle_timeout = running.forward.upstream.pool_idle_timeout;
    changed
}

impl Reload for App {
    fn inputs(&self) -> Vec<Input> {
        let snapshot = self.snapshot();
        let config = self.source_path().map(|path| Input {
            path: path.to_owned(),
            sha256: snapshot.sha256.clone(),
        });
        let identity = snapshot.config.identity.key_file.iter();
        let upstream = snapshot.config.forward.upstream.watched.iter();
        let listener = snapshot
            .config
            .listen
            .tls
            .iter()
            .flat_map(|t| t.watched.iter());
        let admin = snapshot
            .config
            .admin
            .tls
            .iter()
            .flat_map(|t| t.watched.iter());
        let listener = listener.chain(admin);
        let files = identity.chain(upstream).chain(listener).map(|f| Input {
            path: f.path.clone(),
            sha256: f.sha256.clone(),
        });
        config.into_iter().chain(files).collect()
    }

    type Outcome = ReloadOutcome;

    fn reload(&self) -> ReloadOutcome {
        App::reload(self)
    }

    fn applied(outcome: &ReloadOutcome) -> bool {
        outcome.applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> config::Config {
        let text = format!("{text}[upstream]\nurl = \"http://127.0.0.1:1\"\n");
        config::load_str(&text, "t.toml", &Overrides::default(), &|_| None)
            .unwrap()
            .config
    }

    #[test]
    fn a_reload_that_would_expose_header_mode_on_the_running_listener_is_refused() {
        let jwt_public = load(
            "[listen]\naddr = \"0.0.0.0:8080\"\n[identity]\nmode = \"jwt\"\nhs256_secret = \"0123456789abcdef0123456789abcdef\"\n",
        );
        // Valid on its own (loopback), but the listener that keeps running is public.
        let header_loopback = load("[listen]\naddr = \"127.0.0.1:8080\"\n");
        let refused = listeners_unchanged_in_kind(&jwt_public, &header_loopback).unwrap_err();
        assert!(refused.contains("header mode would trust"), "{refused}");
        assert!(listeners_unchanged_in_kind(&header_loopback, &header_loopback).is_ok());
        assert!(listeners_unchanged_in_kind(&jwt_public, &jwt_public).is_ok());
    }
}
