//! `tenantgate verify`: the `[[verify.scenario]]` canaries, run through the corridor
//! itself. Canary `a` writes the run's marker, canary `b` and an unscoped caller probe
//! for it; a probe whose answer carries the marker is a leak. The canaries' requests
//! are marked inside the process (an extension no client can send), are neither
//! limited nor metered, and the canaries are offboarded before and after every run.

pub mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::app::App;
use crate::identity::{CanaryCaller, TenantId};
use crate::json::pointer::{Pointer, Step as PointerStep};
use crate::offboard;
use crate::pipeline;
use crate::scenario::{render, Escape, Marker, Scenario, Step, Who};
pub use report::{Report, ScenarioReport, StepReport, Verdict};

/// An answer is read up to this much, for this long (a stream that never ends is an
/// error of the probe, not a hang of the run).
const MAX_ANSWER: usize = 4 << 20;
const ANSWER_TIME: Duration = Duration::from_secs(30);

/// One run at a time per process: the canaries are shared.
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs every scenario of the current config, then offboards the canaries.
pub async fn run(app: &Arc<App>) -> Report {
    let _one = RUNNING.lock().await;
    let snapshot = app.snapshot();
    let canaries = [TenantId::canary("a"), TenantId::canary("b")];
    // A clean slate: what an interrupted run may have left.
    for canary in &canaries {
        let _ = offboard::tenant(app, canary.as_str(), Some(canary)).await;
    }
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut scenarios = Vec::new();
    for (i, scenario) in snapshot.config.verify.scenarios.iter().enumerate() {
        // Lower-case letters and digits: valid in any backend's names and ids.
        let marker = format!("tgcanary{}s{i}", &run[..12]);
        scenarios.push(run_scenario(app, scenario, marker, &canaries).await);
    }
    let mut cleanup = Vec::new();
    for canary in &canaries {
        if let Err(refusal) = offboard::tenant(app, canary.as_str(), Some(canary)).await {
            cleanup.push(format!("offboarding {canary} failed: {refusal}"));
        }
    }
    Report { scenarios, cleanup }
}

/// Runs the scenarios and records the outcome in the canary metrics.
pub async fn run_and_record(app: &Arc<App>) -> Report {
    let report = run(app).await;
    app.metrics.canary_ok.reset();
    for scenario in &report.scenarios {
        app.metrics
            .canary_ok
            .with_label_values(&[scenario.name.as_str()])
            .set(i64::from(scenario.held && report.cleanup.is_empty()));
    }
    let now = app.clock.unix() as f64 / crate::clock::NANOS_PER_SEC as f64;
    app.metrics.canary_last_run.set(now);
    report
}

/// `[verify] interval`: the scenarios run inside the proxy, every interval (read
/// again after each run, so a reload changes it), the first one interval after start.
pub async fn periodic(app: Arc<App>) {
    loop {
        let Some(every) = app.snapshot().config.verify.interval else {
            // Off: a reload may turn it on.
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        };
        tokio::time::sleep(every).await;
        // A drain, or a reload during the wait that turned it off, skips the run.
        if app.is_draining() {
            return;
        }
        if app.snapshot().config.verify.interval.is_none() {
            continue;
        }
        let report = run_and_record(&app).await;
        if !report.held() {
            tracing::error!(failed = ?report.failed(), "isolation canary did not hold");
        }
    }
}

async fn run_scenario(
    app: &Arc<App>,
    scenario: &Scenario,
    marker: String,
    canaries: &[TenantId; 2],
) -> ScenarioReport {
    let mut vars = BTreeMap::from([("marker".to_owned(), marker.clone())]);
    let mut steps = Vec::new();
    for step in &scenario.steps {
        let who = match step.who {
            Who::A => Some(&canaries[0]),
            Who::B => Some(&canaries[1]),
            Who::Nobody => None,
        };
        steps.push(run_step(app, step, who, &marker, &mut vars).await);
    }
    ScenarioReport {
        name: scenario.name.clone(),
        held: steps.iter().all(|s| s.verdict == Verdict::Held),
        marker,
        steps,
    }
}

