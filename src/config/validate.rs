//! Turns the deserialized file into a compiled [`Config`], or into every error found,
//! each with the key path it belongs to.

use std::collections::{BTreeMap, HashMap};

use http::{HeaderName, HeaderValue, Uri};
use regex::Regex;

use super::load::{key, KeyPath, Seg};
use super::model::{self, IdentityMode, Scope};
use super::{
    AdminSettings, Config, HeaderList, ListenSettings, ReloadSettings, StoreSettings, TenantPolicy,
    UpstreamSettings,
};
use crate::hygiene::StripSet;
use crate::identity::{IdentitySettings, TenantId};
use crate::namespace::Namespaces;
use crate::respond::json::{Keep, ResponseRules};
use crate::respond::RouteResponse;
use crate::rewrite::json::JsonRule;
use crate::rewrite::pointer::Pointer;
use crate::rewrite::template::ValueTemplate;
use crate::rewrite::{Location, Mode, RouteRewrite};
use crate::route::table::{Route, RouteTable};
use crate::route::PRIVILEGED_TOKEN_HEADER;
use crate::secret::Secret;

mod limits;

/// hyper refuses a smaller read buffer, and the headers must fit in it.
const MIN_HEADER_BYTES: u64 = 8 * 1024;

#[derive(Default)]
struct Errors(Vec<(KeyPath, String)>);

impl Errors {
    fn add(&mut self, path: KeyPath, message: impl Into<String>) {
        self.0.push((path, message.into()));
    }
}

pub fn compile(file: &model::File) -> Result<Config, Vec<(KeyPath, String)>> {
    let mut errors = Errors::default();
    let mut warnings = Vec::new();

    let listen = listen(&file.listen, &mut errors);
    let identity = identity(file, &mut errors);
    let upstream = upstream(&file.upstream, &mut errors);
    let routes = routes(file, identity.as_ref(), &mut errors, &mut warnings);
    let namespaces = namespaces(&file.tenant, &mut errors);
    let max_body = usize::try_from(file.limits.max_body.0).unwrap_or(usize::MAX);
    let max_response_body = usize::try_from(file.limits.max_response_body.0).unwrap_or(usize::MAX);
    let tenants = tenants(file, identity.as_ref(), &mut errors);
    let limits = limits::settings(file, &mut errors);
    if let Some(tenants) = &tenants {
        let named: Vec<_> = file
            .limits
            .plans
            .iter()
            .filter_map(|(name, fields)| {
                let mut quiet = Errors::default();
                limits::plan_quietly(name, fields, &mut quiet)
            })
            .collect();
        let plans = named
            .iter()
            .chain(tenants.values().filter_map(|t| t.plan.as_ref()));
        limits::check_costs(file, plans, &limits.project, &mut errors);
    }

    let privileged_token = match &file.tenant.privileged_token {
        Some(t) if t.is_empty() => {
            errors.add(
                vec![key("tenant"), key("privileged_token")],
                "privileged_token is empty",
            );
            None
        }
        Some(t) => Some(Secret::new(t)),
        None => None,
    };
    if privileged_token.is_none() {
        for (i, route) in file.routes.iter().enumerate() {
            if route.scope == Scope::Privileged {
                errors.add(
                    vec![key("route"), Seg::Index(i), key("scope")],
                    "a privileged route needs [tenant] privileged_token",
                );
            }
        }
    }

    let admin_token = match &file.admin.token {
        Some(t) if t.is_empty() => {
            errors.add(vec![key("admin"), key("token")], "[admin] token is empty");
            None
        }
        Some(t) => Some(Secret::new(t)),
        None => {
            warnings.push(
                "[admin] token is not set: /admin/* and /usage/* answer 401 to everyone".to_owned(),
            );
            None
        }
    };
    if file.admin.addr == file.listen.addr && file.listen.addr.port() != 0 {
        errors.add(
            vec![key("admin"), key("addr")],
            "the admin listener needs its own address, not [listen] addr",
        );
    }
    if !matches!(
        file.log.level.as_str(),
        "trace" | "debug" | "info" | "warn" | "error" | "off"
    ) {
        errors.add(
            vec![key("log"), key("level")],
            "level must be one of trace, debug, info, warn, error, off",
        );
    }

    if file.store.kind == model::StoreKind::Redis {
        errors.add(
            vec![key("store"), key("kind")],
            "kind = \"redis\" (shared state across replicas) is not supported yet; use \"embedded\"",
        );
    }
    let configured_names = configured_header_names(file);
    let (
        Some(listen),
        Some(identity),
        Some(upstream),
        Some(routes),
        Some(tenants),
        Some(namespaces),
    ) = (listen, identity, upstream, routes, tenants, namespaces)
    else {
        return Err(errors.0);
    };
    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    let strip = StripSet::new(
        configured_names
            .iter()
            .map(String::as_str)
            .chain([identity.header.as_str(), PRIVILEGED_TOKEN_HEADER]),
    );
    Ok(Config {
        listen,
        upstream,
        identity,
        routes,
        tenants,
        privileged_token,
        namespaces,
        max_body,
        max_response_body,
        leak_guard: file.tenant.leak_guard,
        limits,
        admin: AdminSettings {
            addr: file.admin.addr,
            token: admin_token,
        },
        log_level: file.log.level.clone(),
        store: StoreSettings {
            path: file.store.path.clone(),
            flush: file.store.flush.0,
        },
        per_tenant_top_k: file.metrics.per_tenant_top_k,
        audit_file: file.log.audit_file.clone(),
        reload: ReloadSettings {
            watch: file.reload.watch,
            debounce: file.reload.debounce.0,
            poll: file.reload.poll.0,
        },
        strip,
        warnings,
    })
}

