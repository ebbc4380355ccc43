//! The configuration: the serde model of the file, its loading, and the compiled,
//! immutable [`Config`] that request handlers read through an `ArcSwap`. Each stage
//! compiles its own part (`identity/compile.rs`, `route/compile.rs`, ...); this module
//! parses, interpolates, hands each stage its part, collects every error with
//! `file:line:col`, and assembles the snapshot.

pub mod admin;
mod compile;
pub mod load;
pub mod model;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

pub use admin::AdminSettings;
pub use load::{load_file, load_str, process_env, ConfigError, ConfigErrors};
pub use watch::ReloadSettings;

use crate::forward::ForwardSettings;
use crate::identity::IdentitySettings;
use crate::limits::{LimitSettings, RouteLimits};
use crate::listen::ListenSettings;
use crate::meter::RouteUnits;
use crate::namespace::NamespaceScheme;
use crate::respond::{RespondSettings, RouteResponse};
use crate::rewrite::{RewriteSettings, RouteRewrite};
use crate::route::table::Route;
use crate::route::RouteSettings;
use crate::store::settings::StoreSettings;

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
    /// Metric handles per route (by [`Route::index`]), resolved when the snapshot is
    /// installed so requests never look them up.
    pub route_metrics: Vec<crate::metrics::RouteMetrics>,
}

/// Every stage's settings, each compiled by its stage, in the corridor's order.
#[derive(Debug)]
pub struct Config {
    pub listen: ListenSettings,
    /// 1. identity
    pub identity: IdentitySettings,
    /// The namespace scheme stages 2, 4 and 6 share.
    pub namespaces: NamespaceScheme,
    /// 2. route
    pub route: RouteSettings,
    /// 3. limits
    pub limits: LimitSettings,
    /// 4. rewrite
    pub rewrite: RewriteSettings,
    /// 5. forward
    pub forward: ForwardSettings,
    /// 6. respond
    pub respond: RespondSettings,
    /// `[[provision]]` and `[[offboard]]` (SPEC 4.4).
    pub provision: crate::provision::ProvisionSettings,
    /// `[verify]`: the canary scenarios and how often the proxy runs them.
    pub verify: crate::scenario::VerifySettings,
    /// What stages 3, 4, 6 and 7 do on each route, by [`Route::index`].
    pub rules: Vec<RouteRules>,
    pub admin: AdminSettings,
    pub log_level: String,
    /// `[limits] max_buffered`: the budget of every buffered body at once.
    pub max_buffered: usize,
    /// `[log] audit_file`; `None`: stdout.
    pub audit_file: Option<PathBuf>,
    /// `[log] audit_flush`: how long an audit line may wait in memory.
    pub audit_flush: std::time::Duration,
    /// `[metrics] per_tenant_top_k`.
    pub per_tenant_top_k: usize,
    pub reload: ReloadSettings,
    pub store: StoreSettings,
    /// Things `check` reports that do not stop the config from loading.
    pub warnings: Vec<String>,
}

/// One route's rules, each compiled by the stage that applies it.
#[derive(Debug)]
pub struct RouteRules {
    pub limits: RouteLimits,
    pub rewrite: RouteRewrite,
    pub respond: RouteResponse,
    pub meter: RouteUnits,
}

impl Config {
    /// The stages' rules for a route of this config's table.
    pub fn rules(&self, route: &Route) -> Option<&RouteRules> {
        self.rules.get(route.index)
    }
}

/// Command-line values that win over the file (SPEC 1).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub upstream: Option<String>,
    /// `[admin] token`, for `tenantgate dev`'s generated one.
    pub admin_token: Option<String>,
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
        if let Some(token) = &self.admin_token {
            file.admin.token = Some(token.clone());
        }
    }
}
