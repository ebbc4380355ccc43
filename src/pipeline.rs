//! The corridor every proxied request walks, stage by stage, in order. Read this file
//! first: each stage is one call into its own module, handed only its own settings
//! from the snapshot the request loaded once, and data only flows forward.
//!
//! ```text
//!   request
//!     |
//!  1. identity  who is calling                          identity/           -- refusal --+
//!  2. route     canonical path, first matching rule,                                     |
//!               the rule's scope admits the caller      route/, path.rs     -- refusal --+
//!  3. limits    degradation, quota, in-flight, rate     limits/             -- refusal --+
//!               (past a soft cap the route's degrade answer goes to 8) ------- degraded -+
//!  4. rewrite   ids into the caller's namespace         rewrite/            -- refusal --+
//!  5. forward   final form, pooled upstream call        forward/, hygiene   -- refusal --+
//!  6. respond   keep, leak guard, unwrap                respond/            -- refusal --+
//!  7. meter     a 2xx's units, recorded at body end     meter/, store/                   |
//!     |                                                                                  |
//!  8. answer    limit and quota headers, X-Request-Id,  answer.rs  <--------------------+
//!               X-Tenant-Namespace, metrics, the audit line
//! ```
//!
//! Any stage may refuse with a [`Refusal`]: the walk ends there, before the upstream is
//! touched (or, from stage 6, before a byte of its answer reaches the caller), and the
//! refusal's JSON error of SPEC 7 takes stage 8 like any answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;

use crate::answer::{self, Done, InFlight, Trail};
use crate::app::App;
use crate::audit::AuditRecord;
use crate::body::{self, IdleTimeout, ProxyBody};
use crate::budget::Budget;
use crate::clock::{Clock, SystemClock, NANOS_PER_SEC};
use crate::config::{Config, RouteRules};
use crate::forward::{self, Outgoing};
use crate::hygiene;
use crate::identity::{CanaryCaller, How, Identity, TenantId};
use crate::limits::{self, Admission, DegradeAnswer};
use crate::meter;
use crate::namespace::Namespace;
use crate::ownership;
use crate::provision;
use crate::refusal::Refusal;
use crate::respond;
use crate::rewrite::{self, OwnedIds, Target};
use crate::route::{self, Admitted};

pub async fn handle<B>(app: Arc<App>, request: Request<B>, peer: SocketAddr) -> Response<ProxyBody>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    let started = Instant::now();
    let in_flight = InFlight::new(&app.metrics.inflight);
    let snapshot = app.snapshot();
    let config = &snapshot.config;
    let request_id = hygiene::request_id(request.headers());
    let audit = AuditRecord::new(request_id.clone(), request.method().clone());
    let mut trail = Trail::new(audit);
    let unread_body = may_leave_body_unread(&request);
    let walked = walk(&app, config, request, peer, &request_id, &mut trail).await;
    let mut response =
        walked.unwrap_or_else(|refusal| answer::refused(&app, config, &mut trail, refusal));
    if unread_body && (trail.audit.reason.is_some() || trail.audit.degraded) {
        // hyper closes an HTTP/1.1 connection whose request body was not read to its
        // end (a refusal, a degrade answer); saying so keeps a pooling client from
        // sending its next request into the closing socket.
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    // 7. meter
    let metered = meter(&app, config, &mut trail, &response);
    // 8. answer
    let done = Done {
        request_id,
        metered,
        in_flight,
        started,
    };
    answer::answer(&app, &snapshot, trail, done, response)
}

