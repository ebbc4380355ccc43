//! `GET /admin/tenants` and `DELETE /admin/tenants/{id}` (SPEC 9): every tenant seen,
//! with usage and warnings that point at one user under several ids, and offboarding
//! of tenantgate's own state.

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::json;
use super::similar::{near_duplicates, Likeness};
use super::usage::timestamp;
use std::sync::Arc;

use crate::app::App;
use crate::body::ProxyBody;
use crate::identity::TenantId;
use crate::provision;
use crate::refusal::Refusal;
use crate::store::Counters;

/// How far back the listing reads usage.
const HISTORY_DAYS: u64 = 365;

pub fn list(app: &App) -> Result<Response<ProxyBody>, Refusal> {
    let today = app.clock.utc_day();
    let from = today.saturating_sub(HISTORY_DAYS - 1);
    let mut rows: Vec<(String, Counters)> = app.usage.tenants(from, today).map_err(|e| {
        tracing::error!(error = %e, "tenant listing failed");
        Refusal::StoreUnavailable
    })?;
    // Tenants seen on requests that never had a metered answer count too.
    let mut seen = app.known.all();
    seen.sort_unstable();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for id in seen {
        if rows.binary_search_by(|(t, _)| t.as_str().cmp(&id)).is_err() {
            rows.push((id, Counters::default()));
        }
    }
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let similar = near_duplicates(&ids);
    let tenants: Vec<Value> = rows
        .iter()
        .zip(similar)
        .map(|((id, c), alike)| {
            let mut warnings: Vec<Value> = alike
                .into_iter()
                .map(|(other, how)| json!({ "kind": kind(how), "other": ids[other] }))
                .collect();
            if c.events == 1 {
                warnings.push(json!({ "kind": "ghost" }));
            }
            json!({
                "tenant": id,
                "events": c.events,
                "units": c.units,
                "last_at": (c.last_at > 0).then(|| timestamp(c.last_at)),
                "warnings": warnings,
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({ "count": tenants.len(), "tenants": tenants }),
    ))
}

fn kind(how: Likeness) -> &'static str {
    match how {
        Likeness::CaseFold => "case_fold",
        Likeness::Trim => "trim",
        Likeness::OneEdit => "one_edit",
    }
}

/// Offboards a tenant (SPEC 4.4): refuses its requests as blocked, runs the
/// `[[offboard]]` steps against the upstream, then erases its usage, ownership,
/// provisioning mark, limiter state and place among known tenants. Idempotent: a
/// second call erases nothing and says 0. Requests already in flight finish and
/// release their slots. A failed step leaves everything in place (502).
pub async fn offboard(app: &Arc<App>, id: &str) -> Result<Response<ProxyBody>, Refusal> {
    let _blocked = app.offboarding.begin(id);
    let snapshot = app.snapshot();
    let config = &snapshot.config;
    // What the tenant already has in flight finishes first: nothing it provisions or
    // learns may land after the erasure.
    if !app
        .offboarding
        .drained(id, config.listen.shutdown_grace)
        .await
    {
        return Err(Refusal::TenantBusy);
    }
    let root = TenantId::parse(id, None)
        .ok()
        .and_then(|t| config.namespaces.root(&t).ok());
    if let Some(root) = &root {
        let subject = provision::Subject { root, tenant: id };
        let backend = provision::Backend {
            upstream: &app.upstream,
            forward: &config.forward,
            records: &app.records,
        };
        provision::run_steps(&config.provision.offboard, subject, &backend, "offboard").await?;
    }
    let (state, id_owned) = (app.clone(), id.to_owned());
    let erased = tokio::task::spawn_blocking(move || erase(&state, &id_owned, root.as_deref()))
        .await
        .map_err(|_| Refusal::Internal)??;
    Ok(json(StatusCode::OK, &erased))
}

/// tenantgate's own state for a tenant, erased; what there was.
fn erase(app: &App, id: &str, root: Option<&str>) -> Result<serde_json::Value, Refusal> {
    let store_failed = |e: crate::store::StoreError| {
        tracing::error!(error = %e, tenant = id, "offboarding failed");
        Refusal::StoreUnavailable
    };
    let usage_rows = app.usage.erase(id).map_err(store_failed)?;
    let (owned_ids, provisioned) = match root {
        Some(root) => (
            app.records.erase_owner(root).map_err(store_failed)?,
            u64::from(app.records.unmark_provisioned(root).map_err(store_failed)?),
        ),
        None => (0, 0),
    };
    let limiter = u64::from(app.limiter.forget(id));
    let known = u64::from(app.known.forget(id));
    tracing::info!(
        tenant = id,
        usage_rows,
        owned_ids,
        provisioned,
        limiter,
        known,
        "tenant offboarded"
    );
    Ok(json!({
        "tenant": id,
        "erased": usage_rows + owned_ids + provisioned + limiter + known,
        "usage_rows": usage_rows,
        "owned_ids": owned_ids,
        "provisioned": provisioned,
        "limiter_state": limiter,
        "known": known,
    }))
}
