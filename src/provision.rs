//! First contact and farewell (SPEC 4.4): `[[provision]]` steps run once per tenant,
//! in order, before its first forwarded request on a tenant route, and `[[offboard]]`
//! steps when the operator offboards it. A tenant's run is single-flight (fifty
//! simultaneous first requests make one run; the others wait for it), its success is
//! recorded in the store before any request is forwarded, and a failed run is retried
//! by the next request: no request reaches a half-provisioned tenant.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use http::{Method, StatusCode};
use serde::Deserialize;

use crate::forward::{self, ForwardSettings, Upstream};
use crate::json::quote;
use crate::path::encode_segment;
use crate::refusal::Refusal;
use crate::spec::{key, Errors, KeyPath, Seg};
use crate::store::records::Records;
use crate::store::redis::Redis;

/// A `[[provision]]` or `[[offboard]]` step as the file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// `METHOD /path`, the path with `{ns}` and `{tenant}`.
    pub request: String,
    /// A JSON body, with `{ns}` and `{tenant}` inside its strings.
    pub json: Option<String>,
    /// The statuses that count as done (default 200, 201, 204).
    pub ok: Option<Vec<u16>>,
}

/// One compiled step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub method: Method,
    pub path: String,
    pub json: Option<String>,
    pub ok: Vec<StatusCode>,
}

/// Both lists, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisionSettings {
    pub provision: Vec<Step>,
    pub offboard: Vec<Step>,
}

pub fn compile(
    provision: &[StepSpec],
    offboard: &[StepSpec],
    errors: &mut Errors,
) -> ProvisionSettings {
    let steps = |specs: &[StepSpec], table: &str, errors: &mut Errors| -> Vec<Step> {
        specs
            .iter()
            .enumerate()
            .filter_map(|(i, spec)| compile_step(spec, vec![key(table), Seg::Index(i)], errors))
            .collect()
    };
    ProvisionSettings {
        provision: steps(provision, "provision", errors),
        offboard: steps(offboard, "offboard", errors),
    }
}

fn compile_step(spec: &StepSpec, base: KeyPath, errors: &mut Errors) -> Option<Step> {
    let at = |k: &str| {
        let mut path = base.clone();
        path.push(key(k));
        path
    };
    let Some((method, path)) = spec.request.split_once(' ') else {
        errors.add(
            at("request"),
            "request must be \"METHOD /path\", like \"POST /v1/users\"",
        );
        return None;
    };
    let method = match Method::from_bytes(method.as_bytes()) {
        Ok(m) if method.bytes().all(|b| b.is_ascii_uppercase()) => m,
        _ => {
            errors.add(
                at("request"),
                format!("method {method:?} is not an upper-case method name"),
            );
            return None;
        }
    };
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        errors.add(
            at("request"),
            "the path must start with / and hold no query, fragment or space",
        );
        return None;
    }
    if let Err(e) = placeholders_only(path).and_then(|()| {
        let bare = path.replace("{ns}", "").replace("{tenant}", "");
        match bare.contains(['{', '}']) {
            true => Err("the path holds a brace that is no {ns} or {tenant}".to_owned()),
            false => Ok(()),
        }
    }) {
        errors.add(at("request"), e);
        return None;
    }
    if let Some(json) = &spec.json {
        let rendered = render_json(json, "u_x", "x");
        if let Err(e) = placeholders_only(json).and_then(|()| {
            serde_json::from_str::<serde_json::Value>(&rendered)
                .map(drop)
                .map_err(|e| format!("json is not valid JSON once {{ns}} is filled in: {e}"))
        }) {
            errors.add(at("json"), e);
            return None;
        }
    }
    let ok: Vec<StatusCode> = match &spec.ok {
        None => vec![StatusCode::OK, StatusCode::CREATED, StatusCode::NO_CONTENT],
        Some(list) => {
            let parsed: Option<Vec<StatusCode>> = list
                .iter()
                .map(|&s| {
                    StatusCode::from_u16(s)
                        .ok()
                        .filter(|s| !s.is_informational())
                })
                .collect();
            match parsed {
                Some(parsed) if !parsed.is_empty() => parsed,
                _ => {
                    errors.add(
                        at("ok"),
                        "ok must list final HTTP statuses, like [200, 201, 409]",
                    );
                    return None;
                }
            }
        }
    };
    Some(Step {
        method,
        path: path.to_owned(),
        json: spec.json.clone(),
        ok,
    })
}

/// Only `{ns}` and `{tenant}` may be filled in: any other `{name}` is a mistake.
fn placeholders_only(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'*')
            .count();
        let is_placeholder = name_len > 0 && rest[name_len..].starts_with('}');
        if is_placeholder && !matches!(&rest[..name_len], "ns" | "tenant") {
            return Err(format!(
                "{{{}}}: only {{ns}} and {{tenant}} may be filled in",
                &rest[..name_len]
            ));
        }
    }
    Ok(())
}

