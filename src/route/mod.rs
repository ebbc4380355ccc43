//! Stage 2: which rule applies. The path is made canonical, the first route that matches
//! method and path is chosen, and the route's scope admits the caller or refuses.

pub mod compile;
pub mod table;
pub mod template;

use std::collections::BTreeSet;

use http::HeaderMap;

use crate::hygiene::PRIVILEGED_TOKEN_HEADER;
use crate::identity::{Caller, TenantId};
use crate::namespace::{Namespace, NamespaceScheme, Unscoped};
use crate::path::CanonicalPath;
use crate::refusal::Refusal;
use crate::secret::Secret;
use table::{Route, RouteTable};
use template::Captures;

/// A route's scope (SPEC 4): who it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Tenant,
    Shared,
    Privileged,
    Deny,
}

/// Stage 2's settings: the table, and what admission checks besides it.
#[derive(Debug)]
pub struct RouteSettings {
    pub table: RouteTable,
    pub privileged_token: Option<Secret>,
    /// Tenants with `blocked = true`.
    pub blocked: BTreeSet<String>,
    /// What a per-user route reached without any identity answers.
    pub missing_tenant: Refusal,
}

/// A request the route stage let through, with everything later stages need.
#[derive(Debug)]
pub struct Admitted<'c> {
    pub route: &'c Route,
    pub path: CanonicalPath,
    pub captures: Captures,
    pub caller: Caller,
    /// The namespace a tenant route rewrites into; `None` on other scopes.
    pub namespace: Option<Namespace>,
}

pub fn admit<'c>(
    settings: &'c RouteSettings,
    namespaces: &NamespaceScheme,
    method: &http::Method,
    raw_path: &str,
    headers: &HeaderMap,
    tenant: Option<TenantId>,
) -> Result<Admitted<'c>, Refusal> {
    let path = CanonicalPath::parse(raw_path).map_err(Refusal::BadPath)?;
    let (route, captures) =
        settings
            .table
            .select(method, &path)
            .ok_or_else(|| Refusal::RouteNotAllowed {
                method: method.to_string(),
            })?;
    // A tenant whose encoded form is too long is invalid on every route.
    let root = match &tenant {
        Some(t) => Some(namespaces.root(t).map_err(Refusal::InvalidTenant)?),
        None => None,
    };
    let (caller, namespace) = match (route.scope, tenant, root) {
        (Scope::Deny, _, _) => {
            return Err(Refusal::RouteDenied {
                route: route.name.clone(),
            })
        }
        (Scope::Tenant, None, _) if namespaces.unscoped == Unscoped::Main => {
            let main = Namespace {
                root: namespaces.main.clone(),
                tenant: None,
            };
            (Caller::Project, Some(main))
        }
        (Scope::Tenant, None, _) => return Err(settings.missing_tenant.clone()),
        (Scope::Privileged, _, _) => {
            require_privileged_token(settings, headers)?;
            (Caller::Project, None)
        }
        (Scope::Tenant, Some(tenant), Some(root)) => {
            let namespace = Namespace {
                root,
                tenant: Some(tenant.to_string()),
            };
            (Caller::Tenant(tenant), Some(namespace))
        }
        (Scope::Tenant | Scope::Shared, Some(tenant), _) => (Caller::Tenant(tenant), None),
        (Scope::Shared, None, _) => (Caller::Project, None),
    };
    if let Some(tenant) = caller.tenant() {
        if settings.blocked.contains(tenant.as_str()) {
            return Err(Refusal::TenantBlocked);
        }
    }
    Ok(Admitted {
        route,
        path,
        captures,
        caller,
        namespace,
    })
}

fn require_privileged_token(settings: &RouteSettings, headers: &HeaderMap) -> Result<(), Refusal> {
    let secret = settings
        .privileged_token
        .as_ref()
        .ok_or(Refusal::PrivilegedRequired)?;
    let mut sent = headers.get_all(PRIVILEGED_TOKEN_HEADER).iter();
    match (sent.next(), sent.next()) {
        (Some(token), None) if secret.matches(token.as_bytes()) => Ok(()),
        _ => Err(Refusal::PrivilegedRequired),
    }
}
