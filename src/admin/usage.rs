//! `/usage/*` (SPEC 9): usage per user and for the project, read from the store after
//! a flush, so the answer includes every event up to the request.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::json;
use crate::app::App;
use crate::body::ProxyBody;
use crate::refusal::Refusal;
use crate::store::Counters;

const DAYS: (u64, u64, u64) = (1, 365, 30);
const LIMIT: (u64, u64, u64) = (1, 1000, 100);

/// `GET /usage/by-user?days=30&limit=100`: top-N by units, then by id.
pub fn by_user(app: &App, query: Option<&str>) -> Result<Response<ProxyBody>, Refusal> {
    let params = Params::parse(query, &["days", "limit"])?;
    let days = params.bounded("days", DAYS)?;
    let limit = params.bounded("limit", LIMIT)?;
    let (from, to) = window(app, days);
    let rows = app
        .usage
        .by_user(from, to, usize::try_from(limit).unwrap_or(usize::MAX))
        .map_err(unavailable)?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|(user, c)| row(json!({ "user_id": user }), c))
        .collect();
    Ok(json(StatusCode::OK, &rows))
}

/// `GET /usage/users/{id}?days=30`: that user's daily rows, oldest first.
pub fn user(app: &App, id: &str, query: Option<&str>) -> Result<Response<ProxyBody>, Refusal> {
    let params = Params::parse(query, &["days"])?;
    let days = params.bounded("days", DAYS)?;
    let (from, to) = window(app, days);
    let rows = app.usage.user(id, from, to).map_err(unavailable)?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|(day, c)| row(json!({ "day": date(*day) }), c))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({ "user_id": id, "days": rows }),
    ))
}

/// The longest window one export covers: a year, so a billing job that asks for
/// "since the epoch" by mistake gets a clear 400 rather than a scan of every day.
const EXPORT_DAYS: u64 = 366;

/// How long an export waits for its client to take the next day's rows.
const EXPORT_STALL: Duration = Duration::from_secs(30);

/// One day's rows, read on the blocking pool (`flush` first for the first day).
async fn read_day(
    app: &Arc<App>,
    day: u64,
    flush: bool,
) -> Result<Result<Vec<(String, Counters)>, crate::store::StoreError>, Refusal> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || app.usage.day(day, flush))
        .await
        .map_err(|_| Refusal::Internal)
}

