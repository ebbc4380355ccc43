//! The corridor every proxied request walks, stage by stage, in order. Read this file
//! first: each stage is one call into its own module, and data only flows forward.
//!
//! ```text
//! 1. identity  who is calling                           identity.rs
//! 2. route     canonical path, first matching rule,
//!              the rule's scope admits the caller       route/
//! 3. limits    quota, degradation, in-flight cap, rate  limits/
//! 4. rewrite   ids into the caller's namespace          rewrite/, namespace.rs
//! 5. forward   header hygiene, pooled upstream call     hygiene.rs, forward.rs
//! 6. respond   keep, leak guard, unwrap, hygiene        respond/
//! 7. meter     2xx units to the caller's usage          meter.rs, store/
//! ```
//!
//! Any stage may refuse with a [`Refusal`]; a refusal ends the walk before the
//! upstream is touched and becomes the JSON error of SPEC 7.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::app::App;
use crate::audit::AuditRecord;
use crate::body::{self, IdleTimeout, ProxyBody};
use crate::config::Config;
use crate::forward::Outgoing;
use crate::hygiene::{self, REQUEST_ID};
use crate::identity::TenantId;
use crate::limits::{self, Admission, Permit};
use crate::meter;
use crate::refusal::Refusal;
use crate::respond;
use crate::rewrite;
use crate::route::canonical::CanonicalPath;
use crate::rewrite::Namespace;
use crate::route::table::DegradeAnswer;
use crate::route::{self, Admitted, Caller};

/// The scheme clients use to reach the proxy listener.
const LISTENER_SCHEME: &str = "http";

/// What one request gathers on its walk for its answer and its audit line.
struct Trail {
    audit: AuditRecord,
    /// Rate-limit headers of the bucket charged (stage 3).
    limit_headers: HeaderMap,
    /// The caller's in-flight slot, held until the answer's body ends.
    permit: Option<Permit>,
    /// Whom the request is metered to (stage 7), once a route admitted it.
    caller: Option<Caller>,
    /// The units the upstream's answer is worth, once there is one.
    units: Option<u64>,
    /// Request body bytes read from the client.
    bytes_in: Arc<AtomicU64>,
    /// The namespace the route stage resolved: rewrite and respond work in it, and
    /// every answer names it in `X-Tenant-Namespace`.
    namespace: Option<Namespace>,
    /// The usage row a 2xx will write when its body ends.
    metered: Option<meter::Pending>,
    /// The matched route's position, for its metric handles.
    route: Option<usize>,
    /// How long the upstream took to its response head.
    upstream_time: Option<std::time::Duration>,
}