fn listen(model: &model::Listen, errors: &mut Errors) -> Option<ListenSettings> {
    let path = |k: &str| vec![key("listen"), key(k)];
    if model.max_header_bytes.0 < MIN_HEADER_BYTES {
        errors.add(
            path("max_header_bytes"),
            "max_header_bytes must be at least 8KiB",
        );
    }
    if model.max_header_bytes.0 > 16 * 1024 * 1024 {
        errors.add(
            path("max_header_bytes"),
            "max_header_bytes must be at most 16MiB",
        );
    }
    if model.max_connections == 0 {
        errors.add(
            path("max_connections"),
            "max_connections must be at least 1",
        );
    }
    if model.header_read_timeout.0.is_zero() {
        errors.add(
            path("header_read_timeout"),
            "header_read_timeout must be more than 0s",
        );
    }
    Some(ListenSettings {
        addr: model.addr,
        shutdown_grace: model.shutdown_grace.0,
        drain_delay: model.drain_delay.0,
        header_read_timeout: model.header_read_timeout.0,
        max_header_bytes: usize::try_from(model.max_header_bytes.0).unwrap_or(usize::MAX),
        max_connections: model.max_connections,
    })
}

fn identity(file: &model::File, errors: &mut Errors) -> Option<IdentitySettings> {
    let path = |k: &str| vec![key("identity"), key(k)];
    let model = &file.identity;
    if model.mode != IdentityMode::Header {
        errors.add(path("mode"), "only mode = \"header\" is supported by this version; jwt and api_key are not built yet");
    }
    let header = match HeaderName::from_bytes(model.header.as_bytes()) {
        Ok(h) => h,
        Err(_) => {
            errors.add(
                path("header"),
                format!("{:?} is not a valid header name", model.header),
            );
            return None;
        }
    };
    if crate::hygiene::same_header_loosely(header.as_str(), PRIVILEGED_TOKEN_HEADER) {
        errors.add(
            path("header"),
            "the identity header cannot be X-Tenantgate-Token",
        );
    }
    if model.mode == IdentityMode::Header
        && !model.trust_network
        && !file.listen.addr.ip().is_loopback()
    {
        errors.add(
            vec![key("listen"), key("addr")],
            format!(
                "header mode trusts {} from anyone who can reach {}; listen on a loopback address, or set [identity] trust_network = true if only the app can reach this port",
                model.header, file.listen.addr
            ),
        );
    }
    let pattern = match &file.tenant.pattern {
        None => None,
        Some(p) => match Regex::new(&format!("^(?:{p})$")) {
            Ok(re) => Some(re),
            Err(e) => {
                errors.add(
                    vec![key("tenant"), key("pattern")],
                    format!("invalid regex: {e}"),
                );
                return None;
            }
        },
    };
    Some(IdentitySettings { header, pattern })
}

