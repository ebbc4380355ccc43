//! Stage 6: the response (SPEC 4.2). Hop-by-hop headers go; on tenant routes the answer
//! is inspected before a byte reaches the caller: `keep`, the leak guard, `unwrap` and
//! `unprepend` on JSON bodies, the guard and unwrap on `Location` and `Link`. (The
//! pipeline names the caller's namespace in `X-Tenant-Namespace` on every answer,
//! refusals included.)

pub mod compile;
pub mod headers;
pub mod json;

use std::collections::BTreeSet;

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::Response;

use std::sync::Arc;

use crate::body::{self, BodyStalled, ProxyBody};
use crate::budget::{Budget, Held};
use crate::hygiene;
use crate::json::number::NumberPath;
use crate::namespace::{Classified, Namespace, NamespaceScheme};
use crate::refusal::Refusal;
use crate::store::records::Records;
use crate::store::Tenants;
use json::{Blocked, ResponseRules};

pub const TENANT_NAMESPACE: HeaderName = HeaderName::from_static("x-tenant-namespace");

/// A route's response settings, compiled.
#[derive(Debug, Clone, Default)]
pub struct RouteResponse {
    pub rules: ResponseRules,
    /// Non-JSON or encoded answers (streams such as SSE) pass untouched.
    pub passthrough: bool,
    /// `forget = true`: a 2xx drops the caller's ownership of the request's `owned:` ids.
    pub forget: bool,
}

/// Stage 6's settings beside the per-route rules.
#[derive(Debug, Clone)]
pub struct RespondSettings {
    /// `[tenant] leak_guard`.
    pub leak_guard: bool,
    /// `[limits] max_response_body`: the largest answer the stage buffers.
    pub max_response_body: usize,
    /// Tenants the config names: their bare roots are leaks even before they are seen.
    pub configured: BTreeSet<String>,
}

/// Units the stage read from a JSON answer, for the meter.
#[derive(Debug, Clone, Copy)]
pub struct ReportedUnits(pub u64);

/// Opaque ids a 2xx answer teaches its caller (`learn`): (kind, id). The pipeline
/// records them before the answer leaves.
#[derive(Debug, Clone, Default)]
pub struct Learned(pub Vec<(String, String)>);

/// Whom a response goes to, for the guard and unwrap.
pub struct Recipient<'a> {
    pub namespaces: &'a NamespaceScheme,
    pub root: &'a str,
    pub tenant: Option<&'a str>,
    pub guard: bool,
    /// Tenants the config names.
    pub configured: &'a BTreeSet<String>,
    /// Tenants seen on requests.
    pub known: &'a Tenants,
    /// Who owns which opaque id, for `keep`'s owned form.
    pub records: &'a Records,
}

impl Recipient<'_> {
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

    /// True when the caller owns `id` of `kind`. Ownership is held by namespace
    /// root, which no two callers share.
    pub fn owns(&self, kind: &str, id: &str) -> bool {
        self.records.owns(self.root, kind, id)
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
            Classified::Root { tenant } => {
                self.configured.contains(&tenant) || self.known.knows(&tenant)
            }
            Classified::Other => false,
        }
    }
}

/// What the stage is answering, besides the response itself.
pub struct Answering<'a> {
    /// The route's name, for the log of a withheld answer.
    pub route: &'a str,
    pub rules: &'a RouteResponse,
    /// Read the units at this pointer from the answer, for the meter.
    pub units_at: Option<&'a NumberPath>,
    pub namespaces: &'a NamespaceScheme,
    /// The caller's namespace; `None` on routes other than tenant routes.
    pub namespace: Option<&'a Namespace>,
    pub known: &'a Tenants,
    pub records: &'a Records,
    pub head: bool,
    /// What a buffered answer is taken from.
    pub budget: &'a Arc<Budget>,
}

/// True when the stage reads a tenant route's answer, which it then asks for
/// uncompressed.
pub fn inspects(
    settings: &RespondSettings,
    rules: &RouteResponse,
    units_at: Option<&NumberPath>,
) -> bool {
    let r = rules;
    !r.passthrough
        && (settings.leak_guard
            || units_at.is_some()
            || r.rules.unwrap
            || r.rules.keep.is_some()
            || !r.rules.learn.is_empty()
            || !r.rules.unprepend.is_empty())
}

