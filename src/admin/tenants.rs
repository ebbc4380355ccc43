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
use crate::offboard;
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
    let mut seen = app.tenants.known();
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

/// `DELETE /admin/tenants/{id}`: offboards the tenant (see [`offboard::tenant`]).
pub async fn offboard(app: &Arc<App>, id: &str) -> Result<Response<ProxyBody>, Refusal> {
    let tenant = TenantId::parse(id, None).ok();
    let erased = offboard::tenant(app, id, tenant.as_ref()).await?;
    Ok(json(StatusCode::OK, &erased))
}