/// True for an HTTP/1.x request that carries a body, which a refusal may leave unread.
fn may_leave_body_unread<B>(request: &Request<B>) -> bool {
    let http1 = request.version() < http::Version::HTTP_2;
    let headers = request.headers();
    let declared = headers
        .get(CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0");
    http1 && (declared || headers.contains_key(TRANSFER_ENCODING))
}

/// Stages 1 to 6. Stage 7 reads what the answer is worth after them.
async fn walk<'c, B>(
    app: &Arc<App>,
    config: &'c Config,
    request: Request<B>,
    peer: SocketAddr,
    request_id: &HeaderValue,
    trail: &mut Trail<'c>,
) -> Result<Response<ProxyBody>, Refusal>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    let (parts, body) = request.into_parts();
    let idle = config.forward.upstream.body_timeout;
    let body = IdleTimeout::new(body, idle).boxed_unsync();
    let body = body::counted(
        body,
        trail.bytes_in.clone(),
        trail.client_body_broke.clone(),
    );

    // 1. identity: verified before anything is charged, so an unverified claim never
    // becomes a rate-limit key or a metering row
    let tenant = identify(config, &parts, app.clock.as_ref()).await?.tenant;
    trail.audit.tenant = tenant.as_ref().map(TenantId::shared);
    // A verify canary is exempt from limits, quotas and metering: it proves isolation
    // and must neither spend a real budget nor leave usage rows.
    let canary = tenant.as_ref().is_some_and(TenantId::is_canary);

    // 2. route
    let mut admitted = admit(config, &parts, tenant)?;
    let rules = config.rules(admitted.route).ok_or(Refusal::Internal)?;
    trail.audit.route = Some(&admitted.route.name);
    trail.route = Some(admitted.route.index);
    trail.rules = Some(rules);
    trail.namespace = admitted.namespace.take();
    if let Some(tenant) = admitted.caller.tenant() {
        // Counted in flight until the answer ends, so an offboarding waits for it.
        let active = app.offboarding.enter(tenant.as_str());
        trail.active = Some(active.ok_or(Refusal::TenantBlocked)?);
        app.tenants.note(tenant.as_str());
    }

    // 3. limits
    trail.caller = Some(admitted.caller.clone());
    let env = limits::Env {
        usage: &app.usage,
        clock: app.clock.as_ref(),
        queue_wait: &app.metrics.queue_wait,
    };
    let admission = match canary {
        true => Admission::Forward(None),
        false => {
            let plan = limits::policy(&config.limits, &admitted.caller);
            app.metrics.plan_request(plan);
            app.limiter
                .admit(
                    &config.limits,
                    &rules.limits,
                    &admitted.caller,
                    &env,
                    &mut trail.rate_limit,
                )
                .await?
        }
    };
    match admission {
        Admission::Forward(permit) => trail.permit = permit,
        Admission::Degrade(answer) => {
            trail.audit.degraded = true;
            return Ok(degraded(answer));
        }
    }

    // 4. rewrite, 5. the request's final form
    let head = parts.method == Method::HEAD;
    let route_name: &str = &admitted.route.name;
    let namespace = trail.namespace.as_ref();
    let budget = &app.budget;
    let outgoing = rewrite(
        config, admitted, rules, namespace, parts, body, peer, request_id, budget,
    );
    let (outgoing, owned) = outgoing.await?;
    // 4. (end) the opaque ids the request names must be the caller's (SPEC 4.3)
    if let Some(namespace) = trail.namespace.as_ref() {
        ownership::check(app, &namespace.root, &owned, &mut trail.audit).await?;
    }

    // 5. forward, to a tenant provisioned first (SPEC 4.4)
    if let Some(namespace) = trail.namespace.as_ref() {
        let subject = provision::Subject {
            root: &namespace.root,
            tenant: namespace.tenant.as_deref().unwrap_or(&namespace.root),
        };
        let backend = provision::Backend {
            upstream: &app.upstream,
            forward: &config.forward,
            records: &app.records,
        };
        let steps = &config.provision.provision;
        app.provisioner.ensure(steps, subject, &backend).await?;
    }
    let sent = Instant::now();
    let response = app.upstream.send(&config.forward.upstream, outgoing).await;
    trail.upstream_time = Some(sent.elapsed());
    let broke = || {
        trail
            .client_body_broke
            .load(std::sync::atomic::Ordering::Acquire)
    };
    let response = response.map_err(|refusal| match refusal {
        // The upstream call failed because the client's body did: the client's error.
        Refusal::UpstreamUnavailable | Refusal::UpstreamTimeout if broke() => {
            Refusal::BadRequest("the request body was malformed or ended early".to_owned())
        }
        other => other,
    })?;
    trail.audit.upstream_status = Some(response.status().as_u16());

    // 6. respond
    let answering = respond::Answering {
        route: route_name,
        rules: &rules.respond,
        units_at: rules.meter.json_pointer(),
        namespaces: &config.namespaces,
        namespace: trail.namespace.as_ref(),
        known: &app.tenants,
        records: &app.records,
        head,
        budget: &app.budget,
    };
    let response = respond::finish(&config.respond, answering, response).await?;
    // 6. (end) what the answer taught or made the caller forget, durably first
    match trail.namespace.as_ref() {
        Some(namespace) => {
            let forget = rules.respond.forget.then_some(owned.as_slice());
            ownership::settle(app, &namespace.root, response, forget).await
        }
        None => Ok(response),
    }
}

