//! Opaque ids at both ends of the corridor (SPEC 4.3): before forwarding, every id a
//! request names at an `owned:` location must be the caller's; after a 2xx, the ids
//! the answer teaches (`learn`) are recorded, durably, before it leaves, and with
//! `forget = true` the request's ids are dropped. Ownership is held by namespace root.

use http::Response;

use crate::app::App;
use crate::audit::AuditRecord;
use crate::body::ProxyBody;
use crate::refusal::Refusal;
use crate::respond::Learned;
use crate::store::records::ClaimError;

/// Ids named in the audit line at most; the rest are counted.
const AUDITED_IDS: usize = 16;

/// Refuses a request naming an id its caller does not own, as 404 `not_found`
/// whether the id is someone else's or nobody's.
pub async fn check(
    app: &App,
    owner: &str,
    owned: &[(String, String)],
    audit: &mut AuditRecord<'_>,
) -> Result<(), Refusal> {
    if owned.is_empty() {
        return Ok(());
    }
    let mut named: Vec<String> = owned
        .iter()
        .take(AUDITED_IDS)
        .map(|(kind, id)| format!("{kind}:{id}"))
        .collect();
    if owned.len() > AUDITED_IDS {
        named.push(format!("+{}", owned.len() - AUDITED_IDS));
    }
    audit.owned = Some(named.join(","));
    // Another replica may have learned (or released) these ids: with a shared store
    // its answer, read now, decides.
    let owners = app.records.owners_now(owned).await.map_err(|error| {
        tracing::debug!(%error, owner, "owners could not be read from the shared store");
        Refusal::StoreUnavailable
    })?;
    let all_owned = match owners {
        Some(owners) => owners.iter().all(|o| o.as_deref() == Some(owner)),
        None => owned
            .iter()
            .all(|(kind, id)| app.records.owns(owner, kind, id)),
    };
    if all_owned {
        return Ok(());
    }
    app.metrics.ownership_denials.inc();
    tracing::warn!(
        owner,
        ids = audit.owned.as_deref(),
        "a request named an opaque id its caller does not own; answered not_found"
    );
    Err(Refusal::NotOwned)
}

/// Records what a 2xx answer taught its caller, and drops `forget`'s ids, before the
/// answer is returned. An id another tenant owns makes the answer undeliverable.
pub async fn settle(
    app: &App,
    owner: &str,
    mut response: Response<ProxyBody>,
    forget: Option<&[(String, String)]>,
) -> Result<Response<ProxyBody>, Refusal> {
    if !response.status().is_success() {
        return Ok(response);
    }
    if let Some(Learned(ids)) = response.extensions_mut().remove::<Learned>() {
        // The common case, a list of ids the caller already owns, writes nothing.
        if !app.records.all_owned_by(owner, &ids) {
            let (records, who) = (app.records.clone(), owner.to_owned());
            let claimed = tokio::task::spawn_blocking(move || records.claim(&who, &ids)).await;
            match claimed {
                Ok(Ok(())) => {}
                Ok(Err(ClaimError::OwnedByAnother(taken))) => {
                    tracing::error!(
                        owner,
                        taken,
                        "isolation violation: the upstream answered with ids another tenant owns; the response was withheld"
                    );
                    return Err(Refusal::IsolationViolation);
                }
                Ok(Err(ClaimError::Store(error))) => {
                    tracing::error!(%error, owner, "ownership could not be recorded; the response was withheld");
                    return Err(Refusal::StoreUnavailable);
                }
                Err(error) => {
                    tracing::error!(%error, "recording ownership failed");
                    return Err(Refusal::Internal);
                }
            }
        }
    }
    if let Some(ids) = forget.filter(|ids| !ids.is_empty()) {
        let (records, who, ids) = (app.records.clone(), owner.to_owned(), ids.to_vec());
        let released = tokio::task::spawn_blocking(move || records.release(&who, &ids)).await;
        if let Err(error) = released
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            // The backend already deleted the object; the stale row owns nothing
            // reachable, and is retried by the next forget or offboarding.
            tracing::error!(%error, owner, "ownership could not be forgotten");
        }
    }
    Ok(response)
}