/// Counts a request in `tenantgate_inflight_requests` until its answer's body ends.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let in_flight = InFlight::new(&app.metrics.inflight);
    let snapshot = app.snapshot();
    let config = &snapshot.config;
    let request_id = hygiene::request_id(request.headers());
    let mut trail = Trail {
        audit: AuditRecord::new(request_id.clone(), request.method().clone()),
        limit_headers: HeaderMap::new(),
        permit: None,
        caller: None,
        units: None,
        bytes_in: Arc::default(),
        namespace: None,
        metered: None,
        route: None,
        upstream_time: None,
    };
    let walked = walk(&app, config, request, peer, &request_id, &mut trail).await;
    let mut response = walked.unwrap_or_else(|refusal| {
        app.metrics.rejected(refusal.code());
        match (&refusal, &trail.caller) {
            (Refusal::IsolationViolation, _) => app.metrics.isolation_violations.inc(),
            (Refusal::RateLimited { .. } | Refusal::TooManyInFlight, Some(caller)) => {
                app.metrics.rate_limited(limits::policy(config, caller))
            }
            _ => {}
        }
        trail.audit.reason = Some(refusal.code());
        refusal.to_response()
    });

    // 7. meter
    if let Some(caller) = trail.caller.take() {
        let units = trail.units.filter(|_| response.status().is_success());
        meter::quota_headers(
            &app,
            config,
            &caller,
            units.unwrap_or(0),
            response.headers_mut(),
        );
        if let Some(units) = units {
            trail.audit.units = Some(units);
            let units_metric = app.metrics.metered_counter(limits::policy(config, &caller));
            trail.metered = Some(meter::Pending {
                app: app.clone(),
                caller,
                units,
                bytes_in: trail.bytes_in.clone(),
                units_metric,
            });
        }
    }

    let headers = response.headers_mut();
    for (name, value) in trail.limit_headers.drain() {
        if let Some(name) = name {
            headers.insert(name, value);
        }
    }
    headers.insert(REQUEST_ID, request_id);
    if let Some(root) = trail
        .namespace
        .as_ref()
        .and_then(|ns| HeaderValue::from_str(&ns.root).ok())
    {
        headers.insert(respond::TENANT_NAMESPACE, root);
    }
    // One wrapper ends the request's life with its body: the usage row is written,
    // the in-flight slot and gauge released.
    let (metered, permit) = (trail.metered.take(), trail.permit.take());
    response = response.map(|body| {
        body::on_end(body, move |bytes_out| {
            if let Some(metered) = metered {
                metered.record(bytes_out);
            }
            drop((permit, in_flight));
        })
    });
    let elapsed = started.elapsed();
    if let Some(route) = trail.route.and_then(|i| snapshot.route_metrics.get(i)) {
        route.count(response.status());
        route.duration.observe(elapsed.as_secs_f64());
        if trail.audit.degraded {
            route.degraded.inc();
        }
    }
    let upstream = trail.upstream_time.unwrap_or_default();
    if let Some(upstream) = trail.upstream_time {
        app.metrics
            .upstream_duration
            .observe(upstream.as_secs_f64());
    }
    app.metrics
        .overhead
        .observe(elapsed.saturating_sub(upstream).as_secs_f64());
    trail.audit.emit(response.status(), elapsed);
    response
}

async fn walk(
    app: &Arc<App>,
    config: &Config,
    request: Request<Incoming>,
    peer: SocketAddr,
    request_id: &HeaderValue,
    trail: &mut Trail,
) -> Result<Response<ProxyBody>, Refusal> {
    let (parts, body) = request.into_parts();
    let body = IdleTimeout::new(body, config.upstream.body_timeout).boxed_unsync();
    let body = body::counted(body, trail.bytes_in.clone());

    // 1. identity
    let tenant = identify(config, &parts)?;
    trail.audit.tenant = tenant.as_ref().map(ToString::to_string);

    // 2. route
    let mut admitted = admit(config, &parts, tenant)?;
    let matched = admitted.route;
    trail.audit.route = Some(matched.name.clone());
    trail.route = Some(matched.index);
    trail.namespace = admitted.namespace.take();
    if let Some(tenant) = admitted.caller.tenant() {
        app.known.note(tenant.as_str());
    }

    // 3. limits
    trail.caller = Some(admitted.caller.clone());
    let admission = app
        .limiter
        .admit(
            config,
            matched,
            &admitted.caller,
            &limits::Env {
                usage: &app.usage,
                clock: app.clock.as_ref(),
                queue_wait: &app.metrics.queue_wait,
            },
            &mut trail.limit_headers,
        )
        .await?;
    match admission {
        Admission::Forward(permit) => trail.permit = permit,
        Admission::Degrade(answer) => {
            trail.audit.degraded = true;
            return Ok(degraded(answer));
        }
    }

    // 4. rewrite, then header hygiene
    let head = parts.method == Method::HEAD;
    let namespace = trail.namespace.as_ref();
    let outgoing = rewrite(config, admitted, namespace, parts, body, peer, request_id).await?;

    // 5. forward
    let sent = Instant::now();
    let response = app.upstream.send(&config.upstream, outgoing).await;
    trail.upstream_time = Some(sent.elapsed());
    let response = response?;
    trail.audit.upstream_status = Some(response.status().as_u16());

    // 6. respond
    let response = respond::finish(
        config,
        &app.known,
        matched,
        trail.namespace.as_ref(),
        head,
        response,
    )
    .await?;
    trail.units = Some(meter::units(matched, &response));
    Ok(response)
}