pub async fn finish(
    settings: &RespondSettings,
    on: Answering<'_>,
    mut response: Response<ProxyBody>,
) -> Result<Response<ProxyBody>, Refusal> {
    hygiene::clean_response(response.headers_mut());
    let Some(namespace) = on.namespace else {
        return Ok(response);
    };
    let scope = Recipient {
        namespaces: on.namespaces,
        root: &namespace.root,
        tenant: namespace.tenant.as_deref(),
        guard: settings.leak_guard,
        configured: &settings.configured,
        known: on.known,
        records: on.records,
    };
    let route = on.route;
    let rules = &on.rules.rules;
    if !inspects(settings, on.rules, on.units_at) {
        return Ok(response);
    }
    headers::process(response.headers_mut(), &scope, rules.unwrap)
        .map_err(|leaks| violation(route, &scope, leaks))?;
    if on.head || matches!(response.status().as_u16(), 204 | 304) {
        return Ok(response);
    }
    let headers = response.headers();
    let encoded = headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::json::is_media_type);
    if response.status().is_server_error() && (encoded || !is_json) {
        // A backend's own error page is no answer to inspect: it is withheld as the
        // backend failing, not as a leak.
        tracing::warn!(
            route,
            status = response.status().as_u16(),
            "the upstream failed with a body that is not JSON; answering upstream_unavailable"
        );
        return Err(Refusal::UpstreamUnavailable);
    }
    if encoded {
        return Err(opaque(route, "content-encoded"));
    }
    let max = settings.max_response_body;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(Refusal::ResponseTooLarge);
    }
    let (parts, body) = response.into_parts();
    let mut held = on.budget.claim();
    let bytes = collect_at_most(body, max, &mut held).await?;
    if bytes.is_empty() {
        return Ok(Response::from_parts(parts, body::empty()));
    }
    if !is_json {
        return Err(opaque(route, "not JSON"));
    }
    let processed = body::heavy(bytes.len(), || {
        json::process_within(&bytes, rules, &scope, Some(&mut held))
    });
    let processed = processed.map_err(|blocked| match blocked {
        Blocked::Leak(leaks) => violation(route, &scope, leaks),
        Blocked::NotJson => opaque(route, "invalid JSON"),
        Blocked::OverBudget => Refusal::Overloaded,
    })?;
    let mut response = Response::from_parts(parts, body::empty());
    if response.status().is_success() && !processed.learned.is_empty() {
        response.extensions_mut().insert(Learned(processed.learned));
    }
    let bytes = processed.body.map_or(bytes, Bytes::from);
    if let Some(path) = on.units_at {
        let units = path.read(&bytes);
        response.extensions_mut().insert(ReportedUnits(units));
    }
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, hygiene::decimal(bytes.len()));
    // The buffered answer counts against the budget until the client has taken it.
    *response.body_mut() = body::on_end(body::full(bytes), move |_| drop(held));
    Ok(response)
}

fn violation(route: &str, scope: &Recipient, leaks: usize) -> Refusal {
    tracing::error!(
        route,
        tenant = scope.tenant.unwrap_or(scope.root),
        leaks,
        "isolation violation: the upstream answered with another tenant's ids; the response was withheld"
    );
    Refusal::IsolationViolation
}

fn opaque(route: &str, what: &'static str) -> Refusal {
    tracing::error!(
        route,
        what,
        "the upstream's answer on a tenant route cannot be inspected; set passthrough = true only for streams that carry no ids"
    );
    Refusal::IsolationViolation
}

async fn collect_at_most(body: ProxyBody, max: usize, held: &mut Held) -> Result<Bytes, Refusal> {
    body::collect_within(body, max, held).await.map_err(|e| {
        if body::is_too_large(&e) {
            Refusal::ResponseTooLarge
        } else if body::is_over_budget(&e) {
            Refusal::Overloaded
        } else if e.downcast_ref::<BodyStalled>().is_some() {
            Refusal::UpstreamTimeout
        } else {
            Refusal::UpstreamUnavailable
        }
    })
}
