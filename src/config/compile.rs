//! Hands each stage its part of the deserialized file and assembles the compiled
//! [`Config`], or returns every error the stages found, each at its key path.

use super::model::{self, File};
use super::{admin, Config, ReloadSettings, RouteRules};
use crate::forward::compile::ForwardSpec;
use crate::hygiene::PRIVILEGED_TOKEN_HEADER;
use crate::identity::{self, AuthFailure, TenantId};
use crate::limits::compile::{LimitsSpec, RouteLimitsSpec, TenantLimits};
use crate::meter::compile::UnitsSpec;
use crate::namespace::{self, SchemeSpec};
use crate::refusal::Refusal;
use crate::respond::RespondSettings;
use crate::rewrite::compile::RouteRewriteSpec;
use crate::rewrite::RewriteSettings;
use crate::route::compile::{RouteHead, RouteSpec};
use crate::route::table::Route;
use crate::route::template::Template;
use crate::spec::{at, key, Errors, KeyPath, Seg};
use crate::{forward, limits, listen, meter, provision, respond, rewrite, route, scenario, store};

pub fn compile(file: &File) -> Result<Config, Vec<(KeyPath, String)>> {
    let mut errors = Errors::default();
    let mut warnings = Vec::new();
    let tenant = &file.tenant;

    let listen = listen::compile(&file.listen, &vec![key("listen")], &mut errors);
    let identity = identity::compile::compile(
        &file.identity,
        tenant.pattern.as_deref(),
        (
            file.listen.addr,
            file.listen
                .tls
                .as_ref()
                .is_some_and(|t| t.client_ca.is_some()),
        ),
        &mut errors,
    );
    let namespaces = namespace::compile(
        &SchemeSpec {
            namespace: &tenant.namespace,
            separator: &tenant.separator,
            max_encoded: tenant.max_encoded,
            unscoped: tenant.unscoped,
            main_namespace: &tenant.main_namespace,
        },
        &mut errors,
    );
    check_tenants(file, identity.as_ref(), &mut errors);
    let verified = identity
        .as_ref()
        .and_then(|i| i.credential_header())
        .is_some();
    if verified && tenant.unscoped == namespace::Unscoped::Main {
        // Anyone without a credential would otherwise reach tenant routes, as "main".
        errors.add(
            vec![key("tenant"), key("unscoped")],
            "unscoped = \"main\" would let callers without a credential into tenant routes; in jwt and api_key modes a tenant route needs a verified tenant",
        );
    }
    // Each route's template, for the stages that read it; `None` where the match does
    // not parse (stage 2 reports it).
    let templates: Vec<Option<Template>> = file
        .routes
        .iter()
        .map(|r| Route::parse_match(&r.matcher).ok().map(|(_, t)| t))
        .collect();

    let route = route::compile::compile(
        &RouteSpec {
            routes: file
                .routes
                .iter()
                .map(|r| RouteHead {
                    name: r.name.as_deref(),
                    matcher: &r.matcher,
                    scope: r.scope,
                })
                .collect(),
            privileged_token: tenant.privileged_token.as_deref(),
            blocked: file
                .tenants
                .iter()
                .filter(|(_, t)| t.blocked)
                .map(|(id, _)| id.as_str())
                .collect(),
            missing_tenant: missing_tenant(file, identity.as_ref()),
        },
        &mut errors,
        &mut warnings,
    );
    let limits = limits::compile::compile(
        &LimitsSpec {
            default_plan: file.limits.default_plan.as_deref(),
            plans: &file.limits.plans,
            project: &file.limits.project,
            tenants: file
                .tenants
                .iter()
                .map(|(id, t)| TenantLimits {
                    id,
                    plan: t.plan.as_deref(),
                    overrides: &t.overrides,
                })
                .collect(),
            routes: file
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| RouteLimitsSpec {
                    matched: templates[i].is_some(),
                    cost: r.cost,
                    held: r.units.as_ref().map_or(1, UnitsSpec::held),
                    degradable: r.degradable,
                    degrade: r.degrade.as_ref(),
                })
                .collect(),
        },
        &mut errors,
    );
    let rules = route_rules(
        file,
        &templates,
        identity.as_ref(),
        limits.routes,
        &mut errors,
        &mut warnings,
    );
    let forward = forward::compile::compile(
        &ForwardSpec {
            upstream: &file.upstream,
            tenant_headers: file
                .tenants
                .iter()
                .map(|(id, t)| (id.as_str(), &t.upstream_headers))
                .collect(),
            strip: never_forwarded(file, identity.as_ref()),
            listener_tls: file.listen.tls.is_some(),
        },
        &mut errors,
    );
    let admin = admin::compile(&file.admin, file.listen.addr, &mut errors, &mut warnings);
    let provision = provision::compile(&file.provision, &file.offboard, &mut errors);
    let verify = scenario::compile(&file.verify, &mut errors);
    let store = store::settings::compile(&file.store, &mut errors);
    if !matches!(
        file.log.level.as_str(),
        "trace" | "debug" | "info" | "warn" | "error" | "off"
    ) {
        errors.add(
            vec![key("log"), key("level")],
            "level must be one of trace, debug, info, warn, error, off",
        );
    }
    if file.log.audit_flush.0 < std::time::Duration::from_millis(1) {
        errors.add(
            vec![key("log"), key("audit_flush")],
            "audit_flush must be at least 1ms: it is how long an audit line may wait in memory (default 100ms)",
        );
    }

    let (Some(identity), Some(namespaces), Some(route), Some(rules), Some(forward), true) = (
        identity,
        namespaces,
        route,
        rules,
        forward,
        errors.is_empty(),
    ) else {
        return Err(errors.into_inner());
    };
    Ok(Config {
        listen,
        identity,
        namespaces,
        route,
        limits: limits.settings,
        rewrite: RewriteSettings {
            max_body: usize::try_from(file.limits.max_body.0).unwrap_or(usize::MAX),
        },
        forward,
        respond: RespondSettings {
            leak_guard: tenant.leak_guard,
            max_response_body: usize::try_from(file.limits.max_response_body.0)
                .unwrap_or(usize::MAX),
            configured: file.tenants.keys().cloned().collect(),
        },
        provision,
        verify,
        rules,
        admin,
        log_level: file.log.level.clone(),
        max_buffered: usize::try_from(file.limits.max_buffered.0).unwrap_or(usize::MAX),
        audit_file: file.log.audit_file.clone(),
        audit_flush: file.log.audit_flush.0,
        per_tenant_top_k: file.metrics.per_tenant_top_k,
        reload: ReloadSettings::of(&file.reload),
        store,
        warnings,
    })
}

