//! The config file as serde sees it (SPEC sections 1-5, 9, 12). Only keys that this
//! version implements are accepted: an unknown key is an error, never silently ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use super::units::{Dur, Size};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub listen: Listen,
    pub upstream: Upstream,
    #[serde(default)]
    pub identity: Identity,
    #[serde(default)]
    pub tenant: Tenant,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSettings>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub reload: Reload,
    #[serde(default)]
    pub store: Store,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Embedded,
    Redis,
}

/// `[store]` (SPEC 8).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    pub kind: StoreKind,
    pub path: std::path::PathBuf,
    pub flush: Dur,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            path: "data/".into(),
            flush: Dur(std::time::Duration::from_secs(1)),
        }
    }
}

/// `[metrics]` (SPEC 11).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Per-tenant series for the top K tenants by units; 0: none.
    pub per_tenant_top_k: usize,
}

/// `[reload]`: how the config file is watched (SPEC 10).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reload {
    /// Watch the file's directory for changes (inotify and friends).
    pub watch: bool,
    /// Quiet time after the last change before the file is read.
    pub debounce: Dur,
    /// Interval of the content-hash poll that backs up the watch; "0s" turns it off.
    pub poll: Dur,
}

impl Default for Reload {
    fn default() -> Self {
        Self {
            watch: true,
            debounce: Dur(std::time::Duration::from_millis(200)),
            poll: Dur(std::time::Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    pub addr: SocketAddr,
    pub shutdown_grace: Dur,
    pub drain_delay: Dur,
    pub header_read_timeout: Dur,
    pub max_header_bytes: Size,
    pub max_connections: usize,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace: Dur(std::time::Duration::from_secs(20)),
            drain_delay: Dur(std::time::Duration::ZERO),
            header_read_timeout: Dur(std::time::Duration::from_secs(10)),
            max_header_bytes: Size(64 * 1024),
            max_connections: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub url: String,
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: Dur,
    #[serde(default = "defaults::timeout")]
    pub timeout: Dur,
    #[serde(default = "defaults::body_timeout")]
    pub body_timeout: Dur,
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    #[serde(default = "defaults::pool_idle_timeout")]
    pub pool_idle_timeout: Dur,
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
}

mod defaults {
    use super::Dur;
    use std::time::Duration;
    pub fn connect_timeout() -> Dur {
        Dur(Duration::from_secs(2))
    }
    pub fn timeout() -> Dur {
        Dur(Duration::from_secs(30))
    }
    pub fn body_timeout() -> Dur {
        Dur(Duration::from_secs(60))
    }
    pub fn retries() -> u32 {
        1
    }
    pub fn pool_idle_timeout() -> Dur {
        Dur(Duration::from_secs(90))
    }
    pub fn degrade_status() -> u16 {
        200
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityMode {
    #[default]
    Header,
    Jwt,
    ApiKey,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Identity {
    pub mode: IdentityMode,
    pub header: String,
    pub trust_network: bool,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            mode: IdentityMode::Header,
            header: "X-Tenant-Id".to_owned(),
            trust_network: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tenant {
    /// A regex every tenant id must match in full, narrowing SPEC 2's rules.
    pub pattern: Option<String>,
    pub privileged_token: Option<String>,
    pub namespace: String,
    pub separator: String,
    pub max_encoded: Option<usize>,
    pub unscoped: crate::namespace::Unscoped,
    pub main_namespace: String,
    pub leak_guard: bool,
}

impl Default for Tenant {
    fn default() -> Self {
        Self {
            pattern: None,
            privileged_token: None,
            namespace: "u_{tenant}".to_owned(),
            separator: "__".to_owned(),
            max_encoded: None,
            unscoped: crate::namespace::Unscoped::Reject,
            main_namespace: "main".to_owned(),
            leak_guard: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body: Size,
    pub max_response_body: Size,
    pub default_plan: Option<String>,
    pub plans: BTreeMap<String, PlanFields>,
    pub project: ProjectLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: Size(8 * 1024 * 1024),
            max_response_body: Size(16 * 1024 * 1024),
            default_plan: None,
            plans: BTreeMap::new(),
            project: ProjectLimits::default(),
        }
    }
}

/// `[limits.plans.NAME]`, and the same fields as per-tenant overrides (SPEC 6).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct PlanFields {
    pub rate: Option<u64>,
    pub per: Option<Dur>,
    pub burst: Option<u64>,
    pub max_concurrent: Option<u32>,
    pub daily_units: Option<u64>,
    pub soft_cap: Option<f64>,
    pub overflow: Option<Overflow>,
    pub max_wait: Option<Dur>,
    pub max_queue: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    Reject,
    Queue,
}

/// `[limits.project]`: the project bucket and the whole upstream's daily budget.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectLimits {
    pub rate: Option<u64>,
    pub per: Option<Dur>,
    pub burst: Option<u64>,
    pub daily_units: Option<u64>,
    pub degrade_at: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Tenant,
    Shared,
    Privileged,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: String,
    pub scope: Scope,
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub rewrite: Rewrite,
    #[serde(default)]
    pub response: Response,
    pub cost: Option<u64>,
    pub units: Option<Units>,
    #[serde(default)]
    pub degradable: bool,
    pub degrade: Option<Degrade>,
}

/// A route's metered units per 2xx: a number, or read from the response (SPEC 4).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Units {
    Fixed(u64),
    Header { header: String },
    Json { json: String },
}

/// `[route.degrade]`: the answer a degradable route gives past a soft cap.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Degrade {
    #[serde(default = "defaults::degrade_status")]
    pub status: u16,
    pub body: String,
    pub content_type: Option<String>,
}

/// `[route.response]` (SPEC 4.2).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub unwrap: Option<bool>,
    pub keep: Option<Keep>,
    pub learn: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub unprepend: Vec<String>,
    pub forget: Option<bool>,
    #[serde(default)]
    pub passthrough: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    pub items: String,
    pub owner: Option<String>,
    pub owned: Option<String>,
    pub at: Option<String>,
}

/// `[route.rewrite]`: location -> mode, per SPEC 4.1.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    #[serde(default)]
    pub path: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub json: BTreeMap<String, String>,
    #[serde(default)]
    pub header: BTreeMap<String, String>,
}

impl Rewrite {
    pub fn is_empty(&self) -> bool {
        self.path.is_empty()
            && self.query.is_empty()
            && self.json.is_empty()
            && self.header.is_empty()
    }
}

/// `[tenants.ID]`. The plan overrides are flattened in, so unknown keys are collected
/// and refused by validation rather than by serde.
#[derive(Debug, Default, Deserialize)]
pub struct TenantSettings {
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, String>,
    pub plan: Option<String>,
    #[serde(flatten)]
    pub overrides: PlanFields,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A file for the audit log instead of stdout.
    pub audit_file: Option<std::path::PathBuf>,
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            audit_file: None,
            level: "info".to_owned(),
        }
    }
}
