//! `[limits]`, plans, per-tenant overrides, and the routes' `cost`, `units` and
//! `degrade` (SPEC 6), compiled into [`LimitSettings`] and per-tenant [`Plan`]s.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use super::super::load::{key, KeyPath, Seg};
use super::super::model::{self, Overflow, PlanFields};
use super::Errors;
use crate::limits::gcra::Rate;
use crate::limits::plan::{fraction_of, LimitSettings, Plan, Project, Queue};
use crate::meter::RouteUnits;
use crate::rewrite::pointer::Pointer;
use crate::route::table::DegradeAnswer;

const DEFAULT_PER: Duration = Duration::from_secs(1);
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(2);
const DEFAULT_MAX_QUEUE: u32 = 32;

pub fn settings(file: &model::File, errors: &mut Errors) -> LimitSettings {
    let limits = &file.limits;
    for (name, fields) in &limits.plans {
        plan(
            name,
            fields,
            &PlanFields::default(),
            plan_path(name),
            errors,
        );
    }
    let default_plan = limits.default_plan.as_ref().and_then(|name| {
        let Some(fields) = limits.plans.get(name) else {
            errors.add(
                vec![key("limits"), key("default_plan")],
                format!("default_plan {name:?} is not a [limits.plans] entry"),
            );
            return None;
        };
        plan_quietly(name, fields, &mut Errors::default())
    });
    let p = &limits.project;
    let at = |k: &str| vec![key("limits"), key("project"), key(k)];
    let rate = p.rate.and_then(|rate| {
        let per = p.per.map_or(DEFAULT_PER, |d| d.0);
        Rate::new(rate, per, p.burst.unwrap_or(rate))
            .map_err(|e| errors.add(at("rate"), e))
            .ok()
    });
    let degrade_units = p.degrade_at.and_then(|f| {
        let valid = fraction(f, at("degrade_at"), errors)?;
        match p.daily_units {
            Some(total) => Some(fraction_of(valid, total)),
            None => {
                errors.add(
                    at("degrade_at"),
                    "degrade_at needs [limits.project] daily_units",
                );
                None
            }
        }
    });
    LimitSettings {
        default_plan,
        project: Project {
            rate,
            daily_units: p.daily_units,
            degrade_units,
        },
    }
}

/// The plan a `[tenants.ID]` table resolves to: its `plan` (or the default plan) with
/// its own fields on top; `None` when neither names any limit.
pub fn tenant_plan(
    file: &model::File,
    id: &str,
    settings: &model::TenantSettings,
    errors: &mut Errors,
) -> Option<Plan> {
    let at = vec![key("tenants"), key(id)];
    for name in settings.unknown.keys() {
        let mut path = at.clone();
        path.push(key(name));
        errors.add(path, format!("unknown key {name:?} in [tenants.{id}]"));
    }
    let name = settings.plan.as_ref().or(file.limits.default_plan.as_ref());
    let base = match name {
        Some(name) => match file.limits.plans.get(name) {
            Some(base) => base.clone(),
            None => {
                let mut path = at.clone();
                path.push(key("plan"));
                errors.add(path, format!("plan {name:?} is not a [limits.plans] entry"));
                return None;
            }
        },
        None => PlanFields::default(),
    };
    let over = &settings.overrides;
    if name.is_none() && is_empty(over) {
        return None;
    }
    let label = name.map_or_else(|| id.to_owned(), Clone::clone);
    plan(&label, &base, over, at, errors)
}

/// A named plan, compiled without reporting (its errors are reported once, by
/// [`settings`]).
pub fn plan_quietly(name: &str, fields: &PlanFields, errors: &mut Errors) -> Option<Plan> {
    plan(
        name,
        fields,
        &PlanFields::default(),
        plan_path(name),
        errors,
    )
}

fn plan_path(name: &str) -> KeyPath {
    vec![key("limits"), key("plans"), key(name)]
}

fn is_empty(f: &PlanFields) -> bool {
    f.rate.is_none()
        && f.per.is_none()
        && f.burst.is_none()
        && f.max_concurrent.is_none()
        && f.daily_units.is_none()
        && f.soft_cap.is_none()
        && f.overflow.is_none()
        && f.max_wait.is_none()
        && f.max_queue.is_none()
}

