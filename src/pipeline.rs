//! The corridor every proxied request walks, stage by stage, in order. Read this file
//! first: each stage is one call into its own module, and data only flows forward.
//!
//! ```text
//! 1. identity  who is calling                           identity.rs
//! 2. route     canonical path, first matching rule,
//!              the rule's scope admits the caller       route/
//! 3. limits    the caller's bucket and quota            (SPEC 6, slots in here)
//! 4. rewrite   ids into the caller's namespace          rewrite/, namespace.rs
//! 5. forward   header hygiene, pooled upstream call     hygiene.rs, forward.rs
//! 6. respond   keep, leak guard, unwrap, hygiene        respond/
//! 7. meter     2xx units to the caller's usage          (SPEC 8, slots in here)
//! ```
//!
//! Any stage may refuse with a [`Refusal`]; a refusal ends the walk before the
//! upstream is touched and becomes the JSON error of SPEC 7.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use std::sync::atomic::Ordering;

use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::app::App;
use crate::audit::AuditRecord;
use crate::body::{IdleTimeout, ProxyBody};
use crate::config::Config;
use crate::forward::Outgoing;
use crate::hygiene::{self, REQUEST_ID};
use crate::identity::TenantId;
use crate::refusal::Refusal;
use crate::respond;
use crate::rewrite;
use crate::route::canonical::CanonicalPath;
use crate::route::{self, Admitted};

/// The scheme clients use to reach the proxy listener.
const LISTENER_SCHEME: &str = "http";

pub async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let snapshot = app.snapshot();
    let request_id = hygiene::request_id(request.headers());
    let mut audit = AuditRecord::new(request_id.clone(), request.method().clone());
    let walked = walk(
        &app,
        &snapshot.config,
        request,
        peer,
        &request_id,
        &mut audit,
    )
    .await;
    let mut response = walked.unwrap_or_else(|refusal| {
        if refusal == Refusal::IsolationViolation {
            app.isolation_violations.fetch_add(1, Ordering::Relaxed);
        }
        audit.reason = Some(refusal.code());
        refusal.to_response()
    });
    response.headers_mut().insert(REQUEST_ID, request_id);
    if let Some(root) = audit
        .namespace
        .as_deref()
        .and_then(|r| HeaderValue::from_str(r).ok())
    {
        response
            .headers_mut()
            .insert(respond::TENANT_NAMESPACE, root);
    }
    audit.emit(response.status(), started.elapsed());
    response
}

async fn walk(
    app: &App,
    config: &Config,
    request: Request<Incoming>,
    peer: SocketAddr,
    request_id: &HeaderValue,
    audit: &mut AuditRecord,
) -> Result<Response<ProxyBody>, Refusal> {
    let (parts, body) = request.into_parts();
    let body = IdleTimeout::new(body, config.upstream.body_timeout).boxed_unsync();

    // 1. identity
    let tenant = identify(config, &parts)?;
    audit.tenant = tenant.as_ref().map(ToString::to_string);

    // 2. route
    let admitted = route::admit(
        config,
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        tenant,
    )?;
    let (matched, namespace) = (admitted.route, admitted.namespace.clone());
    audit.route = Some(matched.name.clone());
    audit.namespace = namespace.as_ref().map(|ns| ns.root.clone());
    if let Some(tenant) = admitted.caller.tenant() {
        app.known.note(tenant.as_str());
    }

    // 4. rewrite, then header hygiene
    let head = parts.method == Method::HEAD;
    let outgoing = rewrite(config, admitted, parts, body, peer, request_id).await?;

    // 5. forward
    let response = app.upstream.send(&config.upstream, outgoing).await?;
    audit.upstream_status = Some(response.status().as_u16());

    // 6. respond
    respond::finish(
        config,
        &app.known,
        matched,
        namespace.as_ref(),
        head,
        response,
    )
    .await
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
    let inspects = admitted.namespace.is_some() && respond::inspects(config, admitted.route);
    let rewritten =
        rewrite::request(config, admitted, parts.uri.query(), &parts.headers, body).await?;
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
    let admitted = route::admit(
        config,
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        tenant,
    )?;
    let name = admitted.route.name.clone();
    let peer = SocketAddr::from(([127, 0, 0, 1], 0));
    let request_id = hygiene::request_id(&parts.headers);
    let outgoing = rewrite(config, admitted, parts, body, peer, &request_id).await?;
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
