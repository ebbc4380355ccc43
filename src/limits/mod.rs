//! Stage 3: the caller's limits (SPEC 6). In order: degradation past a soft cap (the
//! route answers for itself, costing nothing), the daily quotas, the concurrency cap,
//! then the rate: a GCRA bucket per tenant and one for the project, queueing or
//! refusing when empty.
//!
//! Settings ([`LimitSettings`]) come from the request's snapshot; state (buckets) lives
//! in [`Limiter`] beside it, keyed by tenant, so a reload changes limits, not state.

pub mod compile;
pub mod headers;
pub mod plan;
mod shared;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::gcra::{ceil_secs, Bucket, Decision, Rate};
use crate::identity::{Caller, TenantId};
use crate::refusal::Refusal;
use crate::store::redis::Redis;
use crate::store::settings::OnStoreError;
use crate::store::{Tenants, Usage};
pub use headers::RateLimit;
pub use plan::{DegradeAnswer, LimitSettings, RouteLimits};
use plan::{Plan, Queue};

/// Bucket state for every tenant that has been limited recently, and the project's.
#[derive(Debug, Default)]
pub struct Limiter {
    /// The buckets live in the per-tenant table, beside the tenant's other state.
    buckets: Arc<Tenants>,
    /// With `kind = "redis"`: the buckets and today's usage every replica shares.
    /// The local buckets then hold what is per replica (in-flight and queue counts,
    /// quota units held by requests in flight) and, while Redis is away, the
    /// fallback's tokens.
    shared: Option<Arc<Redis>>,
}

/// The project bucket's key: no tenant id is empty.
const PROJECT: &str = "";

/// What the stage reads besides the config: usage, time, and where queue waits go.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub usage: &'a Usage,
    pub clock: &'a dyn Clock,
    pub queue_wait: &'a prometheus::Histogram,
}

/// What the stage decided for a request that may go on.
#[derive(Debug)]
pub enum Admission<'c> {
    Forward(Option<Permit>),
    /// Answer with the route's degrade response; nothing was charged.
    Degrade(&'c DegradeAnswer),
}

/// What an admitted request holds until its answer's body ends (the pipeline ties it
/// there, after metering): a tenant's in-flight slot under `max_concurrent`, and the
/// quota units it may spend, held against the tenant's and the project's daily caps so
/// that concurrent requests near a cap cannot all pass. Released when dropped, against
/// the buckets it was taken from.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    tenant: Option<TenantId>,
    in_flight: bool,
    tenant_units: u64,
    project_units: u64,
}

impl Permit {
    /// Nothing held yet, charged to `tenant`'s bucket once something is.
    fn holding_nothing(limiter: &Arc<Limiter>, tenant: Option<&TenantId>) -> Self {
        Self {
            limiter: limiter.clone(),
            tenant: tenant.cloned(),
            in_flight: false,
            tenant_units: 0,
            project_units: 0,
        }
    }

    fn holds_anything(&self) -> bool {
        self.in_flight || self.tenant_units > 0 || self.project_units > 0
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let buckets = &self.limiter.buckets;
        let in_tenant = self.in_flight || self.tenant_units > 0;
        let tenant = self.tenant.as_ref().filter(|_| in_tenant);
        if let Some(bucket) = tenant.and_then(|t| buckets.bucket(t.as_str())) {
            if self.in_flight {
                bucket.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
            bucket
                .reserved
                .fetch_sub(self.tenant_units, Ordering::AcqRel);
        }
        if self.project_units > 0 {
            if let Some(bucket) = buckets.bucket(PROJECT) {
                bucket
                    .reserved
                    .fetch_sub(self.project_units, Ordering::AcqRel);
            }
        }
    }
}

/// The limits that apply to one caller, whichever table they came from.
struct Applied<'c> {
    policy: &'c str,
    rate: Option<Rate>,
    max_concurrent: Option<u32>,
    daily_units: Option<u64>,
    soft_units: Option<u64>,
    queue: Option<Queue>,
}

