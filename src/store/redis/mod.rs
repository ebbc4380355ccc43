//! `[store] kind = "redis"` (SPEC 8): the Redis (or Valkey) every replica shares for
//! rate limits, quotas, usage, ownership and provisioning marks.
//!
//! One multiplexed connection ([`ConnectionManager`]: it reconnects, and concurrent
//! calls are pipelined on it), every call under `[store] timeout`, and a circuit
//! breaker, so that while Redis is away decisions fall back at once instead of each
//! waiting out a timeout. Each script touches keys of one cluster slot only: a
//! tenant's keys share the hash tag `{t:<tenant>}`, the day indexes `{usage}`, the
//! ownership rows `{own}`.

mod breaker;
pub mod keys;
pub mod limits;
pub mod records;
pub mod usage;

use std::future::Future;
use std::sync::Arc;

use prometheus::{IntCounterVec, IntGauge, Opts};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::settings::{OnStoreError, RedisSettings};
use super::StoreError;
use breaker::Breaker;
pub use keys::Keys;

/// What a call was for, as the `op` label of `tenantgate_store_errors_total`.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Limit,
    Usage,
    Ownership,
    Provision,
    /// `/readyz`'s ping.
    Health,
}

impl Op {
    const ALL: [Op; 5] = [
        Op::Limit,
        Op::Usage,
        Op::Ownership,
        Op::Provision,
        Op::Health,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Limit => "limit",
            Op::Usage => "usage",
            Op::Ownership => "ownership",
            Op::Provision => "provision",
            Op::Health => "health",
        }
    }
}

/// The scripts, loaded on first use (EVALSHA, then EVAL after a `NOSCRIPT`, as after
/// a Redis restart).
struct Scripts {
    gcra: Script,
    usage_row: Script,
    usage_day: Script,
    own: Script,
    disown: Script,
    unlock: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            gcra: Script::new(include_str!("gcra.lua")),
            usage_row: Script::new(include_str!("usage_row.lua")),
            usage_day: Script::new(include_str!("usage_day.lua")),
            own: Script::new(include_str!("own.lua")),
            disown: Script::new(include_str!("disown.lua")),
            unlock: Script::new(include_str!("unlock.lua")),
        }
    }
}