/// Stage 7: what a forwarded 2xx answer is worth, to be recorded when its body ends.
/// Refusals and degraded answers are worth nothing.
fn meter(
    app: &Arc<App>,
    config: &Config,
    trail: &mut Trail<'_>,
    response: &Response<ProxyBody>,
) -> Option<meter::Pending> {
    let forwarded = trail.audit.reason.is_none() && !trail.audit.degraded;
    let (Some(caller), Some(rules)) = (&trail.caller, trail.rules) else {
        return None;
    };
    let canary = caller.tenant().is_some_and(TenantId::is_canary);
    if !forwarded || canary || !response.status().is_success() {
        return None;
    }
    let units = meter::units(&rules.meter, response);
    trail.audit.units = Some(units);
    Some(meter::Pending {
        ledger: app.ledger.clone(),
        caller: caller.clone(),
        units,
        bytes_in: trail.bytes_in.clone(),
        units_metric: app
            .metrics
            .metered_counter(limits::policy(&config.limits, caller)),
    })
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

/// Stage 1 on a request's head, at the process's time. A verify canary's request is
/// marked by the runner inside the process (an extension), never by a header.
async fn identify(config: &Config, parts: &Parts, clock: &dyn Clock) -> Result<Identity, Refusal> {
    if let Some(CanaryCaller(tenant)) = parts.extensions.get::<CanaryCaller>() {
        return Ok(Identity {
            tenant: Some(tenant.clone()),
            how: How::Canary,
        });
    }
    let now = clock.unix() as f64 / NANOS_PER_SEC as f64;
    let identity = config.identity.identify(&parts.headers, now).await?;
    Ok(identity)
}

/// Stage 2 on a request's head: the matched route and what it admits.
fn admit<'c>(
    config: &'c Config,
    parts: &Parts,
    tenant: Option<TenantId>,
) -> Result<Admitted<'c>, Refusal> {
    let (method, path, headers) = (&parts.method, parts.uri.path(), &parts.headers);
    route::admit(
        &config.route,
        &config.namespaces,
        method,
        path,
        headers,
        tenant,
    )
}

/// Stage 4, then the request's final form (stage 5's first half): rewritten path,
/// query, headers and body, after hygiene, as the upstream will receive it.
#[allow(clippy::too_many_arguments)]
async fn rewrite(
    config: &Config,
    admitted: Admitted<'_>,
    rules: &RouteRules,
    namespace: Option<&Namespace>,
    parts: Parts,
    body: ProxyBody,
    peer: SocketAddr,
    request_id: &HeaderValue,
    budget: &Arc<Budget>,
) -> Result<(Outgoing, OwnedIds), Refusal> {
    let target = namespace.map(|ns| Target::of(ns, &config.namespaces));
    let incoming = rewrite::Incoming {
        path: admitted.path,
        query: parts.uri.query(),
        headers: &parts.headers,
        body,
        budget,
    };
    let rewritten = rewrite::request(&config.rewrite, &rules.rewrite, target, incoming).await?;
    let units_at = rules.meter.json_pointer();
    let inspects =
        namespace.is_some() && respond::inspects(&config.respond, &rules.respond, units_at);
    let outgoing = forward::prepare(
        &config.forward,
        parts.method,
        parts.headers,
        forward::outgoing::Rewritten {
            path: &rewritten.path,
            query: rewritten.query.as_deref(),
            headers: &rewritten.headers,
            content_length: rewritten.content_length,
        },
        rewritten.body,
        forward::outgoing::Origin {
            peer,
            request_id,
            tenant: admitted.caller.tenant(),
            inspects,
        },
    )?;
    Ok((outgoing, rewritten.owned))
}

/// `tenantgate explain`: stages 1, 2 and 4 on a synthetic request, through the same
/// functions as the proxy. Returns the matched route's name and the upstream request.
pub async fn dry_run(config: &Config, request: Request<ProxyBody>) -> Result<DryRun, Refusal> {
    let (parts, body) = request.into_parts();
    let identity = identify(config, &parts, &SystemClock::default()).await?;
    let mut admitted = admit(config, &parts, identity.tenant.clone())?;
    let rules = config.rules(admitted.route).ok_or(Refusal::Internal)?;
    let name = admitted.route.name.clone();
    let namespace = admitted.namespace.take();
    let peer = SocketAddr::from(([127, 0, 0, 1], 0));
    let request_id = hygiene::request_id(&parts.headers);
    let namespace = namespace.as_ref();
    // A dry run buffers one body: a budget of its own.
    let budget = Budget::new(config.max_buffered);
    let outgoing = rewrite(
        config,
        admitted,
        rules,
        namespace,
        parts,
        body,
        peer,
        &request_id,
        &budget,
    );
    Ok(DryRun {
        route: name,
        identity,
        outgoing: outgoing.await?.0,
    })
}

/// What `explain` shows: who the caller is and how that was learned, the route, and
/// the request the upstream would receive.
pub struct DryRun {
    pub route: String,
    pub identity: Identity,
    pub outgoing: Outgoing,
}