fn upstream(model: &model::Upstream, errors: &mut Errors) -> Option<UpstreamSettings> {
    let path = |k: &str| vec![key("upstream"), key(k)];
    let uri: Uri = match model.url.parse() {
        Ok(u) => u,
        Err(e) => {
            errors.add(
                path("url"),
                format!("invalid upstream url {:?}: {e}", model.url),
            );
            return None;
        }
    };
    let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
        errors.add(
            path("url"),
            "the upstream url needs a scheme and a host, like http://127.0.0.1:8000",
        );
        return None;
    };
    if scheme != http::uri::Scheme::HTTP {
        errors.add(
            path("url"),
            "only http:// upstreams are supported by this version (https comes with TLS)",
        );
    }
    if uri.query().is_some() {
        errors.add(path("url"), "the upstream url cannot carry a query string");
    }
    for (k, d) in [
        ("connect_timeout", model.connect_timeout),
        ("timeout", model.timeout),
        ("body_timeout", model.body_timeout),
    ] {
        if d.0.is_zero() {
            errors.add(path(k), format!("{k} must be more than 0s"));
        }
    }
    let set_headers = headers(&model.set_headers, path("set_headers"), errors);
    Some(UpstreamSettings {
        origin: scheme,
        authority,
        base_path: uri.path().trim_end_matches('/').to_owned(),
        connect_timeout: model.connect_timeout.0,
        timeout: model.timeout.0,
        body_timeout: model.body_timeout.0,
        retries: model.retries,
        pool_idle_timeout: model.pool_idle_timeout.0,
        set_headers,
    })
}

fn namespaces(t: &model::Tenant, errors: &mut Errors) -> Option<Namespaces> {
    Namespaces::new(
        &t.namespace,
        &t.separator,
        t.max_encoded,
        t.unscoped,
        &t.main_namespace,
    )
    .map_err(|e| {
        let field = if e.contains("main_namespace") {
            "main_namespace"
        } else if e.contains("separator") {
            "separator"
        } else {
            "namespace"
        };
        errors.add(vec![key("tenant"), key(field)], e);
    })
    .ok()
}

fn routes(
    file: &model::File,
    identity: Option<&IdentitySettings>,
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) -> Option<RouteTable> {
    let mut compiled = Vec::with_capacity(file.routes.len());
    for (i, route) in file.routes.iter().enumerate() {
        let path = |k: &str| vec![key("route"), Seg::Index(i), key(k)];
        let (methods, template) = match Route::parse_match(&route.matcher) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.add(path("match"), e);
                continue;
            }
        };
        let at = vec![key("route"), Seg::Index(i)];
        let response = response_rules(route, at.clone(), errors);
        let rewrite = rewrite_rules(route, &template, identity, at, errors);
        let (cost, units, degrade) = limits::route_limits(route, i, errors);
        compiled.push(Route {
            index: i,
            name: route
                .name
                .clone()
                .unwrap_or_else(|| route.matcher.trim().to_owned()),
            match_text: route.matcher.trim().to_owned(),
            methods,
            template,
            scope: route.scope,
            rewrite,
            response,
            cost,
            units,
            degrade,
        });
    }
    if compiled.len() != file.routes.len() {
        return None;
    }
    let table = RouteTable::new(compiled);
    let names: Vec<&str> = table.iter().map(|r| r.name.as_str()).collect();
    for (later, earlier) in table.shadowed() {
        warnings.push(format!(
            "route {:?} can never match: the earlier route {:?} matches every request it would",
            names[later], names[earlier]
        ));
    }
    if table.is_empty() {
        warnings.push(
            "no [[route]] is configured: every request is refused (deny by default)".to_owned(),
        );
    }
    Some(table)
}

