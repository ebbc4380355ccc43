//! The configuration: the serde model of the file, its loading and validation, and the
//! compiled, immutable [`Config`] that request handlers read through an `ArcSwap`.

pub mod load;
pub mod model;
pub mod units;
mod validate;
pub mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};

pub use load::{load_file, load_str, process_env, ConfigError, ConfigErrors};

use crate::hygiene::StripSet;
use crate::identity::IdentitySettings;
use crate::namespace::Namespaces;
use crate::route::table::RouteTable;
use crate::secret::Secret;

/// One loaded config: compiled settings plus what the admin API shows about them.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Config,
    /// Set when the snapshot is installed; 1 for the first config of a process.
    pub generation: u64,
    pub sha256: String,
    pub loaded_at: SystemTime,
    pub origin: String,
    /// The file as written, secrets hidden, for `GET /admin/config`.
    pub redacted: serde_json::Value,
    /// Metric handles per route (by [`Route::index`](crate::route::table::Route)),
    /// resolved when the snapshot is installed so requests never look them up.
    pub route_metrics: Vec<crate::metrics::RouteMetrics>,
}

pub type HeaderList = Vec<(HeaderName, HeaderValue)>;

#[derive(Debug)]
pub struct Config {
    pub listen: ListenSettings,
    pub upstream: UpstreamSettings,
    pub identity: IdentitySettings,
    pub routes: RouteTable,
    pub tenants: HashMap<String, TenantPolicy>,
    pub privileged_token: Option<Secret>,
    pub namespaces: Namespaces,
    /// `[limits] max_body`: the largest request body a rewrite may buffer.
    pub max_body: usize,
    /// `[limits] max_response_body`: the largest answer the response stage buffers.
    pub max_response_body: usize,
    pub leak_guard: bool,
    /// Plans and the project's limits (SPEC 6); bucket state lives in `App`, not here.
    pub limits: crate::limits::plan::LimitSettings,
    pub admin: AdminSettings,
    pub log_level: String,
    pub reload: ReloadSettings,
    pub store: StoreSettings,
    /// `[metrics] per_tenant_top_k`.
    pub per_tenant_top_k: usize,
    /// `[log] audit_file`; `None`: stdout.
    pub audit_file: Option<std::path::PathBuf>,
    /// Client headers removed before forwarding (SPEC 5), fixed per snapshot.
    pub strip: StripSet,
    /// Things `check` reports that do not stop the config from loading.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ListenSettings {
    pub addr: SocketAddr,
    pub shutdown_grace: Duration,
    pub drain_delay: Duration,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `scheme://authority` of the backend.
    pub origin: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// A path prefix from the URL (no trailing slash), prepended to every forwarded path.
    pub base_path: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub body_timeout: Duration,
    pub retries: u32,
    pub pool_idle_timeout: Duration,
    pub set_headers: HeaderList,
}

#[derive(Debug, Default)]
pub struct TenantPolicy {
    pub blocked: bool,
    pub upstream_headers: HeaderList,
    /// Its plan with its overrides applied; `None`: the default plan.
    pub plan: Option<crate::limits::plan::Plan>,
}

/// `[store]`; opened at start (a change needs a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub path: std::path::PathBuf,
    pub flush: Duration,
}

/// `[reload]`, read by the watcher when it starts (a change needs a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadSettings {
    pub watch: bool,
    pub debounce: Duration,
    pub poll: Duration,
}

#[derive(Debug)]
pub struct AdminSettings {
    pub addr: SocketAddr,
    pub token: Option<Secret>,
}

/// Command-line values that win over the file (SPEC 1).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub upstream: Option<String>,
}

impl Overrides {
    fn apply(&self, file: &mut model::File) {
        if let Some(addr) = self.listen {
            file.listen.addr = addr;
        }
        if let Some(addr) = self.admin_listen {
            file.admin.addr = addr;
        }
        if let Some(url) = &self.upstream {
            file.upstream.url.clone_from(url);
        }
    }
}

impl Config {
    pub fn tenant(&self, id: &str) -> Option<&TenantPolicy> {
        self.tenants.get(id)
    }
}
