//! Limit settings as compiled from the config: immutable, swapped with the snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::gcra::Rate;

/// A plan with a tenant's overrides applied (SPEC 6).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub rate: Option<Rate>,
    pub max_concurrent: Option<u32>,
    pub daily_units: Option<u64>,
    /// Units past which degradable routes degrade (`soft_cap × daily_units`).
    pub soft_units: Option<u64>,
    /// `overflow = "queue"`.
    pub queue: Option<Queue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    pub max_wait: Duration,
    pub max_queue: u32,
}

/// `[limits.project]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Project {
    pub rate: Option<Rate>,
    pub daily_units: Option<u64>,
    /// Units past which degradable routes degrade for everyone.
    pub degrade_units: Option<u64>,
}

/// Stage 3's settings; bucket state lives in [`Limiter`](super::Limiter), not here.
#[derive(Debug, Clone, Default)]
pub struct LimitSettings {
    /// Applies to tenants without a plan of their own; `None`: unlimited.
    pub default_plan: Option<Plan>,
    pub project: Project,
    /// Tenants with a plan of their own (`[tenants.ID] plan` or overrides).
    pub tenants: BTreeMap<String, Plan>,
}

/// What stage 3 knows of one route.
#[derive(Debug, Clone)]
pub struct RouteLimits {
    /// Rate-limit tokens per request.
    pub cost: u64,
    /// Quota units a request holds from admission until it is metered: the route's
    /// fixed `units`, or 1 when they are read from the answer.
    pub held: u64,
    /// `degradable = true`: the answer given past a soft cap instead of forwarding.
    pub degrade: Option<DegradeAnswer>,
}

/// `[route.degrade]`, compiled.
#[derive(Debug, Clone)]
pub struct DegradeAnswer {
    pub status: http::StatusCode,
    pub content_type: http::HeaderValue,
    pub body: bytes::Bytes,
}

/// `fraction × total`, rounded up, so a cap of 0.8 × 10 degrades from the 8th unit on.
pub fn fraction_of(fraction: f64, total: u64) -> u64 {
    (fraction * total as f64).ceil() as u64
}