fn tenants(
    file: &model::File,
    identity: Option<&IdentitySettings>,
    errors: &mut Errors,
) -> Option<HashMap<String, TenantPolicy>> {
    let pattern = identity.and_then(|i| i.pattern.as_ref());
    let mut out = HashMap::with_capacity(file.tenants.len());
    for (id, settings) in &file.tenants {
        let path = vec![key("tenants"), key(id)];
        if let Err(e) = TenantId::parse(id, pattern) {
            errors.add(
                path.clone(),
                format!("[tenants.{id:?}] is not a valid tenant id: {e}"),
            );
        }
        let mut header_path = path;
        header_path.push(key("upstream_headers"));
        out.insert(
            id.clone(),
            TenantPolicy {
                blocked: settings.blocked,
                upstream_headers: headers(&settings.upstream_headers, header_path, errors),
                plan: limits::tenant_plan(file, id, settings, errors),
            },
        );
    }
    Some(out)
}

/// Compiles `[route.rewrite]` and the route's `set_headers`, enforcing the SPEC 4.1
/// table of which mode may stand at which location.
fn rewrite_rules(
    route: &model::Route,
    template: &crate::route::template::Template,
    identity: Option<&IdentitySettings>,
    at: KeyPath,
    errors: &mut Errors,
) -> RouteRewrite {
    let path = |parts: &[&str]| {
        let mut p = at.clone();
        p.extend(parts.iter().map(|k| key(k)));
        p
    };
    let mut out = RouteRewrite::default();
    for (name, value) in &route.set_headers {
        let at = path(&["set_headers", name]);
        let Some(header) = settable_header(name, at.clone(), errors) else {
            continue;
        };
        match ValueTemplate::parse(value) {
            Ok(t) => out.set_headers.push((header, t)),
            Err(e) => errors.add(at, format!("{name}: {e}")),
        }
    }
    let templated = out.set_headers.iter().any(|(_, t)| t.is_templated());
    if route.scope != Scope::Tenant && (templated || !route.rewrite.is_empty()) {
        errors.add(
            path(&["scope"]),
            "rewrite rules and {ns}/{tenant} templates apply only to tenant routes (a shared route rewrites nothing)",
        );
        return out;
    }
    let rules = &route.rewrite;
    for (name, mode) in &rules.path {
        let at = path(&["rewrite", "path", name]);
        let Ok(mode) = Mode::parse(mode, Location::Path).map_err(|e| errors.add(at.clone(), e))
        else {
            continue;
        };
        match template.param_index(name) {
            Some(index) => out.path.push((index, mode)),
            None if template.rest_name() == Some(name.as_str()) => errors.add(
                at,
                format!("{{*{name}}} is never rewritten; name a single segment"),
            ),
            None => errors.add(at, format!("the match template has no {{{name}}} segment")),
        }
    }
    for (name, mode) in &rules.query {
        let at = path(&["rewrite", "query", name]);
        if let Ok(mode) = Mode::parse(mode, Location::Query).map_err(|e| errors.add(at, e)) {
            out.query.push((name.clone(), mode));
        }
    }
    for (pointer, mode) in &rules.json {
        let at = path(&["rewrite", "json", pointer]);
        let parsed = Pointer::parse(pointer).map_err(|e| errors.add(at.clone(), e));
        let mode = Mode::parse(mode, Location::Json).map_err(|e| errors.add(at, e));
        if let (Ok(pointer), Ok(mode)) = (parsed, mode) {
            out.json.push(JsonRule { pointer, mode });
        }
    }
    for (name, mode) in &rules.header {
        let at = path(&["rewrite", "header", name]);
        let Some(header) = settable_header(name, at.clone(), errors) else {
            continue;
        };
        if identity.is_some_and(|i| i.is_lookalike(header.as_str())) {
            errors.add(
                at,
                "the identity header is never forwarded; rewrite another header",
            );
            continue;
        }
        if let Ok(mode) = Mode::parse(mode, Location::Header).map_err(|e| errors.add(at, e)) {
            out.header.push((header, mode));
        }
    }
    out
}