/// The step's path for this subject. A value that would be a dot segment (`.`, `..`)
/// or an empty one is refused: an upstream that normalises the path would take it as
/// a step up, `DELETE /v1/users/..` as `DELETE /v1/`.
fn render_path(path: &str, ns: &str, tenant: &str) -> Result<String, Refusal> {
    for value in [ns, tenant] {
        if matches!(value, "" | "." | "..") {
            return Err(Refusal::BadRequest(format!(
                "the tenant id {value:?} cannot name a path segment of a provisioning or offboarding step"
            )));
        }
    }
    // Encoded as a forwarded path segment is, so a tenant id never adds a segment
    // or a query.
    Ok(path
        .replace("{ns}", &encode_segment(ns).to_string())
        .replace("{tenant}", &encode_segment(tenant).to_string()))
}

/// Fills the placeholders JSON-escaped, so a tenant id with a quote stays one string.
fn render_json(json: &str, ns: &str, tenant: &str) -> String {
    // The placeholder stands inside the template's own quotes.
    let escaped = |s: &str| {
        let quoted = quote(s);
        quoted[1..quoted.len() - 1].to_owned()
    };
    json.replace("{ns}", &escaped(ns))
        .replace("{tenant}", &escaped(tenant))
}

/// Runs in flight, by namespace root: the single flight.
/// The least time one replica's provisioning run holds the tenant's lock; longer when
/// its steps may take longer (each step's upstream timeout, times its attempts).
const SHARED_RUN_HOLD: Duration = Duration::from_secs(30);
/// How often a replica waiting for another's run looks for its mark.
const SHARED_RUN_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
pub struct Provisioner {
    running: DashMap<Box<str>, Arc<tokio::sync::Mutex<()>>, std::hash::RandomState>,
}

/// A provisioning lock this replica holds in the shared store.
struct HeldLock {
    redis: Arc<Redis>,
    root: String,
    token: Option<String>,
}

impl HeldLock {
    async fn release(&mut self) {
        if let Some(token) = self.token.take() {
            if let Err(error) = self.redis.unlock_provisioning(&self.root, &token).await {
                tracing::warn!(%error, namespace = self.root, "the provisioning lock could not be released; it expires by itself");
            }
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let (Some(token), Ok(runtime)) = (self.token.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let (redis, root) = (self.redis.clone(), std::mem::take(&mut self.root));
        runtime.spawn(async move {
            let _ = redis.unlock_provisioning(&root, &token).await;
        });
    }
}

/// Who a run is for.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The namespace root, which the mark is kept under.
    pub root: &'a str,
    /// The tenant id (`{tenant}`); the root for an unscoped caller.
    pub tenant: &'a str,
}

/// What a run calls.
pub struct Backend<'a> {
    pub upstream: &'a Upstream,
    pub forward: &'a ForwardSettings,
    pub records: &'a Arc<Records>,
}

impl Provisioner {
    /// Makes sure the subject is provisioned before its request goes on. Fast once it
    /// is: one set lookup.
    pub async fn ensure(
        &self,
        steps: &[Step],
        subject: Subject<'_>,
        backend: &Backend<'_>,
    ) -> Result<(), Refusal> {
        if steps.is_empty() || backend.records.is_provisioned(subject.root) {
            return Ok(());
        }
        let gate = self
            .running
            .entry(Box::from(subject.root))
            .or_default()
            .clone();
        let _one_run = gate.lock().await;
        // Whoever held the gate before may have finished the run.
        if backend.records.is_provisioned(subject.root) {
            return Ok(());
        }
        let result = match backend.records.redis() {
            Some(redis) => self.run_once_across(redis, steps, subject, backend).await,
            None => self.run(steps, subject, backend).await,
        };
        // Only this run's gate: a later one may have taken the key meanwhile.
        self.running
            .remove_if(subject.root, |_, current| Arc::ptr_eq(current, &gate));
        result
    }

    /// With a shared store, one replica runs the steps and the others wait for its
    /// mark: the lock in Redis decides who, and expires after [`SHARED_RUN_HOLD`] so a
    /// replica that dies mid-run does not block the tenant.
    async fn run_once_across(
        &self,
        redis: &Arc<Redis>,
        steps: &[Step],
        subject: Subject<'_>,
        backend: &Backend<'_>,
    ) -> Result<(), Refusal> {
        let unavailable = |error: crate::store::StoreError| {
            tracing::error!(%error, namespace = subject.root, "provisioning could not be coordinated through the shared store");
            Refusal::StoreUnavailable
        };
        let upstream = &backend.forward.upstream;
        let attempts = upstream.retries.saturating_add(1);
        let worst_run = upstream
            .timeout
            .saturating_mul(attempts)
            .saturating_mul(u32::try_from(steps.len()).unwrap_or(u32::MAX));
        let hold = SHARED_RUN_HOLD.max(worst_run.saturating_add(SHARED_RUN_HOLD / 6));
        let started = tokio::time::Instant::now();
        loop {
            if redis
                .is_provisioned(subject.root)
                .await
                .map_err(unavailable)?
            {
                backend.records.remember_provisioned(subject.root);
                return Ok(());
            }
            if let Some(token) = redis
                .lock_provisioning(subject.root, hold)
                .await
                .map_err(unavailable)?
            {
                // Released however the run ends: a request dropped mid-run (its
                // client gone) must not hold the tenant's lock for the whole hold.
                let mut lock = HeldLock {
                    redis: redis.clone(),
                    root: subject.root.to_owned(),
                    token: Some(token),
                };
                let result = self.run(steps, subject, backend).await;
                lock.release().await;
                return result;
            }
            if started.elapsed() >= hold {
                tracing::error!(
                    namespace = subject.root,
                    "another replica's provisioning run did not finish in time"
                );
                return Err(Refusal::UpstreamUnavailable);
            }
            tokio::time::sleep(SHARED_RUN_POLL).await;
        }
    }

