//! `[limits]` plans and the project, per-tenant plans and overrides, and the routes'
//! `cost` and `degrade` (SPEC 6), compiled into [`LimitSettings`] and [`RouteLimits`].

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use super::plan::{fraction_of, DegradeAnswer, LimitSettings, Plan, Project, Queue, RouteLimits};
use crate::gcra::Rate;
use crate::spec::units::Dur;
use crate::spec::{key, Errors, KeyPath, Seg};

/// `[limits.plans.NAME]`, and the same fields as per-tenant overrides (SPEC 6).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct PlanSpec {
    pub rate: Option<u64>,
    pub per: Option<Dur>,
    pub burst: Option<u64>,
    pub max_concurrent: Option<u32>,
    pub daily_units: Option<u64>,
    pub soft_cap: Option<f64>,
    pub overflow: Option<Overflow>,
    pub max_wait: Option<Dur>,
    pub max_queue: Option<u32>,
}

/// `[limits.plans.NAME]` as the file writes it. [`PlanSpec`] is also flattened into
/// `[tenants.ID]`, so it cannot refuse unknown keys itself; they are collected here
/// and refused by [`compile`].
#[derive(Debug, Default, Clone, Deserialize)]
pub struct PlanTable {
    #[serde(flatten)]
    pub fields: PlanSpec,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

/// The policy name of a tenant whose own keys override no named plan: never the
/// tenant id, which would become a metric label.
pub const OVERRIDE_POLICY: &str = "override";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    Reject,
    Queue,
}

/// `[limits.project]`: the project bucket and the whole upstream's daily budget.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    pub rate: Option<u64>,
    pub per: Option<Dur>,
    pub burst: Option<u64>,
    pub daily_units: Option<u64>,
    pub degrade_at: Option<f64>,
}

/// `[route.degrade]`: the answer a degradable route gives past a soft cap.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DegradeSpec {
    #[serde(default = "default_degrade_status")]
    pub status: u16,
    pub body: String,
    pub content_type: Option<String>,
}

fn default_degrade_status() -> u16 {
    200
}

/// A `[tenants.ID]` table's limit keys.
pub struct TenantLimits<'a> {
    pub id: &'a str,
    pub plan: Option<&'a str>,
    pub overrides: &'a PlanSpec,
}

/// A `[[route]]`'s limit keys.
pub struct RouteLimitsSpec<'a> {
    /// False when the route's `match` did not parse: stage 2 reported the route, so
    /// its other keys are not judged (one error per broken route), only its cost.
    pub matched: bool,
    pub cost: Option<u64>,
    /// See [`RouteLimits::held`].
    pub held: u64,
    pub degradable: bool,
    pub degrade: Option<&'a DegradeSpec>,
}

/// Everything stage 3 compiles from.
pub struct LimitsSpec<'a> {
    pub default_plan: Option<&'a str>,
    pub plans: &'a BTreeMap<String, PlanTable>,
    pub project: &'a ProjectSpec,
    pub tenants: Vec<TenantLimits<'a>>,
    pub routes: Vec<RouteLimitsSpec<'a>>,
}

/// Stage 3's settings and its rules for each route, in route order.
#[derive(Debug)]
pub struct Compiled {
    pub settings: LimitSettings,
    pub routes: Vec<RouteLimits>,
}

pub fn compile(spec: &LimitsSpec<'_>, errors: &mut Errors) -> Compiled {
    let mut settings = settings(spec, errors);
    for tenant in &spec.tenants {
        if let Some(plan) = tenant_plan(spec, tenant, errors) {
            settings.tenants.insert(tenant.id.to_owned(), plan);
        }
    }
    let routes: Vec<RouteLimits> = spec
        .routes
        .iter()
        .enumerate()
        .map(|(i, route)| route_limits(route, i, errors))
        .collect();
    let named: Vec<Plan> = spec
        .plans
        .iter()
        .filter_map(|(name, table)| plan_quietly(name, &table.fields))
        .collect();
    let plans = named.iter().chain(settings.tenants.values());
    check_costs(&routes, plans, &settings.project, errors);
    Compiled { settings, routes }
}