/// Stages 4, 6 and 7 compile their rules for each route; stage 3's come compiled.
/// `None` when a route's match did not parse (stage 2 reported it).
fn route_rules(
    file: &File,
    templates: &[Option<Template>],
    identity: Option<&identity::IdentitySettings>,
    limits: Vec<limits::RouteLimits>,
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) -> Option<Vec<RouteRules>> {
    let mut rules = Vec::with_capacity(file.routes.len());
    for ((i, r), limits) in file.routes.iter().enumerate().zip(limits) {
        let base = vec![key("route"), Seg::Index(i)];
        let Some(template) = &templates[i] else {
            continue;
        };
        let respond = respond::compile::compile_route(r.scope, &r.response, &base, errors);
        let rewrite = rewrite::compile::compile_route(
            &RouteRewriteSpec {
                scope: r.scope,
                template,
                set_headers: &r.set_headers,
                rewrite: &r.rewrite,
                identity,
                roots: [&file.tenant.namespace, &file.tenant.main_namespace],
            },
            &base,
            errors,
        );
        if r.response.keep.is_some() && !rewrite.scopes() {
            warnings.push(format!(
                "route[{i}] ({}): response.keep filters the answer after the backend has applied its limit and offset, and no request rule scopes the call upstream (bind, set, prefix, prepend or owned:), so a page can come back short or empty; scope the request and keep `keep` as the safety net",
                r.name.as_deref().unwrap_or(&r.matcher)
            ));
        }
        let buffered = !r.response.passthrough;
        let meter =
            meter::compile::compile_route(r.units.as_ref(), r.scope, buffered, &base, errors);
        rules.push(RouteRules {
            limits,
            rewrite,
            respond,
            meter,
        });
    }
    (rules.len() == file.routes.len()).then_some(rules)
}

/// `[tenants.ID]` keys must be valid tenant ids, and the tables hold known keys only
/// (the plan overrides are flattened in, so serde cannot refuse the others).
fn check_tenants(file: &File, identity: Option<&identity::IdentitySettings>, errors: &mut Errors) {
    let pattern = identity.and_then(|i| i.pattern.as_ref());
    for (id, settings) in &file.tenants {
        if let Err(e) = TenantId::parse(id, pattern) {
            errors.add(
                at(&[], &["tenants", id]),
                format!("[tenants.{id:?}] is not a valid tenant id: {e}"),
            );
        }
        for name in settings.unknown.keys() {
            errors.add(
                at(&[], &["tenants", id, name]),
                format!("unknown key {name:?} in [tenants.{id}]"),
            );
        }
    }
}

/// What a per-user route reached without any identity answers: a request for the
/// header in header mode, 401 for the credential otherwise.
fn missing_tenant(file: &File, identity: Option<&identity::IdentitySettings>) -> Refusal {
    match identity.and_then(|i| i.credential_header()) {
        Some(credential) => Refusal::Unauthenticated(AuthFailure::Missing(credential.clone())),
        None => Refusal::TenantRequired {
            header: identity.map_or(file.identity.header.clone(), |i| i.header.to_string()),
        },
    }
}

/// Client headers never forwarded: the identity header, the credential header of jwt
/// and api_key mode, the privileged token, and
/// every header the config sets itself (so a client cannot pre-empt one).
fn never_forwarded<'f>(
    file: &'f File,
    identity: Option<&'f identity::IdentitySettings>,
) -> Vec<&'f str> {
    let upstream = file.upstream.set_headers.keys();
    let routes = file
        .routes
        .iter()
        .flat_map(|r: &model::Route| r.set_headers.keys().chain(r.rewrite.header.keys()));
    let tenants = file
        .tenants
        .values()
        .flat_map(|t| t.upstream_headers.keys());
    upstream
        .chain(routes)
        .chain(tenants)
        .map(String::as_str)
        .chain(file.upstream.remove_headers.iter().map(String::as_str))
        .chain(identity.map(|i| i.header.as_str()))
        .chain(
            identity
                .and_then(|i| i.credential_header())
                .map(|h| h.as_str()),
        )
        .chain([PRIVILEGED_TOKEN_HEADER])
        .collect()
}
