//! The tenants this process knows: every tenant the usage store has rows for (read at
//! start) and every tenant seen on a request since (configured ones are in the
//! config). The leak guard treats a bare namespace root as a leak only for a known
//! tenant, since an arbitrary `u_...` string may be ordinary data.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashSet;

/// How many tenants are kept at most (about 100 MB); past it a new tenant is served
/// as usual but its bare root is no longer recognised by the guard.
pub const MAX_KNOWN: usize = 1_000_000;

#[derive(Debug)]
pub struct KnownTenants {
    seen: DashSet<String>,
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
        if self.seen.insert(tenant.to_owned()) {
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
        self.seen.iter().map(|t| t.key().clone()).collect()
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
        let offboarding = Offboarding::default();
        let first = offboarding.begin("alice");
        let second = offboarding.begin("alice");
        drop(first);
        assert!(offboarding.contains("alice"), "the second still runs");
        drop(second);
        assert!(!offboarding.contains("alice"));
    }
}

/// Tenants being offboarded: refused as blocked while their state is erased, so no
/// request of theirs writes usage or takes a slot half-way through (SPEC 4.4).
#[derive(Debug, Default)]
pub struct Offboarding {
    /// How many offboardings run: the common case (none) costs one atomic load.
    running: std::sync::atomic::AtomicUsize,
    /// Each tenant with the number of offboardings of it under way.
    ids: dashmap::DashMap<String, usize>,
}

impl Offboarding {
    /// Blocks `tenant` until the returned guard is dropped.
    pub fn begin<'a>(&'a self, tenant: &str) -> OffboardingGuard<'a> {
        *self.ids.entry(tenant.to_owned()).or_insert(0) += 1;
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        OffboardingGuard {
            of: self,
            tenant: tenant.to_owned(),
        }
    }

    pub fn contains(&self, tenant: &str) -> bool {
        self.running.load(std::sync::atomic::Ordering::Acquire) > 0 && self.ids.contains_key(tenant)
    }
}

/// Ends one offboarding when dropped, whatever its outcome.
#[derive(Debug)]
pub struct OffboardingGuard<'a> {
    of: &'a Offboarding,
    tenant: String,
}

impl Drop for OffboardingGuard<'_> {
    fn drop(&mut self) {
        self.of.ids.remove_if_mut(&self.tenant, |_, n| {
            *n -= 1;
            *n == 0
        });
        self.of
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}