/// Compiles `[route.response]`: unwrap defaults to true on tenant routes; the
/// ownership forms (`learn`, `forget`, `keep.owned`) are refused until ownership exists.
fn response_rules(route: &model::Route, at: KeyPath, errors: &mut Errors) -> RouteResponse {
    let path = |parts: &[&str]| {
        let mut p = at.clone();
        p.extend(parts.iter().map(|k| key(k)));
        p
    };
    let model = &route.response;
    let declared = model.unwrap.is_some()
        || model.keep.is_some()
        || !model.unprepend.is_empty()
        || model.passthrough;
    if route.scope != Scope::Tenant {
        if declared {
            errors.add(
                path(&["response"]),
                "response rules apply only to tenant routes",
            );
        }
        return RouteResponse::default();
    }
    if model.learn.is_some() || model.forget.is_some() {
        let field = if model.learn.is_some() {
            "learn"
        } else {
            "forget"
        };
        errors.add(
            path(&["response", field]),
            "ownership of opaque ids (learn, forget) is not supported by this version yet",
        );
    }
    let keep = model.keep.as_ref().and_then(|keep| {
        let at = path(&["response", "keep"]);
        if keep.owned.is_some() || keep.at.is_some() {
            errors.add(at, "keep's owned form needs ownership, which this version does not support yet; use owner");
            return None;
        }
        let Some(owner) = &keep.owner else {
            errors.add(at, "keep needs owner = \"/pointer/in/each/item\"");
            return None;
        };
        match (Pointer::parse(&keep.items), Pointer::parse(owner)) {
            (Ok(items), Ok(owner)) => Some(Keep { items, owner }),
            (Err(e), _) | (_, Err(e)) => {
                errors.add(at, e);
                None
            }
        }
    });
    let mut unprepend = Vec::new();
    for (i, text) in model.unprepend.iter().enumerate() {
        match Pointer::parse(text) {
            Ok(p) => unprepend.push(p),
            Err(e) => {
                let mut at = path(&["response", "unprepend"]);
                at.push(Seg::Index(i));
                errors.add(at, e);
            }
        }
    }
    RouteResponse {
        rules: ResponseRules {
            unwrap: model.unwrap.unwrap_or(true),
            keep,
            unprepend,
        },
        passthrough: model.passthrough,
    }
}

/// A header name the config may set upstream: not one that frames or routes the request.
fn settable_header(name: &str, at: KeyPath, errors: &mut Errors) -> Option<HeaderName> {
    let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
        errors.add(at, format!("{name:?} is not a valid header name"));
        return None;
    };
    let frames = matches!(
        header.as_str(),
        "host"
            | "connection"
            | "transfer-encoding"
            | "content-length"
            | "te"
            | "upgrade"
            | "keep-alive"
            | "trailer"
    );
    if frames || crate::hygiene::same_header_loosely(header.as_str(), PRIVILEGED_TOKEN_HEADER) {
        errors.add(
            at,
            format!("{name} cannot be set by the config (it frames or routes the request)"),
        );
        return None;
    }
    Some(header)
}

fn headers(map: &BTreeMap<String, String>, path: KeyPath, errors: &mut Errors) -> HeaderList {
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let mut at = path.clone();
        at.push(key(name));
        let Some(header) = settable_header(name, at.clone(), errors) else {
            continue;
        };
        if value.contains("{ns}") || value.contains("{tenant}") {
            errors.add(at, "templates ({ns}, {tenant}) belong in a tenant route's set_headers, not in credentials shared by every route");
            continue;
        }
        match HeaderValue::from_str(value) {
            Ok(v) => out.push((header, v)),
            Err(_) => errors.add(
                at,
                format!("the value for {name} is not a valid header value (visible ASCII only)"),
            ),
        }
    }
    out
}

fn configured_header_names(file: &model::File) -> Vec<String> {
    let upstream = file.upstream.set_headers.keys();
    let routes = file
        .routes
        .iter()
        .flat_map(|r| r.set_headers.keys().chain(r.rewrite.header.keys()));
    let tenants = file
        .tenants
        .values()
        .flat_map(|t| t.upstream_headers.keys());
    upstream.chain(routes).chain(tenants).cloned().collect()
}