/// The shared store's connection and what it has counted.
pub struct Redis {
    /// For the records' subscription, which needs a connection of its own.
    client: redis::Client,
    connection: ConnectionManager,
    breaker: Breaker,
    scripts: Scripts,
    pub settings: RedisSettings,
    pub keys: Keys,
    /// This process's id: in batch ids and lock tokens, so no two replicas collide.
    pub replica: String,
    batch_field: String,
    /// The runtime the blocking [`super::Backend`] calls wait on.
    runtime: tokio::runtime::Handle,
    errors: IntCounterVec,
    fallbacks: IntCounterVec,
    up: IntGauge,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("settings", &self.settings)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// A client for `settings.url`, connecting on first use: a replica starts, and
    /// serves under `on_store_error`, while Redis is still away.
    pub fn open(settings: &RedisSettings) -> Result<Arc<Self>, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(StoreError::from)?;
        let client = match &settings.ca_file {
            None => redis::Client::open(settings.url.as_str()),
            Some(path) => {
                let roots = std::fs::read(path)
                    .map_err(|e| StoreError(format!("[store] ca_file {}: {e}", path.display())))?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(roots),
                };
                redis::Client::build_with_tls(settings.url.as_str(), certificates)
            }
        }
        .map_err(|e| StoreError(format!("{}: {}", settings.redacted_url(), e.category())))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(settings.timeout);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| StoreError(format!("{}: {e}", settings.redacted_url())))?;
        let errors = IntCounterVec::new(
            Opts::new(
                "tenantgate_store_errors_total",
                "Calls to the shared store (Redis) that failed or were cut short by its breaker, by what they were for.",
            ),
            &["op"],
        )
        .map_err(StoreError::from)?;
        for op in Op::ALL {
            errors.with_label_values(&[op.name()]);
        }
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "tenantgate_store_fallbacks_total",
                "Limit decisions taken without the shared store, by [store] on_store_error.",
            ),
            &["mode"],
        )
        .map_err(StoreError::from)?;
        fallbacks.with_label_values(&[settings.on_error.name()]);
        let up = IntGauge::new(
            "tenantgate_store_up",
            "1 while the shared store answers; 0 while its breaker is open.",
        )
        .map_err(StoreError::from)?;
        let replica = uuid::Uuid::new_v4().simple().to_string();
        Ok(Arc::new(Self {
            client,
            connection,
            breaker: Breaker::default(),
            scripts: Scripts::new(),
            keys: Keys::new(&settings.key_prefix),
            settings: settings.clone(),
            batch_field: format!("b:{replica}"),
            replica,
            runtime,
            errors,
            fallbacks,
            up,
        }))
    }

    /// The collectors the admin `/metrics` serves.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.errors.clone()),
            Box::new(self.fallbacks.clone()),
            Box::new(self.up.clone()),
        ]
    }

    /// False while the breaker is open: calls fail at once.
    pub fn is_up(&self) -> bool {
        self.breaker.is_closed()
    }

    pub fn on_error(&self) -> OnStoreError {
        self.settings.on_error
    }

    /// The field of a usage row that holds the last batch this replica added to it;
    /// made once, since every admission with a cap names it.
    pub fn batch_field(&self) -> &str {
        &self.batch_field
    }

    /// Counts one decision taken without the store.
    pub fn fell_back(&self) {
        self.fallbacks
            .with_label_values(&[self.settings.on_error.name()])
            .inc();
    }

    /// Runs one call under the timeout and the breaker.
    async fn call<T, F, Fut>(&self, op: Op, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.breaker.allows() {
            self.errors.with_label_values(&[op.name()]).inc();
            return Err(StoreError("redis is unreachable (circuit open)".to_owned()));
        }
        // Only a Redis that cannot be reached trips the breaker: an error Redis
        // answered with (a script's, a key of the wrong type) fails this call alone.
        let outcome = tokio::time::timeout(self.settings.timeout, call(self.connection.clone()))
            .await
            .map_err(|_| {
                (
                    true,
                    format!("no answer within {:?}", self.settings.timeout),
                )
            })
            .and_then(|answer| {
                answer.map_err(|e| {
                    // A refused password is a Redis this replica cannot use either.
                    let unreachable = e.is_io_error()
                        || e.is_timeout()
                        || e.is_connection_dropped()
                        || e.is_connection_refusal()
                        || e.kind() == redis::ErrorKind::AuthenticationFailed;
                    (unreachable, e.to_string())
                })
            });
        match outcome {
            Ok(value) => {
                if self.breaker.succeeded() {
                    tracing::info!(url = %self.settings.redacted_url(), "redis answers again");
                }
                self.up.set(1);
                Ok(value)
            }
            Err((false, error)) => {
                // Redis answered: it is reachable, and a probe's place is given back.
                self.breaker.succeeded();
                self.up.set(1);
                self.errors.with_label_values(&[op.name()]).inc();
                tracing::warn!(%error, op = op.name(), "redis refused a call");
                Err(StoreError(format!("redis: {error}")))
            }
            Err((true, error)) => {
                self.errors.with_label_values(&[op.name()]).inc();
                if self.breaker.failed() {
                    tracing::warn!(url = %self.settings.redacted_url(), %error, on_store_error = self.settings.on_error.name(), "redis is unreachable; deciding without it");
                }
                if !self.breaker.is_closed() {
                    self.up.set(0);
                }
                Err(StoreError(format!("redis: {error}")))
            }
        }
    }

    /// Waits for an async call from blocking code (the [`super::Backend`] and
    /// [`super::records::RecordsBackend`] methods, which run off the async workers).
    fn block_on<T>(&self, call: impl Future<Output = T>) -> T {
        self.runtime.block_on(call)
    }

    /// Connects and loads every script, so the first requests pay neither; best
    /// effort (a Redis that is away is met under `on_store_error`).
    pub async fn warm(&self) {
        let scripts = [
            &self.scripts.gcra,
            &self.scripts.usage_row,
            &self.scripts.usage_day,
            &self.scripts.own,
            &self.scripts.disown,
            &self.scripts.unlock,
        ];
        for script in scripts {
            let loaded = self
                .call(Op::Health, |mut c| async move {
                    script.load_async(&mut c).await
                })
                .await;
            if let Err(error) = loaded {
                tracing::warn!(%error, "redis could not be reached at start; deciding under on_store_error until it answers");
                return;
            }
        }
    }

    /// One `PING`, for tests and start-up logs.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call(Op::Health, |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(drop)
    }
}
