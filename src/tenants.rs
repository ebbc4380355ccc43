//! The tenants this process knows: every tenant the usage store has rows for (read at
//! start) and every tenant seen on a request since (configured ones are in the
//! config). The leak guard treats a bare namespace root as a leak only for a known
//! tenant, since an arbitrary `u_...` string may be ordinary data.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashSet;

/// How many tenants are kept at most (about 100 MB); past it a new tenant is served
/// as usual but its bare root is no longer recognised by the guard.
pub const MAX_KNOWN: usize = 1_000_000;

#[derive(Debug)]
pub struct KnownTenants {
    /// Boxed, not `String`: 8 bytes less per entry, times the table's spare room,
    /// at a million tenants (scripts/tenants.py).
    seen: DashSet<Box<str>>,
    /// `seen.len()`, kept apart: DashSet counts by visiting every shard.
    count: AtomicUsize,
    bound: usize,
}

impl Default for KnownTenants {
    fn default() -> Self {
        Self::with_bound(MAX_KNOWN)
    }
}

impl KnownTenants {
    pub fn with_bound(bound: usize) -> Self {
        Self {
            seen: DashSet::new(),
            count: AtomicUsize::new(0),
            bound,
        }
    }

    pub fn note(&self, tenant: &str) {
        // Read first: the common case (already known) takes no write lock.
        if self.seen.contains(tenant) || self.count.load(Ordering::Relaxed) >= self.bound {
            return;
        }
        if self.seen.insert(Box::from(tenant)) {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds the tenants the store knows, up to the bound.
    pub fn seed<'a>(&self, tenants: impl IntoIterator<Item = &'a str>) {
        for tenant in tenants {
            self.note(tenant);
        }
    }

    /// True when `tenant` was seen on a request (configured tenants are the response
    /// stage's own list).
    pub fn knows(&self, tenant: &str) -> bool {
        self.seen.contains(tenant)
    }

    /// Every tenant seen since start.
    pub fn all(&self) -> Vec<String> {
        self.seen.iter().map(|t| t.key().to_string()).collect()
    }

    /// Forgets a tenant (offboarding); true when it was known.
    pub fn forget(&self, tenant: &str) -> bool {
        let forgotten = self.seen.remove(tenant).is_some();
        if forgotten {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        forgotten
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_tenants_stay_within_their_bound() {
        let known = KnownTenants::with_bound(2);
        known.seed(["alice", "bob", "carol"]);
        known.note("alice");
        assert_eq!(known.len(), 2);
        assert!(known.knows("alice") && known.knows("bob") && !known.knows("carol"));
        assert!(known.forget("bob"));
        known.note("carol");
        assert!(known.knows("carol") && known.len() == 2);
    }

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