/// `GET /usage/export?since=YYYY-MM-DD&until=YYYY-MM-DD`: one JSON line per tenant
/// per day with usage, days oldest first, tenants by id; `until` defaults to today.
/// Streamed a day at a time (each read on the blocking pool, at most two days' rows
/// waiting), so memory does not grow with the window; a store error mid-stream breaks
/// the transfer instead of ending it, and a client that stops reading for
/// `EXPORT_STALL` ends the export, so no reader can hold a thread or a task for good.
pub async fn export(app: Arc<App>, query: Option<&str>) -> Result<Response<ProxyBody>, Refusal> {
    let params = Params::parse(query, &["since", "until"])?;
    let today = app.clock.utc_day();
    let since = match params.get("since") {
        Some(text) => day_of("since", text)?,
        None => return Err(Refusal::BadRequest("since=YYYY-MM-DD is required".into())),
    };
    let until = params
        .get("until")
        .map_or(Ok(today), |t| day_of("until", t))?;
    if since > until || until > today {
        return Err(Refusal::BadRequest(format!(
            "since must be on or before until, and until on or before today ({})",
            date(today)
        )));
    }
    if until - since >= EXPORT_DAYS {
        return Err(Refusal::BadRequest(format!(
            "an export covers at most {EXPORT_DAYS} days: ask for the rest in another call"
        )));
    }
    // Flush and read the first day before answering, so a store that is down is a
    // 503, not a 200 that breaks off.
    let first = read_day(&app, since, true).await?.map_err(unavailable)?;
    let (feed, body) = crate::body::channel(1);
    tokio::spawn(async move {
        let mut rows = Ok(first);
        for day in since..=until {
            if day > since {
                rows = match read_day(&app, day, false).await {
                    Ok(rows) => rows,
                    Err(_) => return, // the read panicked: the transfer breaks off
                };
            }
            let chunk = match &rows {
                Ok(rows) if rows.is_empty() => continue,
                Ok(rows) => lines(day, rows),
                Err(e) => {
                    tracing::error!(error = %e, day = %date(day), "usage export broke off");
                    return;
                }
            };
            let sent = tokio::time::timeout(EXPORT_STALL, feed.send(chunk)).await;
            if !matches!(sent, Ok(Ok(()))) {
                return; // the client left, or stalled past EXPORT_STALL
            }
        }
        feed.finish();
    });
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// One day's rows as newline-delimited JSON.
fn lines(day: u64, rows: &[(String, Counters)]) -> Bytes {
    let day = date(day);
    let mut out = Vec::new();
    for (user, counters) in rows {
        let line = row(json!({ "day": day, "user_id": user }), counters);
        // A Value always serializes.
        let _ = serde_json::to_writer(&mut out, &line);
        out.push(b'\n');
    }
    Bytes::from(out)
}

/// A UTC day number from `YYYY-MM-DD`.
fn day_of(name: &str, text: &str) -> Result<u64, Refusal> {
    let bad = || Refusal::BadRequest(format!("{name} must be a date as YYYY-MM-DD"));
    let well_formed = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !well_formed {
        return Err(bad());
    }
    let at = humantime::parse_rfc3339(&format!("{text}T00:00:00Z")).map_err(|_| bad())?;
    let secs = at.duration_since(UNIX_EPOCH).map_err(|_| bad())?.as_secs();
    Ok(secs / 86_400)
}

/// `GET /usage/today`: the project's totals and the share of its daily budget used.
/// With a shared store, every replica's (read from it: blocking).
pub fn today(app: &App) -> Result<Response<ProxyBody>, Refusal> {
    let day = app.clock.utc_day();
    let totals = match &app.redis {
        None => app.usage.project_today(day),
        Some(_) => app.usage.project_stored(day).map_err(unavailable)?,
    };
    let budget = app.snapshot().config.limits.project.daily_units;
    let fraction = budget.map(|b| {
        if b == 0 {
            1.0
        } else {
            totals.units as f64 / b as f64
        }
    });
    let body = row(
        json!({ "day": date(day), "daily_units": budget, "fraction_used": fraction }),
        &totals,
    );
    Ok(json(StatusCode::OK, &body))
}

/// The last `days` UTC days, today included.
fn window(app: &App, days: u64) -> (u64, u64) {
    let today = app.clock.utc_day();
    (today.saturating_sub(days - 1), today)
}

fn row(mut head: Value, c: &Counters) -> Value {
    if let Value::Object(map) = &mut head {
        map.insert("events".into(), c.events.into());
        map.insert("units".into(), c.units.into());
        map.insert("bytes_in".into(), c.bytes_in.into());
        map.insert("bytes_out".into(), c.bytes_out.into());
        map.insert("last_at".into(), timestamp(c.last_at).into());
    }
    head
}

/// `YYYY-MM-DD` of a UTC day number.
pub fn date(day: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(day * 86_400);
    humantime::format_rfc3339_seconds(at).to_string()[..10].to_owned()
}

pub fn timestamp(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
}

fn unavailable(e: crate::store::StoreError) -> Refusal {
    tracing::error!(error = %e, "usage query failed");
    Refusal::StoreUnavailable
}

/// Query parameters, each at most once.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>, known: &[&str]) -> Result<Self, Refusal> {
        let mut out: Vec<(String, String)> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let (name, value) = (decode(name), decode(value));
            if !known.contains(&name.as_str()) {
                return Err(Refusal::BadRequest(format!(
                    "unknown parameter {name:?}; this endpoint takes {}",
                    known.join(", ")
                )));
            }
            if out.iter().any(|(n, _)| *n == name) {
                return Err(Refusal::BadRequest(format!("{name} is given twice")));
            }
            out.push((name, value));
        }
        Ok(Self(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn bounded(&self, name: &str, (min, max, default): (u64, u64, u64)) -> Result<u64, Refusal> {
        let Some(value) = self.get(name) else {
            return Ok(default);
        };
        match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(Refusal::BadRequest(format!(
                "{name} must be a whole number from {min} to {max}"
            ))),
        }
    }
}
