//! The admin listener (SPEC 9): probes without a token; `/admin/*` and `/usage/*` only
//! with `Authorization: Bearer <[admin] token>`.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::body::{self, ProxyBody};
use crate::identity::AuthFailure;
use crate::refusal::Refusal;

mod ownership;
pub mod similar;
mod tenants;
mod usage;

/// `/readyz`'s body: ready, and with a shared store whether it answers now. The
/// store never makes the pod unready: a sidecar's readiness is its pod's, and one
/// Redis outage would take every app pod out of its Service at once, even for
/// requests no shared limit applies to; `on_store_error` decides those instead.
async fn readiness(app: &App) -> String {
    let Some(redis) = &app.redis else {
        return "ready\n".to_owned();
    };
    let state = match redis.ping().await {
        Ok(()) => "up",
        Err(_) => "unreachable",
    };
    format!(
        "ready\nstore: redis {state} (on_store_error = {})\n",
        redis.on_error().name()
    )
}

pub async fn handle(app: Arc<App>, request: Request<Incoming>) -> Response<ProxyBody> {
    let path = request.uri().path();
    let method = request.method();
    match path {
        "/healthz" => return text(StatusCode::OK, "ok\n"),
        "/readyz" if app.is_draining() => {
            return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        }
        "/readyz" if !app.identity_keys_loaded() => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "waiting for the first fetch of [identity] jwks_url\n",
            )
        }
        "/readyz" => return text(StatusCode::OK, readiness(&app).await),
        "/metrics" if method == Method::GET => {
            let day = app.clock.utc_day();
            let k = app.snapshot().config.per_tenant_top_k;
            let top = (k > 0).then(|| (k, app.usage.units_on(day)));
            let gauges = crate::metrics::Gauges {
                limiter_keys: app.limiter.keys(),
                tenants_active: app.usage.active(day),
                store_pending_rows: app.usage.pending_rows(),
                audit_lines_dropped: crate::audit::dropped_lines(),
            };
            let text = app.metrics.render(gauges, top);
            let mut response = Response::new(body::full(text));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return response;
        }
        _ => {}
    }
    if !(path.starts_with("/admin/") || path.starts_with("/usage/")) {
        return Refusal::AdminNotFound.to_response();
    }
    if let Err(refusal) = authorize(&app, request.headers()) {
        if let Refusal::Unauthenticated(failure) = &refusal {
            app.metrics.authentication_failed(failure.reason());
        }
        return refusal.to_response();
    }
    if method == Method::POST && path == "/admin/ownership" {
        return ownership::import(&app, request)
            .await
            .unwrap_or_else(|refusal| refusal.to_response());
    }
    let query = request.uri().query();
    if let Some(id) = path.strip_prefix("/admin/tenants/") {
        let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
        if method != Method::DELETE || id.is_empty() {
            return Refusal::AdminNotFound.to_response();
        }
        return tenants::offboard(&app, &id)
            .await
            .unwrap_or_else(|refusal| refusal.to_response());
    }
    if let Some(id) = path.strip_prefix("/usage/users/") {
        let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
        if method != Method::GET || id.is_empty() {
            return Refusal::AdminNotFound.to_response();
        }
        let app = app.clone();
        let (id, query) = (id.into_owned(), query.map(str::to_owned));
        return blocking(move || usage::user(&app, &id, query.as_deref())).await;
    }
    match (method, path) {
        (&Method::GET, "/usage/by-user") => {
            let (app, query) = (app.clone(), query.map(str::to_owned));
            blocking(move || usage::by_user(&app, query.as_deref())).await
        }
        (&Method::GET, "/usage/export") => usage::export(app.clone(), query)
            .await
            .unwrap_or_else(|refusal| refusal.to_response()),
        (&Method::GET, "/usage/today") => {
            let app = app.clone();
            blocking(move || usage::today(&app)).await
        }
        (&Method::GET, "/admin/tenants") => {
            let app = app.clone();
            blocking(move || tenants::list(&app)).await
        }
        (&Method::GET, "/admin/config") => config_view(&app),
        (&Method::POST, "/admin/verify") => {
            let report = crate::verify::run_and_record(&app).await;
            json(StatusCode::OK, &report)
        }
        (&Method::POST, "/admin/reload") => {
            let app = app.clone();
            match tokio::task::spawn_blocking(move || app.reload()).await {
                Ok(outcome) => {
                    let status = if outcome.applied {
                        StatusCode::OK
                    } else {
                        StatusCode::UNPROCESSABLE_ENTITY
                    };
                    json(status, &outcome)
                }
                Err(_) => Refusal::AdminNotFound.to_response(),
            }
        }
        _ => Refusal::AdminNotFound.to_response(),
    }
}

/// Runs a store query off the async threads.
async fn blocking(
    query: impl FnOnce() -> Result<Response<ProxyBody>, Refusal> + Send + 'static,
) -> Response<ProxyBody> {
    match tokio::task::spawn_blocking(query).await {
        Ok(Ok(response)) => response,
        Ok(Err(refusal)) => refusal.to_response(),
        Err(_) => Refusal::Internal.to_response(),
    }
}

fn authorize(app: &App, headers: &http::HeaderMap) -> Result<(), Refusal> {
    let snapshot = app.snapshot();
    let secret = snapshot
        .config
        .admin
        .token
        .as_ref()
        .ok_or(Refusal::Unauthenticated(AuthFailure::AdminClosed))?;
    let mut sent = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (sent.next(), sent.next()) else {
        return Err(Refusal::Unauthenticated(AuthFailure::AdminToken));
    };
    let token = value
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .ok_or(Refusal::Unauthenticated(AuthFailure::AdminToken))?;
    if secret.matches(token) {
        Ok(())
    } else {
        Err(Refusal::Unauthenticated(AuthFailure::AdminToken))
    }
}

fn config_view(app: &App) -> Response<ProxyBody> {
    let snapshot = app.snapshot();
    let view = serde_json::json!({
        "generation": snapshot.generation,
        "sha256": snapshot.sha256,
        "loaded_at": humantime::format_rfc3339_seconds(snapshot.loaded_at).to_string(),
        "origin": snapshot.origin,
        "warnings": snapshot.config.warnings,
        "config": snapshot.redacted,
    });
    json(StatusCode::OK, &view)
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<ProxyBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(body::full(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, text: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(text.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
