//! `jwks_url`: keys fetched from an identity provider inside the cluster (Keycloak, Dex).
//! A task fetches them at start and every `jwks_refresh`; a token naming an unknown
//! `kid` asks for one more fetch, at most once per `jwks_min_refresh`, so a rotation
//! at the provider is picked up at once while random kids cannot make tenantgate
//! hammer it. A failed fetch keeps the last good set: an outage of the provider
//! does not log anyone out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus::IntCounter;
use tokio::sync::{watch, Notify};

use super::keys::KeySet;

/// How long one fetch may take, and the most a JWKS document may weigh.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// How long, and how many, requests naming an unknown `kid` wait for the fetch they
/// caused: a bound on the connections a slow provider and random kids can hold.
const KID_WAIT: Duration = Duration::from_secs(3);
const MAX_KID_WAITERS: usize = 32;

pub struct RemoteKeys {
    pub url: http::Uri,
    /// Nanoseconds; a reload that changes them updates the running set in place.
    refresh: AtomicU64,
    min_refresh: AtomicU64,
    current: ArcSwapOption<KeySet>,
    /// Counts finished fetch attempts, good or bad, so a waiter learns of either.
    attempts: watch::Sender<u64>,
    wake: Arc<Notify>,
    /// When an unknown `kid` last asked for a fetch, and the attempt it waits for.
    kid_refetch: Mutex<Option<(Instant, u64)>>,
    kid_waiters: AtomicUsize,
    /// Whether a refresher runs for this set (`explain` fetches once, without one).
    refreshed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("url", &self.url)
            .field("refresh", &self.refresh())
            .field("min_refresh", &self.min_refresh())
            .finish_non_exhaustive()
    }
}

/// The counters a refresher bumps: fetches that worked and fetches that failed.
#[derive(Debug, Clone)]
pub struct FetchCounters {
    pub success: IntCounter,
    pub error: IntCounter,
}

impl RemoteKeys {
    pub fn new(url: http::Uri, refresh: Duration, min_refresh: Duration) -> Self {
        Self {
            url,
            refresh: AtomicU64::new(nanos(refresh)),
            min_refresh: AtomicU64::new(nanos(min_refresh)),
            current: ArcSwapOption::empty(),
            attempts: watch::Sender::new(0),
            wake: Arc::new(Notify::new()),
            kid_refetch: Mutex::new(None),
            kid_waiters: AtomicUsize::new(0),
            refreshed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn refresh(&self) -> Duration {
        Duration::from_nanos(self.refresh.load(Ordering::Relaxed))
    }

    pub fn min_refresh(&self) -> Duration {
        Duration::from_nanos(self.min_refresh.load(Ordering::Relaxed))
    }

    /// Takes a reloaded config's timings; the refresher wakes to use them.
    fn retime(&self, from: &Self) {
        self.refresh.store(nanos(from.refresh()), Ordering::Relaxed);
        self.min_refresh
            .store(nanos(from.min_refresh()), Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// The last good set; `None` until a fetch has worked once.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Fetches once now; `explain` uses this, the process uses [`spawn_refresher`].
    pub async fn fetch_now(&self) -> Result<usize, String> {
        let fetched = fetch(&client(), &self.url).await;
        self.attempts.send_modify(|n| *n += 1);
        let set = fetched?;
        let count = set.len();
        self.current.store(Some(Arc::new(set)));
        Ok(count)
    }

    /// Asks the refresher for a fetch because a token named an unknown `kid`, and
    /// waits for it; false when one was asked for within `min_refresh` and is done.
    pub async fn refetch_for_unknown_kid(&self) -> bool {
        if !self.refreshed.load(Ordering::Acquire) {
            return false;
        }
        let target = {
            let mut last = self
                .kid_refetch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let done = *self.attempts.borrow();
            match *last {
                Some((at, wanted)) if at.elapsed() < self.min_refresh() => {
                    if done >= wanted {
                        return false;
                    }
                    wanted
                }
                _ => {
                    *last = Some((Instant::now(), done + 1));
                    self.wake.notify_one();
                    done + 1
                }
            }
        };
        if self.kid_waiters.fetch_add(1, Ordering::AcqRel) >= MAX_KID_WAITERS {
            self.kid_waiters.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let mut attempts = self.attempts.subscribe();
        let waited = tokio::time::timeout(KID_WAIT, attempts.wait_for(|n| *n >= target));
        let fetched = matches!(waited.await, Ok(Ok(_)));
        self.kid_waiters.fetch_sub(1, Ordering::AcqRel);
        fetched
    }

    /// Starts the task that keeps this set fresh. It holds the keys only weakly, so it
    /// ends once no config names this URL any more.
    fn spawn_refresher(self: &Arc<Self>, counters: FetchCounters) {
        self.refreshed.store(true, Ordering::Release);
        let weak = Arc::downgrade(self);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            let client = client();
            loop {
                let Some(this) = weak.upgrade() else { break };
                let wait = match fetch(&client, &this.url).await {
                    Ok(set) => {
                        tracing::info!(url = %this.url, keys = set.len(), skipped = set.skipped, "JWKS fetched");
                        this.current.store(Some(Arc::new(set)));
                        counters.success.inc();
                        this.refresh()
                    }
                    Err(error) => {
                        let kept = this.current.load().as_ref().map_or(0, |s| s.len());
                        tracing::warn!(url = %this.url, %error, kept, "JWKS fetch failed; the last good keys stay in use");
                        counters.error.inc();
                        this.min_refresh().min(this.refresh())
                    }
                };
                this.attempts.send_modify(|n| *n += 1);
                drop(this);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = wake.notified() => {}
                }
            }
        });
    }
}

impl Drop for RemoteKeys {
    /// Wakes the refresher, which then finds its keys gone and ends, instead of
    /// sleeping out a `jwks_refresh` first.
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(FETCH_TIMEOUT));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(connector)
}

async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &http::Uri,
) -> Result<KeySet, String> {
    let request = http::Request::get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("the provider answered {}", response.status()));
        }
        Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| format!("reading the document: {e}"))
    };
    let bytes = tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))??;
    KeySet::parse(&bytes).map_err(|e| format!("the document is not usable: {e}"))
}