const DEFAULT_PER: Duration = Duration::from_secs(1);
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(2);
const DEFAULT_MAX_QUEUE: u32 = 32;

fn settings(spec: &LimitsSpec<'_>, errors: &mut Errors) -> LimitSettings {
    for (name, table) in spec.plans {
        for key_name in table.unknown.keys() {
            let mut path = plan_path(name);
            path.push(key(key_name));
            errors.add(
                path,
                format!("unknown key {key_name:?} in [limits.plans.{name}]"),
            );
        }
        plan(
            name,
            &table.fields,
            &PlanSpec::default(),
            plan_path(name),
            errors,
        );
    }
    let default_plan = spec.default_plan.and_then(|name| {
        let Some(fields) = spec.plans.get(name).map(|t| &t.fields) else {
            errors.add(
                vec![key("limits"), key("default_plan")],
                format!("default_plan {name:?} is not a [limits.plans] entry"),
            );
            return None;
        };
        plan_quietly(name, fields)
    });
    let p = spec.project;
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
        tenants: BTreeMap::new(),
    }
}

/// The plan a `[tenants.ID]` table resolves to: its `plan` (or the default plan) with
/// its own fields on top; `None` when neither names any limit.
fn tenant_plan(
    spec: &LimitsSpec<'_>,
    tenant: &TenantLimits<'_>,
    errors: &mut Errors,
) -> Option<Plan> {
    let at = vec![key("tenants"), key(tenant.id)];
    let name = tenant.plan.or(spec.default_plan);
    let base = match name {
        Some(name) => match spec.plans.get(name) {
            Some(base) => base.fields.clone(),
            None => {
                let mut path = at.clone();
                path.push(key("plan"));
                errors.add(path, format!("plan {name:?} is not a [limits.plans] entry"));
                return None;
            }
        },
        None => PlanSpec::default(),
    };
    let over = tenant.overrides;
    if name.is_none() && is_empty(over) {
        return None;
    }
    let label = name.unwrap_or(OVERRIDE_POLICY);
    plan(label, &base, over, at, errors)
}

/// A named plan, compiled without reporting (its errors are reported once, by
/// [`settings`]).
fn plan_quietly(name: &str, fields: &PlanSpec) -> Option<Plan> {
    let quiet = &mut Errors::default();
    plan(name, fields, &PlanSpec::default(), plan_path(name), quiet)
}

fn plan_path(name: &str) -> KeyPath {
    vec![key("limits"), key("plans"), key(name)]
}

fn is_empty(f: &PlanSpec) -> bool {
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
    base: &PlanSpec,
    over: &PlanSpec,
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

/// A route's `cost` and `degrade`.
fn route_limits(route: &RouteLimitsSpec<'_>, i: usize, errors: &mut Errors) -> RouteLimits {
    let path = |k: &str| vec![key("route"), Seg::Index(i), key(k)];
    let cost = route.cost.unwrap_or(1);
    if !route.matched {
        return RouteLimits {
            cost,
            held: route.held,
            degrade: None,
        };
    }
    if cost == 0 {
        errors.add(path("cost"), "cost must be at least 1");
    }
    let degrade = match (route.degrade, route.degradable) {
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
    RouteLimits {
        cost,
        held: route.held,
        degrade,
    }
}

fn degrade_answer(d: &DegradeSpec, at: KeyPath, errors: &mut Errors) -> Option<DegradeAnswer> {
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
fn check_costs<'p>(
    routes: &[RouteLimits],
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
    for (i, route) in routes.iter().enumerate() {
        let cost = route.cost;
        if let Some((who, burst)) = bursts.iter().find(|(_, burst)| cost > *burst) {
            errors.add(
                vec![key("route"), Seg::Index(i), key("cost")],
                format!("cost {cost} is more than the burst {burst} of {who}: the route could never be served"),
            );
        }
    }
}

#[cfg(test)]
mod tests;
