//! The config file as serde sees it (SPEC sections 1-5, 9, 12), in the file's own
//! shape. A subtree that one stage owns is that stage's spec type; sections several
//! stages share (`[tenant]`, `[limits]`, `[[route]]`, `[tenants.ID]`) are split by
//! `compile.rs`. Only keys this version implements are accepted: an unknown key is an
//! error, never silently ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::admin::AdminSpec;
use super::watch::ReloadSpec;
use crate::forward::compile::UpstreamSpec;
use crate::identity::IdentitySpec;
use crate::limits::compile::{DegradeSpec, PlanSpec, PlanTable, ProjectSpec};
use crate::listen::ListenSpec;
use crate::meter::compile::UnitsSpec;
use crate::namespace::Unscoped;
use crate::respond::compile::ResponseSpec;
use crate::rewrite::compile::RewriteSpec;
use crate::route::Scope;
use crate::spec::units::Size;
use crate::store::settings::StoreSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub listen: ListenSpec,
    pub upstream: UpstreamSpec,
    #[serde(default)]
    pub identity: IdentitySpec,
    #[serde(default)]
    pub tenant: Tenant,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSettings>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub admin: AdminSpec,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub reload: ReloadSpec,
    #[serde(default)]
    pub store: StoreSpec,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub provision: Vec<crate::provision::StepSpec>,
    #[serde(default)]
    pub offboard: Vec<crate::provision::StepSpec>,
    #[serde(default)]
    pub verify: crate::scenario::VerifySpec,
}

/// `[metrics]` (SPEC 11).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Per-tenant series for the top K tenants by units; 0: none.
    pub per_tenant_top_k: usize,
}

/// `[tenant]`: the identity pattern, the namespace scheme, the privileged token and
/// the leak guard.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tenant {
    /// A regex every tenant id must match in full, narrowing SPEC 2's rules.
    pub pattern: Option<String>,
    pub privileged_token: Option<String>,
    pub namespace: String,
    pub separator: String,
    pub max_encoded: Option<usize>,
    pub unscoped: Unscoped,
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
            unscoped: Unscoped::Reject,
            main_namespace: "main".to_owned(),
            leak_guard: true,
        }
    }
}

/// `[limits]`: body bounds (stages 4 and 6) and plans (stage 3).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body: Size,
    pub max_response_body: Size,
    /// Every buffered request and response body together.
    pub max_buffered: Size,
    pub default_plan: Option<String>,
    pub plans: BTreeMap<String, PlanTable>,
    pub project: ProjectSpec,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: Size(8 * 1024 * 1024),
            max_response_body: Size(16 * 1024 * 1024),
            max_buffered: Size(256 * 1024 * 1024),
            default_plan: None,
            plans: BTreeMap::new(),
            project: ProjectSpec::default(),
        }
    }
}

/// `[[route]]`: its head (stage 2), rewrite rules (4), response rules (6), cost and
/// degradation (3) and units (7).
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
    pub rewrite: RewriteSpec,
    #[serde(default)]
    pub response: ResponseSpec,
    pub cost: Option<u64>,
    pub units: Option<UnitsSpec>,
    #[serde(default)]
    pub degradable: bool,
    pub degrade: Option<DegradeSpec>,
}

/// `[tenants.ID]`: blocked (stage 2), credentials (5), plan and overrides (3). The plan
/// overrides are flattened in, so unknown keys are collected and refused by
/// compilation rather than by serde.
#[derive(Debug, Default, Deserialize)]
pub struct TenantSettings {
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, String>,
    pub plan: Option<String>,
    #[serde(flatten)]
    pub overrides: PlanSpec,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A file for the audit log instead of stdout.
    pub audit_file: Option<std::path::PathBuf>,
    /// The longest an audit line waits in memory before it is written.
    pub audit_flush: crate::spec::units::Dur,
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            audit_file: None,
            audit_flush: crate::spec::units::Dur(std::time::Duration::from_millis(100)),
            level: "info".to_owned(),
        }
    }
}
