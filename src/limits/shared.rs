//! Stage 3 with `[store] kind = "redis"`: the rate bucket, the soft cap and the quota
//! are decided by one script on Redis, so every replica charges the same tokens and
//! sees every replica's flushed usage. What is per request stays here: the in-flight
//! slot (`max_concurrent` is per replica), the queue place, and the quota units an
//! admitted request holds until it is metered.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Admission, Applied, Env, Leave, LimitSettings, Limiter, Permit, RateLimit, RouteLimits, PROJECT,
};
use crate::gcra::{ceil_secs, Decision, Level};
use crate::identity::Caller;
use crate::refusal::Refusal;
use crate::store::redis::limits::{Ask, Verdict};
use crate::store::redis::Redis;
use crate::store::{StoreError, Unwritten};

/// One request's admission, as the shared path reads it.
#[derive(Clone, Copy)]
pub(super) struct Request<'a, 'c> {
    pub settings: &'c LimitSettings,
    pub route: &'c RouteLimits,
    pub caller: &'a Caller,
    pub limits: &'a Applied<'c>,
    pub day: u64,
}

/// Why the shared path stopped: a decision, or a store it could not ask.
pub(super) enum Stop {
    Refused(Refusal),
    Store(StoreError),
}

impl From<Refusal> for Stop {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

/// True when a limit that lives in the shared store applies: requests with none
/// (only `max_concurrent`, or nothing) never wait on Redis.
pub(super) fn needs(request: &Request<'_, '_>) -> bool {
    let degrade = request.route.degrade.is_some();
    let limits = request.limits;
    let project = &request.settings.project;
    limits.rate.is_some()
        || (request.caller.tenant().is_some()
            && (limits.daily_units.is_some() || (degrade && limits.soft_units.is_some())))
        || project.daily_units.is_some()
        || (degrade && project.degrade_units.is_some())
}

impl Limiter {
    pub(super) async fn admit_shared<'c>(
        self: &Arc<Self>,
        redis: &Redis,
        request: &Request<'_, 'c>,
        env: &Env<'_>,
        rated: &mut Option<RateLimit<'c>>,
    ) -> Result<Admission<'c>, Stop> {
        let Request {
            settings,
            route,
            caller,
            limits,
            day,
        } = *request;
        let Env {
            usage,
            clock,
            queue_wait,
        } = *env;
        let project = &settings.project;
        let tenant = caller.tenant().map(|t| t.as_str());
        let degrade = route.degrade.as_ref();
        let quota_exceeded = || Refusal::QuotaExceeded {
            retry_after: clock.secs_to_midnight(),
        };
        let soft = degrade.and(limits.soft_units);
        let counts_project =
            project.daily_units.is_some() || (degrade.is_some() && project.degrade_units.is_some());
        let counts_tenant = tenant.is_some() && (limits.daily_units.is_some() || soft.is_some());
        // Read only when a cap needs it: it takes the usage's pending lock.
        let unwritten = if counts_tenant || (tenant.is_none() && counts_project) {
            usage.unwritten(caller, day)
        } else {
            Unwritten::default()
        };
        let project_unwritten = match tenant {
            None => counts_project.then_some(unwritten),
            Some(_) => counts_project.then(|| usage.unwritten(&Caller::Project, day)),
        };

        let mut permit = Permit::holding_nothing(self, caller.tenant());
        if let (Some(max), Some(t)) = (limits.max_concurrent, tenant) {
            self.hold(t, max)?;
            permit.in_flight = true;
        }
        // Held before the store is asked, as on the local path: concurrent requests
        // near the cap see each other.
        let mut room = None;
        if let (Some(cap), Some(t)) = (limits.daily_units, tenant) {
            let held = self.hold_units(t, route.held);
            permit.tenant_units = route.held;
            room = Some(cap.saturating_sub(held.saturating_add(unwritten.pending)));
        }
        let project_held = project.daily_units.map(|_| {
            permit.project_units = route.held;
            self.hold_units(PROJECT, route.held)
        });
        let key = tenant.unwrap_or(PROJECT);
        let mut leave = None;
        let max_wait = limits.queue.and_then(|q| {
            self.with_bucket(key, |bucket| {
                if bucket.queued.fetch_add(1, Ordering::AcqRel) >= q.max_queue {
                    bucket.queued.fetch_sub(1, Ordering::AcqRel);
                    return None;
                }
                Some(())
            })?;
            leave = Some(Leave {
                limiter: self,
                tenant: key,
            });
            Some(u64::try_from(q.max_wait.as_nanos()).unwrap_or(u64::MAX))
        });
        let ask = Ask {
            tenant,
            day,
            rate: limits.rate.map(|r| (r.interval(), r.burst())),
            cost: route.cost,
            max_wait,
            soft: soft.map(|s| s.saturating_sub(unwritten.pending)),
            room,
            landing: unwritten.landing,
            project: project_unwritten,
        };
        let answer = redis.admit(&ask).await.map_err(Stop::Store)?;
        if counts_tenant {
            usage.saw_shared(caller, day, answer.units);
        }
        if let Some(units) = answer.project_units {
            usage.saw_shared(&Caller::Project, day, units);
        }
        let everyone = answer.project_units.unwrap_or(0);
        match (answer.verdict, degrade) {
            (Verdict::Degrade, Some(page)) => return Ok(Admission::Degrade(page)),
            (Verdict::OverQuota, _) => return Err(quota_exceeded().into()),
            _ => {}
        }
        if let Some(page) = degrade.filter(|_| project.degrade_units.is_some_and(|d| everyone >= d))
        {
            return Ok(Admission::Degrade(page));
        }
        if let (Some(cap), Some(held)) = (project.daily_units, project_held) {
            if everyone.saturating_add(held) >= cap {
                return Err(quota_exceeded().into());
            }
        }
        let permit = permit.holds_anything().then_some(permit);
        let Some(rate) = limits.rate else {
            return Ok(Admission::Forward(permit));
        };
        let level = Level {
            remaining: answer.remaining,
            full_in: answer.full_in,
        };
        let decision = match answer.verdict {
            Verdict::Reserved(wait) => Decision::Reserved { wait, level },
            Verdict::Denied(retry_in) => Decision::Denied { retry_in, level },
            _ => Decision::Allowed(level),
        };
        *rated = Some(RateLimit::of(limits.policy, &rate, &decision, clock));
        match decision {
            Decision::Allowed(_) => Ok(Admission::Forward(permit)),
            Decision::Reserved { wait, .. } => {
                queue_wait.observe(Duration::from_nanos(wait).as_secs_f64());
                // The slot is the shared bucket's; the wait is this replica's.
                tokio::time::sleep(Duration::from_nanos(wait)).await;
                drop(leave);
                Ok(Admission::Forward(permit))
            }
            Decision::Denied { retry_in, .. } => Err(Refusal::RateLimited {
                retry_after: ceil_secs(retry_in).max(1),
            }
            .into()),
        }
    }

    /// Holds `units` of a daily cap in this replica's bucket; what was held before.
    fn hold_units(&self, key: &str, units: u64) -> u64 {
        self.with_bucket(key, |bucket| {
            bucket.reserved.fetch_add(units, Ordering::AcqRel)
        })
    }
}