/// The remote key sets of every installed config, by URL, so that a reload which
/// keeps a `jwks_url` keeps its keys and its one refresher (with the new timings).
#[derive(Debug, Default)]
pub struct RemoteRegistry {
    by_url: Mutex<HashMap<String, Weak<RemoteKeys>>>,
}

impl RemoteRegistry {
    /// Points a freshly compiled `jwks_url` identity at the running key set.
    pub fn adopt_into(&self, identity: &mut super::IdentitySettings, counters: &FetchCounters) {
        if let super::Proof::Jwt(jwt) = &mut identity.proof {
            if let super::jwt::JwtKeys::Remote(remote) = &mut jwt.keys {
                *remote = self.adopt(remote, counters);
            }
        }
    }

    /// The running set for `compiled`'s source if there is one; else `compiled`,
    /// with its refresher started.
    pub fn adopt(&self, compiled: &Arc<RemoteKeys>, counters: &FetchCounters) -> Arc<RemoteKeys> {
        let mut by_url = self
            .by_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by_url.retain(|_, weak| weak.strong_count() > 0);
        let url = compiled.url.to_string();
        if let Some(running) = by_url.get(&url).and_then(Weak::upgrade) {
            running.retime(compiled);
            return running;
        }
        compiled.spawn_refresher(counters.clone());
        by_url.insert(url, Arc::downgrade(compiled));
        compiled.clone()
    }

    /// A `jwks_url` of `identity` that no running config uses yet: a reload fetches
    /// it before it is installed, so a new provider that cannot be reached is refused
    /// like a bad file instead of logging everyone out.
    pub fn unknown<'i>(
        &self,
        identity: &'i super::IdentitySettings,
    ) -> Option<&'i Arc<RemoteKeys>> {
        let super::Proof::Jwt(jwt) = &identity.proof else {
            return None;
        };
        let super::jwt::JwtKeys::Remote(remote) = &jwt.keys else {
            return None;
        };
        let by_url = self
            .by_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let running = by_url
            .get(&remote.url.to_string())
            .is_some_and(|w| w.strong_count() > 0);
        (!running).then_some(remote)
    }
}
