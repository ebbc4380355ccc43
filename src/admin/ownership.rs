//! `POST /admin/ownership` (SPEC 9): imports `[{"kind","id","tenant"}]` rows for a
//! backend that already holds data, all or nothing, never over another tenant's id.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::json;
use crate::app::App;
use crate::body::ProxyBody;
use crate::identity::TenantId;
use crate::refusal::Refusal;
use crate::rewrite;
use crate::store::records::{ClaimError, Owned};

/// The largest import one call takes; bigger imports are sent in batches.
const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;

pub async fn import(
    app: &Arc<App>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    let body = http_body_util::BodyExt::map_err(request.into_body(), crate::BoxError::from);
    let body = http_body_util::BodyExt::boxed_unsync(body);
    let mut held = app.budget.claim();
    let bytes = rewrite::collect_client_body(body, MAX_IMPORT_BYTES, &mut held).await?;
    let app = app.clone();
    // Parsing and writing tens of MiB of rows is blocking work.
    tokio::task::spawn_blocking(move || import_rows(&app, &bytes))
        .await
        .map_err(|_| Refusal::Internal)?
}

fn import_rows(app: &App, bytes: &[u8]) -> Result<Response<ProxyBody>, Refusal> {
    let rows: Vec<Owned> = serde_json::from_slice(bytes).map_err(|e| {
        Refusal::BadRequest(format!(
            "the body must be a JSON array of {{\"kind\", \"id\", \"tenant\"}}: {e}"
        ))
    })?;
    let snapshot = app.snapshot();
    let namespaces = &snapshot.config.namespaces;
    // Ownership is held by namespace root, like on the request path.
    let mut by_root = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        let root = TenantId::parse(&row.tenant, None)
            .ok()
            .and_then(|t| namespaces.root(&t).ok())
            .ok_or_else(|| {
                Refusal::BadRequest(format!(
                    "row {i}: {:?} is not a valid tenant id",
                    row.tenant
                ))
            })?;
        crate::store::records::kind(&row.kind)
            .map_err(|e| Refusal::BadRequest(format!("row {i}: {e}")))?;
        if row.id.is_empty() {
            return Err(Refusal::BadRequest(format!("row {i}: the id is empty")));
        }
        by_root.push(Owned {
            tenant: root,
            ..row
        });
    }
    match app.records.import(&by_root) {
        Ok(count) => Ok(json(StatusCode::OK, &json!({ "imported": count }))),
        Err(ClaimError::OwnedByAnother(_)) => Err(Refusal::BadRequest(
            "an id in the import is owned by another tenant, or named twice with different tenants; nothing was imported".to_owned(),
        )),
        Err(ClaimError::Store(e)) => {
            tracing::error!(error = %e, "ownership import failed");
            Err(Refusal::StoreUnavailable)
        }
    }
}
