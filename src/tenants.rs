//! The tenants this process knows: configured ones and every tenant seen on a request.
//! The leak guard treats a bare namespace root as a leak only for a known tenant, since
//! an arbitrary `u_...` string may be ordinary data.

use dashmap::DashSet;

use crate::config::Config;

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

    pub fn knows(&self, config: &Config, tenant: &str) -> bool {
        config.tenants.contains_key(tenant) || self.seen.contains(tenant)
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