/// `base` with every field `over` sets replacing it.
fn plan(
    name: &str,
    base: &PlanFields,
    over: &PlanFields,
    at: KeyPath,
    errors: &mut Errors,
) -> Option<Plan> {
    let path = |k: &str| {
        let mut p = at.clone();
        p.push(key(k));
        p
    };
    let rate_n = over.rate.or(base.rate);
    let per = over.per.or(base.per).map_or(DEFAULT_PER, |d| d.0);
    let burst = over.burst.or(base.burst);
    let rate = match rate_n {
        Some(n) => match Rate::new(n, per, burst.unwrap_or(n)) {
            Ok(rate) => Some(rate),
            Err(e) => {
                errors.add(path("rate"), e);
                return None;
            }
        },
        None => None,
    };
    let daily_units = over.daily_units.or(base.daily_units);
    let soft_units = match over.soft_cap.or(base.soft_cap) {
        Some(f) => {
            let f = fraction(f, path("soft_cap"), errors)?;
            let Some(total) = daily_units else {
                errors.add(path("soft_cap"), "soft_cap needs daily_units");
                return None;
            };
            Some(fraction_of(f, total))
        }
        None => None,
    };
    let queue = match over.overflow.or(base.overflow) {
        Some(Overflow::Queue) => {
            if rate.is_none() {
                errors.add(path("overflow"), "overflow = \"queue\" needs a rate");
                return None;
            }
            Some(Queue {
                max_wait: over
                    .max_wait
                    .or(base.max_wait)
                    .map_or(DEFAULT_MAX_WAIT, |d| d.0),
                max_queue: over
                    .max_queue
                    .or(base.max_queue)
                    .unwrap_or(DEFAULT_MAX_QUEUE),
            })
        }
        _ => None,
    };
    Some(Plan {
        name: name.to_owned(),
        rate,
        max_concurrent: over.max_concurrent.or(base.max_concurrent),
        daily_units,
        soft_units,
        queue,
    })
}

fn fraction(f: f64, at: KeyPath, errors: &mut Errors) -> Option<f64> {
    if f > 0.0 && f <= 1.0 {
        Some(f)
    } else {
        errors.add(at, "must be a fraction in (0, 1]");
        None
    }
}

/// A route's `cost`, `units` and `degrade`.
pub fn route_limits(
    route: &model::Route,
    i: usize,
    errors: &mut Errors,
) -> (u64, RouteUnits, Option<DegradeAnswer>) {
    let path = |k: &str| vec![key("route"), Seg::Index(i), key(k)];
    let cost = route.cost.unwrap_or(1);
    if cost == 0 {
        errors.add(path("cost"), "cost must be at least 1");
    }
    let units = match &route.units {
        None => RouteUnits::default(),
        Some(model::Units::Fixed(n)) => RouteUnits::Fixed(*n),
        Some(model::Units::Header { header }) => match HeaderName::try_from(header.as_str()) {
            Ok(name) => RouteUnits::Header(name),
            Err(_) => {
                errors.add(path("units"), format!("{header:?} is not a header name"));
                RouteUnits::default()
            }
        },
        Some(model::Units::Json { json }) => {
            let pointer = Pointer::parse(json).ok().filter(|p| !p.has_wildcard());
            if pointer.is_none() {
                errors.add(path("units"), "units.json must be a JSON pointer without wildcards, like \"/usage/total_tokens\"");
            }
            if route.scope != model::Scope::Tenant || route.response.passthrough {
                errors.add(
                    path("units"),
                    "units.json reads the answer's body, which only tenant routes without passthrough buffer",
                );
            }
            pointer.map_or_else(RouteUnits::default, RouteUnits::Json)
        }
    };
    let degrade = match (&route.degrade, route.degradable) {
        (None, false) => None,
        (None, true) => {
            errors.add(
                path("degradable"),
                "degradable = true needs a [route.degrade] answer (status, body)",
            );
            None
        }
        (Some(_), false) => {
            errors.add(
                path("degrade"),
                "[route.degrade] is used only with degradable = true",
            );
            None
        }
        (Some(d), true) => degrade_answer(d, path("degrade"), errors),
    };
    (cost, units, degrade)
}

fn degrade_answer(d: &model::Degrade, at: KeyPath, errors: &mut Errors) -> Option<DegradeAnswer> {
    let status = StatusCode::from_u16(d.status)
        .ok()
        .filter(|s| !s.is_informational());
    let content_type = d.content_type.as_deref().unwrap_or("application/json");
    match (status, HeaderValue::from_str(content_type)) {
        (Some(status), Ok(content_type)) => Some(DegradeAnswer {
            status,
            content_type,
            body: Bytes::from(d.body.clone()),
        }),
        _ => {
            errors.add(
                at,
                "degrade needs a final HTTP status and a valid content_type",
            );
            None
        }
    }
}

/// Routes whose `cost` no bucket could ever pay are refused rather than left to 429
/// forever.
pub fn check_costs<'p>(
    file: &model::File,
    plans: impl Iterator<Item = &'p Plan>,
    project: &Project,
    errors: &mut Errors,
) {
    let bursts: Vec<(String, u64)> = plans
        .filter_map(|p| Some((format!("plan {:?}", p.name), p.rate?.burst())))
        .chain(
            project
                .rate
                .map(|r| ("[limits.project]".to_owned(), r.burst())),
        )
        .collect();
    for (i, route) in file.routes.iter().enumerate() {
        let cost = route.cost.unwrap_or(1);
        if let Some((who, burst)) = bursts.iter().find(|(_, burst)| cost > *burst) {
            errors.add(
                vec![key("route"), Seg::Index(i), key("cost")],
                format!("cost {cost} is more than the burst {burst} of {who}: the route could never be served"),
            );
        }
    }
}