/// The route's own answer past a soft cap (SPEC 6.3).
fn degraded(answer: &DegradeAnswer) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(answer.body.clone()));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, answer.content_type.clone());
    headers.insert(limits::headers::DEGRADED, HeaderValue::from_static("1"));
    response
}

/// Stage 2 on a request's head: the matched route and what it admits.
fn admit<'c>(
    config: &'c Config,
    parts: &Parts,
    tenant: Option<TenantId>,
) -> Result<Admitted<'c>, Refusal> {
    let (method, path, headers) = (&parts.method, parts.uri.path(), &parts.headers);
    route::admit(config, method, path, headers, tenant)
}

fn identify(config: &Config, parts: &Parts) -> Result<Option<TenantId>, Refusal> {
    config
        .identity
        .read(&parts.headers)
        .map_err(Refusal::InvalidTenant)
}

/// Stage 4 and the request's final form: rewritten path, query, headers and body,
/// after hygiene, as the upstream will receive it.
async fn rewrite(
    config: &Config,
    admitted: Admitted<'_>,
    namespace: Option<&Namespace>,
    parts: Parts,
    body: ProxyBody,
    peer: SocketAddr,
    request_id: &HeaderValue,
) -> Result<Outgoing, Refusal> {
    let tenant_headers = admitted
        .caller
        .tenant()
        .and_then(|t| config.tenant(t.as_str()))
        .map(|t| t.upstream_headers.as_slice())
        .unwrap_or_default();
    // The response stage reads tenant answers, so it asks for them uncompressed.
    let inspects = namespace.is_some() && respond::inspects(config, admitted.route);
    let query = parts.uri.query();
    let rewritten =
        rewrite::request(config, admitted, namespace, query, &parts.headers, body).await?;
    let uri = upstream_uri(config, &rewritten.path, rewritten.query.as_deref())?;

    let mut headers = config.strip.clean(parts.headers);
    hygiene::add_forwarding(&mut headers, peer, LISTENER_SCHEME);
    headers.insert(REQUEST_ID, request_id.clone());
    // Most specific last, so a per-tenant key wins.
    let configured = config
        .upstream
        .set_headers
        .iter()
        .chain(&rewritten.headers)
        .chain(tenant_headers);
    for (name, value) in configured {
        headers.insert(name.clone(), value.clone());
    }
    if inspects {
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }
    if let Some(len) = rewritten.content_length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(Outgoing {
        method: parts.method,
        uri,
        headers,
        body: rewritten.body,
    })
}

/// `tenantgate explain`: stages 1, 2 and 4 on a synthetic request, through the same
/// functions as the proxy. Returns the matched route's name and the upstream request.
pub async fn dry_run(
    config: &Config,
    request: Request<ProxyBody>,
) -> Result<(String, Outgoing), Refusal> {
    let (parts, body) = request.into_parts();
    let tenant = identify(config, &parts)?;
    let mut admitted = admit(config, &parts, tenant)?;
    let name = admitted.route.name.clone();
    let namespace = admitted.namespace.take();
    let peer = SocketAddr::from(([127, 0, 0, 1], 0));
    let request_id = hygiene::request_id(&parts.headers);
    let outgoing = rewrite(
        config,
        admitted,
        namespace.as_ref(),
        parts,
        body,
        peer,
        &request_id,
    )
    .await?;
    Ok((name, outgoing))
}

/// The canonical path, re-encoded, under the upstream's base path, and the query.
fn upstream_uri(
    config: &Config,
    path: &CanonicalPath,
    query: Option<&str>,
) -> Result<Uri, Refusal> {
    let upstream = &config.upstream;
    let mut target = upstream.base_path.clone();
    target.push_str(&path.encode());
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    Uri::builder()
        .scheme(upstream.origin.clone())
        .authority(upstream.authority.clone())
        .path_and_query(target)
        .build()
        .map_err(|_| Refusal::BadPath(route::canonical::BadPath::BadEscape))
}
