//! The tenants this process has seen on requests (configured ones are in the config).
//! The leak guard treats a bare namespace root as a leak only for a known tenant, since
//! an arbitrary `u_...` string may be ordinary data.

use dashmap::DashSet;

#[derive(Debug, Default)]
pub struct KnownTenants {
    seen: DashSet<String>,
}

impl KnownTenants {
    pub fn note(&self, tenant: &str) {
        // Read first: the common case (already known) takes no write lock.
        if !self.seen.contains(tenant) {
            self.seen.insert(tenant.to_owned());
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
        self.seen.remove(tenant).is_some()
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Tenants being offboarded: refused as blocked while their state is erased, so no
/// request of theirs writes usage or takes a slot half-way through (SPEC 4.4).
#[derive(Debug, Default)]
pub struct Offboarding {
    /// How many offboardings run: the common case (none) costs one atomic load.
    running: std::sync::atomic::AtomicUsize,
    ids: DashSet<String>,
}

impl Offboarding {
    /// Blocks `tenant` until the returned guard is dropped.
    pub fn begin<'a>(&'a self, tenant: &str) -> OffboardingGuard<'a> {
        self.ids.insert(tenant.to_owned());
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        OffboardingGuard {
            of: self,
            tenant: tenant.to_owned(),
        }
    }

    pub fn contains(&self, tenant: &str) -> bool {
        self.running.load(std::sync::atomic::Ordering::Acquire) > 0 && self.ids.contains(tenant)
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
        self.of.ids.remove(&self.tenant);
        self.of
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}