async fn run_step(
    app: &Arc<App>,
    step: &Step,
    who: Option<&TenantId>,
    marker: &str,
    vars: &mut BTreeMap<String, String>,
) -> StepReport {
    let target = render(&step.target, vars, Escape::Url);
    let mut report = StepReport {
        who: match step.who {
            Who::A => "a",
            Who::B => "b",
            Who::Nobody => "none",
        }
        .to_owned(),
        request: format!("{} {target}", step.method),
        status: None,
        verdict: Verdict::Held,
        detail: None,
    };
    let body = step.json.as_deref().map(|j| render(j, vars, Escape::Json));
    let mut request = Request::builder().method(step.method.clone()).uri(&target);
    for (name, value) in &step.headers {
        request = request.header(name, render(value, vars, Escape::Raw));
    }
    if body.is_some() {
        request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let request = request.body(crate::body::full(Bytes::from(body.unwrap_or_default())));
    let mut request = match request {
        Ok(request) => request,
        Err(e) => return report.error(format!("the request cannot be built: {e}")),
    };
    if let Some(tenant) = who {
        request
            .extensions_mut()
            .insert(CanaryCaller(tenant.clone()));
    }
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let response = pipeline::handle(app.clone(), request, peer).await;
    let (parts, body) = response.into_parts();
    report.status = Some(parts.status.as_u16());
    let bytes = match tokio::time::timeout(ANSWER_TIME, read(body)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return report.error(format!("the answer could not be read: {e}")),
        Err(_) => return report.error(format!("the answer did not end within {ANSWER_TIME:?}")),
    };
    let in_headers = parts
        .headers
        .iter()
        .find(|(_, v)| find(v.as_bytes(), marker.as_bytes()).is_some())
        .map(|(name, v)| format!("header {name}: {}", String::from_utf8_lossy(v.as_bytes())));
    let in_body = find(&bytes, marker.as_bytes()).map(|at| excerpt(&bytes, at, marker.len()));
    let seen = in_headers.or(in_body);
    match (step.marker, seen) {
        (Marker::Absent, Some(offending)) => {
            report.verdict = Verdict::Leaked;
            report.detail = Some(offending);
            return report;
        }
        (Marker::Present, None) => {
            return report
                .error("the marker did not read back: a's own data is not as written".to_owned())
        }
        _ => {}
    }
    if !step.expects(parts.status.as_u16()) {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        return report.error(format!(
            "unexpected status {}: {text}",
            parts.status.as_u16()
        ));
    }
    if !step.capture.is_empty() {
        let Ok(answer) = serde_json::from_slice::<Value>(&bytes) else {
            return report
                .error("the answer is not JSON, and this step captures from it".to_owned());
        };
        for (name, pointer) in &step.capture {
            match lookup(&answer, pointer) {
                Some(Value::String(s)) => vars.insert(name.clone(), s.clone()),
                Some(Value::Number(n)) => vars.insert(name.clone(), n.to_string()),
                _ => {
                    return report.error(format!(
                        "{} is not in the answer (capture {name})",
                        pointer.text
                    ))
                }
            };
        }
    }
    report
}

/// The answer's body, up to [`MAX_ANSWER`] bytes.
async fn read(mut body: crate::body::ProxyBody) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
            if bytes.len() > MAX_ANSWER {
                return Err(format!("it is longer than {MAX_ANSWER} bytes"));
            }
        }
    }
    Ok(bytes)
}

fn lookup<'v>(value: &'v Value, pointer: &Pointer) -> Option<&'v Value> {
    pointer
        .steps
        .iter()
        .try_fold(value, |at, step| match (at, step) {
            (Value::Object(map), PointerStep::Key(k)) => map.get(k),
            (Value::Array(items), PointerStep::Key(k)) => items.get(k.parse::<usize>().ok()?),
            _ => None,
        })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The bytes around a leak, for the report.
fn excerpt(bytes: &[u8], at: usize, len: usize) -> String {
    let from = at.saturating_sub(60);
    let to = (at + len + 60).min(bytes.len());
    format!("body: …{}…", String::from_utf8_lossy(&bytes[from..to]))
}
