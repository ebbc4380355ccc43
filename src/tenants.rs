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
