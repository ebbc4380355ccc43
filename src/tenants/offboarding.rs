//! Tenants being offboarded, and each tenant's requests in flight.

use std::sync::Arc;

/// Tenants being offboarded, and each tenant's requests in flight, so offboarding can
/// block a tenant and then wait for what it already let in: nothing a request does
/// (provisioning, learning ids) lands after offboarding erased it.
#[derive(Debug, Default)]
pub struct Offboarding {
    tenants: dashmap::DashMap<Arc<str>, State, std::hash::RandomState>,
}

#[derive(Debug, Default)]
struct State {
    /// Offboardings of the tenant under way.
    blocked: usize,
    /// Its requests past stage 2 whose answers have not ended.
    active: usize,
}

impl Offboarding {
    /// Blocks `tenant` until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>, tenant: &str) -> OffboardingGuard {
        let key: Arc<str> = Arc::from(tenant);
        self.tenants.entry(key.clone()).or_default().blocked += 1;
        OffboardingGuard {
            of: self.clone(),
            tenant: key,
        }
    }

    pub fn contains(&self, tenant: &str) -> bool {
        self.tenants.get(tenant).is_some_and(|s| s.blocked > 0)
    }

    /// Counts a request of `tenant` in flight until the guard is dropped; `None` while
    /// the tenant is being offboarded. One step, so an offboarding that has begun sees
    /// every request that got in before it.
    pub fn enter(self: &Arc<Self>, tenant: &str) -> Option<Active> {
        // A tenant with requests in flight already has its entry: its key is shared,
        // nothing is allocated.
        let key = self
            .tenants
            .get(tenant)
            .map_or_else(|| Arc::from(tenant), |entry| entry.key().clone());
        let mut state = self.tenants.entry(key.clone()).or_default();
        if state.blocked > 0 {
            return None;
        }
        state.active += 1;
        drop(state);
        Some(Active {
            of: self.clone(),
            tenant: key,
        })
    }

    /// Waits until the tenant has no request in flight; false when `within` ran out.
    pub async fn drained(&self, tenant: &str, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.tenants.get(tenant).is_none_or(|s| s.active == 0) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    fn release(&self, tenant: &str, what: fn(&mut State)) {
        self.tenants.remove_if_mut(tenant, |_, state| {
            what(state);
            state.blocked == 0 && state.active == 0
        });
    }
}

/// Ends one offboarding when dropped, whatever its outcome.
#[derive(Debug)]
pub struct OffboardingGuard {
    of: Arc<Offboarding>,
    tenant: Arc<str>,
}

impl Drop for OffboardingGuard {
    fn drop(&mut self) {
        self.of.release(&self.tenant, |s| s.blocked -= 1);
    }
}

/// One request of a tenant in flight; see [`Offboarding::enter`].
#[derive(Debug)]
pub struct Active {
    of: Arc<Offboarding>,
    tenant: Arc<str>,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.of.release(&self.tenant, |s| s.active -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_stays_blocked_until_its_last_offboarding_ends() {
        let offboarding = Arc::new(Offboarding::default());
        let first = offboarding.begin("alice");
        let second = offboarding.begin("alice");
        drop(first);
        assert!(offboarding.contains("alice"), "the second still runs");
        drop(second);
        assert!(!offboarding.contains("alice"));
    }

    #[tokio::test(start_paused = true)]
    async fn offboarding_waits_for_the_requests_that_got_in_before_it() {
        let offboarding = Arc::new(Offboarding::default());
        let request = offboarding.enter("alice").expect("not blocked");
        let blocked = offboarding.begin("alice");
        assert!(
            offboarding.enter("alice").is_none(),
            "refused while it runs"
        );
        let within = std::time::Duration::from_secs(1);
        assert!(
            !offboarding.drained("alice", within).await,
            "one still in flight"
        );
        drop(request);
        assert!(offboarding.drained("alice", within).await);
        drop(blocked);
        assert!(offboarding.enter("alice").is_some(), "served again");
        assert!(offboarding.tenants.len() <= 1);
    }
}
