//! Stage 6: the response (SPEC 4.2). Hop-by-hop headers go; on tenant routes the answer
//! is inspected before a byte reaches the caller: `keep`, the leak guard, `unwrap` and
//! `unprepend` on JSON bodies, the guard and unwrap on `Location` and `Link`. (The
//! pipeline names the caller's namespace in `X-Tenant-Namespace` on every answer,
//! refusals included.)

pub mod headers;
pub mod json;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::Response;

use crate::body::{self, BodyStalled, ProxyBody};
use crate::config::Config;
use crate::hygiene;
use crate::meter::{self, ReportedUnits, RouteUnits};
use crate::namespace::{Classified, Namespaces};
use crate::refusal::Refusal;
use crate::rewrite::Namespace;
use crate::route::table::Route;
use crate::tenants::KnownTenants;
use json::{Blocked, ResponseRules};

pub const TENANT_NAMESPACE: HeaderName = HeaderName::from_static("x-tenant-namespace");

/// A route's response settings, compiled.
#[derive(Debug, Clone, Default)]
pub struct RouteResponse {
    pub rules: ResponseRules,
    /// Non-JSON or encoded answers (streams such as SSE) pass untouched.
    pub passthrough: bool,
}

/// Whose response this is, for the guard and unwrap.
pub struct Scope<'a> {
    pub namespaces: &'a Namespaces,
    pub root: &'a str,
    pub tenant: Option<&'a str>,
    pub guard: bool,
    pub config: &'a Config,
    pub known: &'a KnownTenants,
}

impl Scope<'_> {
    /// `Some(Some(plain))` for the caller's own id (`{ns}{sep}x` -> `x`, `{ns}` -> the
    /// tenant id), `Some(None)` for the caller's root when it has no tenant id.
    pub fn own<'v>(&self, value: &'v str) -> Option<Option<&'v str>>
    where
        Self: 'v,
    {
        let rest = value.strip_prefix(self.root)?;
        if rest.is_empty() {
            return Some(self.tenant);
        }
        rest.strip_prefix(self.namespaces.separator()).map(Some)
    }

    /// True when `value` is the caller's root or an id inside it.
    pub fn within(&self, value: &str) -> bool {
        self.namespaces.is_within(self.root, value)
    }

    /// True when `value` is another tenant's namespaced id, or exactly the root of a
    /// tenant this process knows.
    pub fn finding(&self, value: &str) -> bool {
        match self.namespaces.classify(value) {
            Classified::Namespaced { .. } => true,
            Classified::Root { tenant } => self.known.knows(self.config, &tenant),
            Classified::Other => false,
        }
    }
}

pub fn inspects(config: &Config, route: &Route) -> bool {
    let r = &route.response;
    !r.passthrough
        && (config.leak_guard
            || matches!(route.units, RouteUnits::Json(_))
            || r.rules.unwrap
            || r.rules.keep.is_some()
            || !r.rules.unprepend.is_empty())
}

pub async fn finish(
    config: &Config,
    known: &KnownTenants,
    route: &Route,
    namespace: Option<&Namespace>,
    head: bool,
    mut response: Response<ProxyBody>,
) -> Result<Response<ProxyBody>, Refusal> {
    hygiene::clean_response(response.headers_mut());
    let Some(namespace) = namespace else {
        return Ok(response);
    };
    let scope = Scope {
        namespaces: &config.namespaces,
        root: &namespace.root,
        tenant: namespace.tenant.as_deref(),
        guard: config.leak_guard,
        config,
        known,
    };
    let rules = &route.response.rules;
    if !inspects(config, route) {
        return Ok(response);
    }
    headers::process(response.headers_mut(), &scope, rules.unwrap)
        .map_err(|leaks| violation(route, &scope, leaks))?;
    if head || matches!(response.status().as_u16(), 204 | 304) {
        return Ok(response);
    }
    let headers = response.headers();
    if headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(opaque(route, "content-encoded"));
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > config.max_response_body as u64) {
        return Err(Refusal::ResponseTooLarge);
    }
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::rewrite::is_json_type);
    let (parts, body) = response.into_parts();
    let bytes = collect_at_most(body, config.max_response_body).await?;
    if bytes.is_empty() {
        return Ok(Response::from_parts(parts, body::empty()));
    }
    if !is_json {
        return Err(opaque(route, "not JSON"));
    }
    let processed = json::process(&bytes, rules, &scope).map_err(|blocked| match blocked {
        Blocked::Leak(leaks) => violation(route, &scope, leaks),
        Blocked::NotJson => opaque(route, "invalid JSON"),
    })?;
    let mut response = Response::from_parts(parts, body::empty());
    let bytes = processed.map_or(bytes, Bytes::from);
    if let RouteUnits::Json(pointer) = &route.units {
        let units = meter::read_units(&bytes, pointer);
        response.extensions_mut().insert(ReportedUnits(units));
    }
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    *response.body_mut() = body::full(bytes);
    Ok(response)
}

fn violation(route: &Route, scope: &Scope, leaks: usize) -> Refusal {
    tracing::error!(
        route = %route.name,
        tenant = scope.tenant.unwrap_or(scope.root),
        leaks,
        "isolation violation: the upstream answered with another tenant's ids; the response was withheld"
    );
    Refusal::IsolationViolation
}

fn opaque(route: &Route, what: &'static str) -> Refusal {
    tracing::error!(
        route = %route.name,
        what,
        "the upstream's answer on a tenant route cannot be inspected; set passthrough = true only for streams that carry no ids"
    );
    Refusal::IsolationViolation
}

async fn collect_at_most(body: ProxyBody, max: usize) -> Result<Bytes, Refusal> {
    let collected = body::collect_at_most(body, max).await.map_err(|e| {
        if body::is_too_large(&e) {
            Refusal::ResponseTooLarge
        } else if e.downcast_ref::<BodyStalled>().is_some() {
            Refusal::UpstreamTimeout
        } else {
            Refusal::UpstreamUnavailable
        }
    })?;
    Ok(collected.to_bytes())
}
