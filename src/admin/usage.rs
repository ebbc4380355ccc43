//! `/usage/*` (SPEC 9): usage per user and for the project, read from the store after
//! a flush, so the answer includes every event up to the request.

use std::time::{Duration, UNIX_EPOCH};

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

    fn bounded(&self, name: &str, (min, max, default): (u64, u64, u64)) -> Result<u64, Refusal> {
        let Some((_, value)) = self.0.iter().find(|(n, _)| n == name) else {
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