impl<'c> Applied<'c> {
    fn of(settings: &'c LimitSettings, caller: &Caller) -> Self {
        match caller {
            Caller::Tenant(t) => match plan_of(settings, t.as_str()) {
                Some(p) => Self {
                    policy: &p.name,
                    rate: p.rate,
                    max_concurrent: p.max_concurrent,
                    daily_units: p.daily_units,
                    soft_units: p.soft_units,
                    queue: p.queue,
                },
                None => Self::unlimited("unlimited"),
            },
            Caller::Project => Self {
                rate: settings.project.rate,
                ..Self::unlimited("project")
            },
        }
    }

    fn unlimited(policy: &'c str) -> Self {
        Self {
            policy,
            rate: None,
            max_concurrent: None,
            daily_units: None,
            soft_units: None,
            queue: None,
        }
    }
}

/// The plan a tenant runs under: its own, else the default; `None` is unlimited.
pub fn plan_of<'c>(settings: &'c LimitSettings, tenant: &str) -> Option<&'c Plan> {
    settings
        .tenants
        .get(tenant)
        .or(settings.default_plan.as_ref())
}

/// The name of the limits a caller runs under: its plan, "project" or "unlimited".
pub fn policy<'c>(settings: &'c LimitSettings, caller: &Caller) -> &'c str {
    Applied::of(settings, caller).policy
}

/// Every name `policy` can answer under these settings: a set the config bounds, for
/// the per-plan metrics exported at zero.
pub fn policies(settings: &LimitSettings) -> std::collections::BTreeSet<&str> {
    let mut names: std::collections::BTreeSet<&str> = settings
        .tenants
        .values()
        .chain(&settings.default_plan)
        .map(|p| p.name.as_str())
        .collect();
    names.insert("project");
    if settings.default_plan.is_none() {
        names.insert("unlimited");
    }
    names
}

/// The quota the caller's own usage counts against, for `X-Quota-*`.
pub fn daily_units(settings: &LimitSettings, caller: &Caller) -> Option<u64> {
    match caller {
        Caller::Tenant(t) => plan_of(settings, t.as_str()).and_then(|p| p.daily_units),
        Caller::Project => settings.project.daily_units,
    }
}

/// What the local path decides with: the usage it counts against the caps, and the
/// rate it charges locally (`None`: not enforced).
struct View {
    used: u64,
    everyone: u64,
    rate: Option<Rate>,
}

impl Limiter {
    /// Buckets kept in `tenants` (the app's table, shared with usage and the guard).
    pub fn over(tenants: Arc<Tenants>) -> Self {
        Self {
            buckets: tenants,
            shared: None,
        }
    }

    /// Limits shared through `redis` by every replica.
    pub fn shared(redis: Arc<Redis>, tenants: Arc<Tenants>) -> Self {
        Self {
            buckets: tenants,
            shared: Some(redis),
        }
    }

    /// Buckets held, for `tenantgate_limiter_keys`.
    pub fn keys(&self) -> usize {
        self.buckets.buckets()
    }

    /// Forgets a tenant's rate state (offboarding); true when it had a bucket. A bucket
    /// that requests still hold slots in stays, refilled, so each slot is released
    /// against the bucket it was taken from and the counts stay exact.
    pub fn forget(&self, tenant: &str) -> bool {
        self.buckets.drop_bucket(tenant, |bucket| {
            let in_use = !bucket.is_unused();
            if in_use {
                bucket.refill();
            }
            in_use
        })
    }

    /// Forgets buckets that are full again and idle: their state equals a fresh one.
    pub fn sweep(&self, now: u64) {
        self.buckets.sweep_buckets(|bucket| bucket.is_idle(now));
    }