    async fn run(
        &self,
        steps: &[Step],
        subject: Subject<'_>,
        backend: &Backend<'_>,
    ) -> Result<(), Refusal> {
        run_steps(steps, subject, backend, "provision").await?;
        let (records, root) = (backend.records.clone(), subject.root.to_owned());
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let marked = tokio::task::spawn_blocking(move || records.mark_provisioned(&root, at)).await;
        match marked {
            Ok(Ok(())) => {
                tracing::info!(
                    namespace = subject.root,
                    steps = steps.len(),
                    "tenant provisioned"
                );
                Ok(())
            }
            Ok(Err(error)) => {
                tracing::error!(%error, namespace = subject.root, "provisioning could not be recorded");
                Err(Refusal::StoreUnavailable)
            }
            Err(_) => Err(Refusal::Internal),
        }
    }
}

/// Calls each step in order; the first whose status is not `ok` ends the run with 502
/// `upstream_unavailable`.
pub async fn run_steps(
    steps: &[Step],
    subject: Subject<'_>,
    backend: &Backend<'_>,
    what: &'static str,
) -> Result<(), Refusal> {
    for (i, step) in steps.iter().enumerate() {
        let path = render_path(&step.path, subject.root, subject.tenant)?;
        let body = step
            .json
            .as_ref()
            .map(|j| Bytes::from(render_json(j, subject.root, subject.tenant)));
        let outgoing =
            forward::internal_request(backend.forward, step.method.clone(), &path, body)?;
        let status = backend
            .upstream
            .send(&backend.forward.upstream, outgoing)
            .await
            .map(|response| response.status());
        match status {
            Ok(status) if step.ok.contains(&status) => {}
            Ok(status) => {
                tracing::error!(step = i, namespace = subject.root, %status, method = %step.method, path, "{what} step failed");
                return Err(Refusal::UpstreamUnavailable);
            }
            Err(refusal) => {
                tracing::error!(
                    step = i,
                    namespace = subject.root,
                    code = refusal.code(),
                    "{what} step could not reach the upstream"
                );
                return Err(Refusal::UpstreamUnavailable);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::compile_str;

    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        provision: Vec<StepSpec>,
        #[serde(default)]
        offboard: Vec<StepSpec>,
    }

    fn compiled(toml: &str) -> Result<ProvisionSettings, Vec<String>> {
        compile_str(toml, |f: &File, errors| {
            Some(compile(&f.provision, &f.offboard, errors))
        })
    }

    #[test]
    fn compiles_steps_with_their_defaults() {
        let settings = compiled(
            "[[provision]]\nrequest = \"POST /api/v2/tenants\"\njson = '{\"name\": \"{ns}\"}'\nok = [200, 409]\n[[offboard]]\nrequest = \"DELETE /v1/users/{tenant}\"\n",
        )
        .unwrap();
        assert_eq!(settings.provision[0].method, Method::POST);
        assert_eq!(
            settings.provision[0].ok,
            [StatusCode::OK, StatusCode::CONFLICT]
        );
        assert_eq!(settings.offboard[0].ok.len(), 3);
    }

    #[test]
    fn refuses_each_bad_step_at_its_key() {
        let errors = compiled(
            "[[provision]]\nrequest = \"post /a\"\n[[provision]]\nrequest = \"POST a\"\n[[provision]]\nrequest = \"POST /a/{user}\"\n[[provision]]\nrequest = \"POST /a\"\njson = '{\"name\": {ns}}'\n[[offboard]]\nrequest = \"DELETE /a\"\nok = [100]\n",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].starts_with("2:11: method \"post\""), "{errors:?}");
        assert!(
            errors[1].starts_with("4:11: the path must start with /"),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with("6:11: {user}: only {ns} and {tenant}"),
            "{errors:?}"
        );
        assert!(
            errors[3].starts_with("9:8: json is not valid JSON"),
            "{errors:?}"
        );
        assert!(
            errors[4].starts_with("12:6: ok must list final"),
            "{errors:?}"
        );
    }

    #[test]
    fn placeholders_are_encoded_for_where_they_land() {
        assert_eq!(
            render_path("/t/{ns}/x", "u_a/b?c", "a").unwrap(),
            "/t/u_a%2Fb%3Fc/x"
        );
        assert!(render_path("/v1/users/{tenant}", "u_x", "..").is_err());
        assert!(render_path("/v1/users/{tenant}", "u_x", ".").is_err());
        assert_eq!(
            render_json("{\"n\": \"{tenant}\"}", "u", "a\"b"),
            "{\"n\": \"a\\\"b\"}"
        );
    }
}
