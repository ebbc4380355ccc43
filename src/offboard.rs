//! Offboarding (SPEC 4.4): a tenant's requests refused as blocked, the `[[offboard]]`
//! steps run against the upstream, then tenantgate's own state for it erased. Called
//! by `DELETE /admin/tenants/{id}` and by `tenantgate verify` for its canaries.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::app::App;
use crate::identity::TenantId;
use crate::provision;
use crate::refusal::Refusal;

/// Offboards a tenant (SPEC 4.4): refuses its requests as blocked, runs the
/// `[[offboard]]` steps against the upstream, then erases its usage, ownership,
/// provisioning mark, limiter state and place among known tenants. Idempotent: a
/// second call erases nothing and says 0. Requests already in flight finish and
/// release their slots. A failed step leaves everything in place (502).
pub async fn tenant(app: &Arc<App>, id: &str, tenant: Option<&TenantId>) -> Result<Value, Refusal> {
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
    let root = tenant.and_then(|t| config.namespaces.root(t).ok());
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
    Ok(erased)
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
    let known = u64::from(app.tenants.forget_known(id));
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
