//! Stage 2: which rule applies. The path is made canonical, the first route that matches
//! method and path is chosen, and the route's scope admits the caller or refuses.

pub mod canonical;
pub mod table;
pub mod template;

use http::HeaderMap;

use crate::config::model::Scope;
use crate::config::Config;
use crate::identity::TenantId;
use crate::namespace::Unscoped;
use crate::refusal::Refusal;
use crate::rewrite::Namespace;
use canonical::CanonicalPath;
use table::Route;
use template::Captures;

pub const PRIVILEGED_TOKEN_HEADER: &str = "x-tenantgate-token";

/// Whose limits and usage a request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Tenant(TenantId),
    /// Unscoped shared calls and privileged calls: the project's bucket.
    Project,
}

impl Caller {
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Self::Tenant(t) => Some(t),
            Self::Project => None,
        }
    }
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
    config: &'c Config,
    method: &http::Method,
    raw_path: &str,
    headers: &HeaderMap,
    tenant: Option<TenantId>,
) -> Result<Admitted<'c>, Refusal> {
    let path = CanonicalPath::parse(raw_path).map_err(Refusal::BadPath)?;
    let (route, captures) =
        config
            .routes
            .select(method, &path)
            .ok_or_else(|| Refusal::RouteNotAllowed {
                method: method.to_string(),
            })?;
    // A tenant whose encoded form is too long is invalid on every route.
    let root = match &tenant {
        Some(t) => Some(config.namespaces.root(t).map_err(Refusal::InvalidTenant)?),
        None => None,
    };
    let (caller, namespace) = match (route.scope, tenant, root) {
        (Scope::Deny, _, _) => {
            return Err(Refusal::RouteDenied {
                route: route.name.clone(),
            })
        }
        (Scope::Tenant, None, _) if config.namespaces.unscoped == Unscoped::Main => {
            let main = Namespace {
                root: config.namespaces.main.clone(),
                tenant: None,
            };
            (Caller::Project, Some(main))
        }
        (Scope::Tenant, None, _) => {
            return Err(Refusal::TenantRequired {
                header: config.identity.header.to_string(),
            })
        }
        (Scope::Privileged, _, _) => {
            require_privileged_token(config, headers)?;
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
        if config.tenant(tenant.as_str()).is_some_and(|t| t.blocked) {
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

fn require_privileged_token(config: &Config, headers: &HeaderMap) -> Result<(), Refusal> {
    let secret = config
        .privileged_token
        .as_ref()
        .ok_or(Refusal::PrivilegedRequired)?;
    let mut sent = headers.get_all(PRIVILEGED_TOKEN_HEADER).iter();
    match (sent.next(), sent.next()) {
        (Some(token), None) if secret.matches(token.as_bytes()) => Ok(()),
        _ => Err(Refusal::PrivilegedRequired),
    }
}
