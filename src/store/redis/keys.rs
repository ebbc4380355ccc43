//! Every key tenantgate writes, in one place. Keys of one script share a hash tag, so
//! each script runs on one Redis Cluster slot: a tenant's bucket, usage rows and days
//! are `{t:<tenant>}`; the day indexes and project totals `{usage}`; the
//! ownership rows, per-tenant id sets and provisioning marks `{own}`.

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// A tenant's GCRA bucket; the project's sits with the project's usage.
    pub fn bucket(&self, tenant: Option<&str>) -> String {
        match tenant {
            Some(t) => format!("{}:{{t:{t}}}:rate", self.prefix),
            None => format!("{}:{{usage}}:rate", self.prefix),
        }
    }

    /// A tenant's usage on one UTC day: a hash of the SPEC 8 counters.
    pub fn usage(&self, tenant: &str, day: u64) -> String {
        format!("{}:{{t:{tenant}}}:u:{day}", self.prefix)
    }

    /// The days a tenant has usage on, for offboarding.
    pub fn days(&self, tenant: &str) -> String {
        format!("{}:{{t:{tenant}}}:days", self.prefix)
    }

    /// The tenants with usage on a day, by units.
    pub fn day_index(&self, day: u64) -> String {
        format!("{}:{{usage}}:d:{day}", self.prefix)
    }

    /// The project's usage on a day.
    pub fn project(&self, day: u64) -> String {
        format!("{}:{{usage}}:p:{day}", self.prefix)
    }

    /// `kind:id` -> owning namespace root.
    pub fn owners(&self) -> String {
        format!("{}:{{own}}:ids", self.prefix)
    }

    /// The prefix of the per-tenant sets of owned ids (the script appends the tenant).
    pub fn owned_by_prefix(&self) -> String {
        format!("{}:{{own}}:t:", self.prefix)
    }

    pub fn owned_by(&self, tenant: &str) -> String {
        format!("{}{tenant}", self.owned_by_prefix())
    }

    /// The channel claims, releases and offboardings are published on.
    pub fn events(&self) -> String {
        format!("{}:{{own}}:events", self.prefix)
    }

    /// Namespace root -> Unix seconds it was provisioned.
    pub fn provisioned(&self) -> String {
        format!("{}:{{own}}:provisioned", self.prefix)
    }

    /// Held by the one replica provisioning a tenant right now.
    pub fn provisioning(&self, root: &str) -> String {
        format!("{}:{{own}}:lock:{root}", self.prefix)
    }
}