    /// Runs stage 3 for one request. The rate-limit headers' values for the bucket
    /// charged are left in `rated` whatever the outcome.
    pub async fn admit<'c>(
        self: &Arc<Self>,
        settings: &'c LimitSettings,
        route: &'c RouteLimits,
        caller: &Caller,
        env: &Env<'_>,
        rated: &mut Option<RateLimit<'c>>,
    ) -> Result<Admission<'c>, Refusal> {
        let Env { usage, clock, .. } = *env;
        let limits = Applied::of(settings, caller);
        let day = clock.utc_day();
        let request = shared::Request {
            settings,
            route,
            caller,
            limits: &limits,
            day,
        };
        let view = match &self.shared {
            Some(redis) if shared::needs(&request) => {
                match self.admit_shared(redis, &request, env, rated).await {
                    Ok(admitted) => return Ok(admitted),
                    Err(shared::Stop::Refused(refusal)) => return Err(refusal),
                    Err(shared::Stop::Store(error)) => {
                        tracing::debug!(%error, "limits decided without the shared store");
                        redis.fell_back();
                        let rate = match redis.on_error() {
                            OnStoreError::LocalFallback => {
                                limits.rate.map(|r| r.shared_by(redis.settings.replicas))
                            }
                            OnStoreError::FailOpen => None,
                            OnStoreError::FailClosed => return Err(Refusal::LimitsUnavailable),
                        };
                        View {
                            used: usage.known(caller, day),
                            everyone: usage.known(&Caller::Project, day),
                            rate,
                        }
                    }
                }
            }
            _ => View {
                used: usage.used(caller, day),
                everyone: usage.project_used(day),
                rate: limits.rate,
            },
        };
        self.admit_local(&request, env, rated, view).await
    }

    /// Stage 3 with this replica's buckets: the only path without a shared store,
    /// the fallback while it is away.
    async fn admit_local<'c>(
        self: &Arc<Self>,
        request: &shared::Request<'_, 'c>,
        env: &Env<'_>,
        rated: &mut Option<RateLimit<'c>>,
        view: View,
    ) -> Result<Admission<'c>, Refusal> {
        let shared::Request {
            settings,
            route,
            caller,
            limits,
            ..
        } = *request;
        let clock = env.clock;
        let project = &settings.project;
        let View {
            used,
            everyone,
            rate,
        } = view;

        if let Some(answer) = &route.degrade {
            let past = |soft: Option<u64>, used: u64| soft.is_some_and(|s| used >= s);
            if past(limits.soft_units, used) || past(project.degrade_units, everyone) {
                return Ok(Admission::Degrade(answer));
            }
        }
        let tenant = caller.tenant().map(|t| t.as_str());
        let mut permit = Permit::holding_nothing(self, caller.tenant());
        let quota_exceeded = || Refusal::QuotaExceeded {
            retry_after: clock.secs_to_midnight(),
        };
        if let (Some(cap), Some(tenant)) = (limits.daily_units, tenant) {
            permit.tenant_units = self
                .reserve(tenant, cap, used, route.held)
                .ok_or_else(quota_exceeded)?;
        }
        if let Some(cap) = project.daily_units {
            permit.project_units = self
                .reserve(PROJECT, cap, everyone, route.held)
                .ok_or_else(quota_exceeded)?;
        }
        if let (Some(max), Some(tenant)) = (limits.max_concurrent, tenant) {
            self.hold(tenant, max)?;
            permit.in_flight = true;
        }
        let permit = permit.holds_anything().then_some(permit);
        let Some(rate) = rate else {
            return Ok(Admission::Forward(permit));
        };
        // The project bucket never queues (its `Applied` has no queue).
        let key = tenant.unwrap_or(PROJECT);
        let decision = self
            .take_queued(key, &rate, route.cost, limits, clock)
            .await;
        *rated = Some(RateLimit::of(limits.policy, &rate, &decision, clock));
        if let Decision::Reserved { wait, .. } = decision {
            env.queue_wait
                .observe(Duration::from_nanos(wait).as_secs_f64());
        }
        match decision {
            Decision::Allowed(_) | Decision::Reserved { .. } => Ok(Admission::Forward(permit)),
            Decision::Denied { retry_in, .. } => Err(Refusal::RateLimited {
                retry_after: ceil_secs(retry_in).max(1),
            }),
        }
    }

    /// Takes `cost` tokens from a tenant's bucket now, without queueing.
    pub fn take(&self, tenant: &str, rate: &Rate, cost: u64, now: u64) -> Decision {
        self.with_rated(tenant, rate, now, 0, |bucket| {
            bucket.take(rate, cost, now, None)
        })
    }

    /// As `with_bucket`, first rescaling a bucket charged under another rate. The
    /// rescale takes the shard's write lock, so it happens once per bucket per change.
    fn with_rated<T>(
        &self,
        tenant: &str,
        rate: &Rate,
        now: u64,
        allowance: u64,
        f: impl FnOnce(&Bucket) -> T,
    ) -> T {
        self.buckets.with_fitted_bucket(
            tenant,
            |bucket| !bucket.needs_rescale(rate),
            |bucket| bucket.rescale(rate, now, allowance),
            f,
        )
    }

    fn hold(&self, tenant: &str, max: u32) -> Result<(), Refusal> {
        self.with_bucket(tenant, |bucket| {
            if bucket.in_flight.fetch_add(1, Ordering::AcqRel) >= max {
                bucket.in_flight.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::TooManyInFlight);
            }
            Ok(())
        })
    }

    /// Holds `units` of a daily cap for one request: refused when what was used and
    /// what requests in flight already hold reach the cap. Taking before looking makes
    /// the check and the hold one step, so concurrent requests see each other.
    fn reserve(&self, key: &str, cap: u64, used: u64, units: u64) -> Option<u64> {
        self.with_bucket(key, |bucket| {
            let held = bucket.reserved.fetch_add(units, Ordering::AcqRel);
            if used.saturating_add(held) >= cap {
                bucket.reserved.fetch_sub(units, Ordering::AcqRel);
                return None;
            }
            Some(units)
        })
    }

    /// Takes tokens, or in queue mode reserves the next slot and sleeps exactly until
    /// it. Only this tenant's bucket is touched, so its queue delays no one else.
    async fn take_queued(
        &self,
        tenant: &str,
        rate: &Rate,
        cost: u64,
        limits: &Applied<'_>,
        clock: &dyn Clock,
    ) -> Decision {
        let now = clock.mono();
        let allowance = limits.queue.map_or(0, |q| {
            u64::try_from(q.max_wait.as_nanos()).unwrap_or(u64::MAX)
        });
        let decision = self.with_rated(tenant, rate, now, allowance, |bucket| {
            let max_wait = limits.queue.and_then(|q| {
                let queued = bucket.queued.fetch_add(1, Ordering::AcqRel);
                if queued >= q.max_queue {
                    bucket.queued.fetch_sub(1, Ordering::AcqRel);
                    return None;
                }
                Some(u64::try_from(q.max_wait.as_nanos()).unwrap_or(u64::MAX))
            });
            let decision = bucket.take(rate, cost, now, max_wait);
            if max_wait.is_some() && !matches!(decision, Decision::Reserved { .. }) {
                bucket.queued.fetch_sub(1, Ordering::AcqRel);
            }
            decision
        });
        if let Decision::Reserved { wait, .. } = decision {
            // Leaves the queue even if the client goes away while waiting.
            let _leave = Leave {
                limiter: self,
                tenant,
            };
            tokio::time::sleep(Duration::from_nanos(wait)).await;
        }
        decision
    }

    fn with_bucket<T>(&self, tenant: &str, f: impl FnOnce(&Bucket) -> T) -> T {
        self.buckets.with_bucket(tenant, f)
    }
}

struct Leave<'a> {
    limiter: &'a Limiter,
    tenant: &'a str,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if let Some(bucket) = self.limiter.buckets.bucket(self.tenant) {
            bucket.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
