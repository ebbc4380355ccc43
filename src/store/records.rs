//! Facts that must outlive a restart the moment they are made (SPEC 4.3, 4.4, 8):
//! which tenant owns each opaque backend id, and which tenants are provisioned. Both
//! are held whole in memory, so the request path never reads the disk, and written
//! through to a [`RecordsBackend`] before the answer that made them is returned.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::{DashMap, DashSet};

use super::redis::records::{Event, Followed, RedisRecords};
use super::redis::Redis;
use super::{lock, StoreError};

/// One ownership row: `tenant` owns the backend id `id` of kind `kind`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
pub struct Owned {
    pub kind: String,
    pub id: String,
    pub tenant: String,
}

/// A kind of opaque id (`owned:KIND`, `learn`): a name of letters, digits, `_`, `-`
/// and `.`, since it lands in logs and store keys.
pub fn kind(text: &str) -> Result<Arc<str>, String> {
    let valid = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(Arc::from(text))
    } else {
        Err(format!(
            "owned:{text}: a kind is a name of letters, digits, _ - and . (owned:collection)"
        ))
    }
}

/// Where the records live: [`super::embedded::Embedded`] or [`MemoryRecords`].
pub trait RecordsBackend: Send + Sync + std::fmt::Debug {
    /// Every ownership row, read once at start.
    fn owners(&self) -> Result<Vec<Owned>, StoreError>;
    /// Writes `rows` in one transaction, unless any is already owned by another
    /// tenant: then nothing is written and the answer is how many. A local store is
    /// only asked after the caller checked; a shared one checks again, atomically,
    /// since another replica may have claimed an id meanwhile.
    fn own(&self, rows: &[Owned]) -> Result<u64, StoreError>;
    /// Drops these rows.
    fn disown(&self, rows: &[Owned]) -> Result<(), StoreError>;
    /// Drops every row of `tenant`; `known` are those this process holds, which is
    /// all of them for a local store. How many were dropped.
    fn erase_owner(&self, _tenant: &str, known: &[Owned]) -> Result<u64, StoreError> {
        self.disown(known)?;
        Ok(known.len() as u64)
    }
    /// Every tenant marked provisioned, read once at start.
    fn provisioned(&self) -> Result<Vec<String>, StoreError>;
    fn mark_provisioned(&self, tenant: &str, at: u64) -> Result<(), StoreError>;
    /// Drops a tenant's mark; true when it had one.
    fn unmark_provisioned(&self, tenant: &str) -> Result<bool, StoreError>;
}

/// A backend in memory: the tests' and the playground's.
#[derive(Debug, Default)]
pub struct MemoryRecords {
    owners: Mutex<Vec<Owned>>,
    provisioned: Mutex<Vec<String>>,
}

impl RecordsBackend for MemoryRecords {
    fn owners(&self) -> Result<Vec<Owned>, StoreError> {
        Ok(lock(&self.owners).clone())
    }

    fn own(&self, rows: &[Owned]) -> Result<u64, StoreError> {
        lock(&self.owners).extend_from_slice(rows);
        Ok(0)
    }

    fn disown(&self, rows: &[Owned]) -> Result<(), StoreError> {
        lock(&self.owners).retain(|r| !rows.contains(r));
        Ok(())
    }

    fn provisioned(&self) -> Result<Vec<String>, StoreError> {
        Ok(lock(&self.provisioned).clone())
    }

    fn mark_provisioned(&self, tenant: &str, _at: u64) -> Result<(), StoreError> {
        lock(&self.provisioned).push(tenant.to_owned());
        Ok(())
    }

    fn unmark_provisioned(&self, tenant: &str) -> Result<bool, StoreError> {
        let mut marks = lock(&self.provisioned);
        let before = marks.len();
        marks.retain(|t| t != tenant);
        Ok(marks.len() < before)
    }
}

/// Ends a spawned task when its owner ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why ids could not be taught to a tenant.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Ids another tenant owns: the first owner wins.
    #[error("{0} id(s) are owned by another tenant")]
    OwnedByAnother(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Ownership and provisioning marks, in memory and written through.
#[derive(Debug)]
pub struct Records {
    backend: Box<dyn RecordsBackend>,
    /// With `kind = "redis"`: the shared store, asked for the owners of the ids a
    /// request names (another replica may have learned them) and for provisioning.
    shared: Option<Arc<Redis>>,
    /// Bumped by every change the records channel delivers: a write to this view
    /// made from an answer read before a change is dropped, not laid over it.
    changes: std::sync::atomic::AtomicU64,
    /// `kind:id` -> owner. Kinds are config names without `:`.
    owners: DashMap<Box<str>, Arc<str>, std::hash::RandomState>,
    provisioned: DashSet<Box<str>, std::hash::RandomState>,
    /// Claims one at a time: the check against other owners and the write are one
    /// step, so of two tenants taught the same id at once exactly one wins.
    claiming: Mutex<()>,
}

fn key(kind: &str, id: &str) -> Box<str> {
    let mut key = String::with_capacity(kind.len() + 1 + id.len());
    key.push_str(kind);
    key.push(':');
    key.push_str(id);
    key.into_boxed_str()
}

impl Records {
    /// Opens the records over `backend`, reading every row into memory.
    pub fn open(backend: Box<dyn RecordsBackend>) -> Result<Self, StoreError> {
        let records = Self::over(backend);
        let mut tenants: std::collections::HashMap<String, Arc<str>> = Default::default();
        for row in records.backend.owners()? {
            let owner = tenants
                .entry(row.tenant.clone())
                .or_insert_with(|| Arc::from(row.tenant.as_str()))
                .clone();
            records.owners.insert(key(&row.kind, &row.id), owner);
        }
        for tenant in records.backend.provisioned()? {
            records.provisioned.insert(tenant.into_boxed_str());
        }
        Ok(records)
    }

    /// In memory only: for tests and the playground.
    pub fn in_memory() -> Self {
        Self::over(Box::new(MemoryRecords::default()))
    }

    /// Over the Redis every replica shares, reading every row into memory. Blocking.
    pub fn shared(redis: Arc<Redis>) -> Result<Self, StoreError> {
        let mut records = Self::open(Box::new(RedisRecords(redis.clone())))?;
        records.shared = Some(redis);
        Ok(records)
    }

    /// Over the shared store, holding nothing yet (Redis was away at start).
    pub fn shared_empty(redis: Arc<Redis>) -> Self {
        let mut records = Self::over(Box::new(RedisRecords(redis.clone())));
        records.shared = Some(redis);
        records
    }

    /// Keeps this replica's view of the shared records current (list answers kept by
    /// ownership read it): each claim, release and offboarding any replica makes is
    /// published, and after every (re)subscription the whole view is read again, since
    /// changes made meanwhile were missed. Runs until the process ends.
    pub async fn follow(self: Arc<Self>) {
        let Some(redis) = self.shared.clone() else {
            return;
        };
        let (to, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let follower = redis.clone();
        let _subscription = AbortOnDrop(tokio::spawn(
            async move { follower.follow_records(to).await },
        ));
        while let Some(change) = changes.recv().await {
            self.changes.fetch_add(1, Ordering::AcqRel);
            match change {
                Followed::Subscribed => {
                    // Until it succeeds: changes queue meanwhile, applied after it.
                    let mut wait = Duration::from_millis(100);
                    while !self.reload(&redis).await {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
                Followed::Event(Event::Own(rows)) => {
                    for (field, owner) in rows {
                        self.owners.insert(field.into_boxed_str(), Arc::from(owner));
                    }
                }
                Followed::Event(Event::Disown(fields)) => {
                    for field in fields {
                        self.owners.remove(field.as_str());
                    }
                }
                Followed::Event(Event::Unprovision(root)) => {
                    self.provisioned.remove(root.as_str());
                }
            }
        }
    }

    /// Replaces the whole view with what the shared store holds now; false when it
    /// could not be read.
    async fn reload(&self, redis: &Redis) -> bool {
        let (owners, provisioned) = match (redis.all_owners().await, redis.all_provisioned().await)
        {
            (Ok(owners), Ok(provisioned)) => (owners, provisioned),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "the shared records could not be read again; retrying");
                return false;
            }
        };
        let fresh: std::collections::HashMap<Box<str>, String> = owners
            .into_iter()
            .map(|row| (key(&row.kind, &row.id), row.tenant))
            .collect();
        self.owners.retain(|field, _| fresh.contains_key(field));
        for (field, tenant) in fresh {
            if self.owners.get(&field).is_none_or(|o| **o != *tenant) {
                self.owners.insert(field, Arc::from(tenant));
            }
        }
        let marks: std::collections::HashSet<String> = provisioned.into_iter().collect();
        self.provisioned.retain(|root| marks.contains(&**root));
        for root in marks {
            self.provisioned.insert(root.into_boxed_str());
        }
        true
    }

    /// The shared store, when there is one.
    pub fn redis(&self) -> Option<&Arc<Redis>> {
        self.shared.as_ref()
    }

    /// The owners of these ids as the shared store holds them now (another replica
    /// may have learned or released them), and this view brought up to date unless a
    /// change arrived meanwhile; `None` without a shared store, whose records are this
    /// process's. With one that cannot be asked, an error: isolation is not judged on
    /// a view that may be stale.
    pub async fn owners_now(
        &self,
        ids: &[(String, String)],
    ) -> Result<Option<Vec<Option<String>>>, StoreError> {
        let Some(redis) = &self.shared else {
            return Ok(None);
        };
        let before = self.changes.load(Ordering::Acquire);
        let owners = redis.owners_of(ids).await?;
        if self.changes.load(Ordering::Acquire) != before {
            return Ok(Some(owners));
        }
        for ((kind, id), owner) in ids.iter().zip(&owners) {
            match owner {
                Some(owner) if self.owner(kind, id).as_deref() != Some(owner.as_str()) => {
                    self.owners.insert(key(kind, id), Arc::from(owner.as_str()));
                }
                Some(_) => {}
                None => {
                    self.owners.remove(&*key(kind, id));
                }
            }
        }
        Ok(Some(owners))
    }

    /// Empty records over `backend`, nothing read from it yet.
    fn over(backend: Box<dyn RecordsBackend>) -> Self {
        Self {
            backend,
            shared: None,
            changes: std::sync::atomic::AtomicU64::new(0),
            owners: DashMap::default(),
            provisioned: DashSet::default(),
            claiming: Mutex::new(()),
        }
    }

    /// The tenant owning `id` of `kind`, if any.
    pub fn owner(&self, kind: &str, id: &str) -> Option<Arc<str>> {
        self.owners.get(&*key(kind, id)).map(|o| o.clone())
    }

    pub fn owns(&self, tenant: &str, kind: &str, id: &str) -> bool {
        self.owner(kind, id).is_some_and(|o| &*o == tenant)
    }

    /// Ids held, for `tenantgate_owned_ids`.
    pub fn owned_ids(&self) -> usize {
        self.owners.len()
    }

    /// True when every id is already the tenant's: nothing to write (the common case
    /// of a list answer teaching ids the caller already owns). Never with a shared
    /// store, whose claim script is the only judge: this replica's view may be stale.
    pub fn all_owned_by(&self, tenant: &str, ids: &[(String, String)]) -> bool {
        self.shared.is_none() && ids.iter().all(|(kind, id)| self.owns(tenant, kind, id))
    }

    /// Teaches `tenant` these ids, durably, unless any is another tenant's (then
    /// nothing is written). Blocking: call it off the async workers.
    pub fn claim(&self, tenant: &str, ids: &[(String, String)]) -> Result<(), ClaimError> {
        let _one = lock(&self.claiming);
        let mut new = Vec::new();
        let mut taken = 0;
        for (kind, id) in ids {
            // A shared store decides in its claim script; this replica's view of
            // other tenants' ids may be stale, either way.
            match self.owner(kind, id).filter(|_| self.shared.is_none()) {
                Some(owner) if &*owner == tenant => {}
                Some(_) => taken += 1,
                None => new.push(Owned {
                    kind: kind.clone(),
                    id: id.clone(),
                    tenant: tenant.to_owned(),
                }),
            }
        }
        if taken > 0 {
            return Err(ClaimError::OwnedByAnother(taken));
        }
        new.sort();
        new.dedup();
        if new.is_empty() {
            return Ok(());
        }
        let before = self.changes.load(Ordering::Acquire);
        let taken = self.backend.own(&new)?;
        if taken > 0 {
            return Err(ClaimError::OwnedByAnother(taken as usize));
        }
        // The claim's own publication brings it here anyway; written now only if no
        // change (a release elsewhere) arrived meanwhile.
        if self.changes.load(Ordering::Acquire) != before {
            return Ok(());
        }
        let owner: Arc<str> = Arc::from(tenant);
        for row in new {
            self.owners.insert(key(&row.kind, &row.id), owner.clone());
        }
        Ok(())
    }

    /// Imports rows for a backend that already holds data: all or nothing, and never
    /// over another tenant's id. Rows already held as given are counted as imported.
    pub fn import(&self, rows: &[Owned]) -> Result<usize, ClaimError> {
        let _one = lock(&self.claiming);
        let mut seen: std::collections::HashMap<Box<str>, &str> = Default::default();
        for row in rows {
            let held = self.owner(&row.kind, &row.id);
            let given = seen.insert(key(&row.kind, &row.id), &row.tenant);
            let clash =
                held.is_some_and(|o| *o != *row.tenant) || given.is_some_and(|t| t != row.tenant);
            if clash {
                return Err(ClaimError::OwnedByAnother(1));
            }
        }
        let taken = self.backend.own(rows)?;
        if taken > 0 {
            return Err(ClaimError::OwnedByAnother(taken as usize));
        }
        for row in rows {
            self.owners
                .insert(key(&row.kind, &row.id), Arc::from(row.tenant.as_str()));
        }
        Ok(rows.len())
    }

    /// Drops the tenant's ownership of these ids (`forget = true`); ids it does not
    /// own are left alone. Blocking.
    pub fn release(&self, tenant: &str, ids: &[(String, String)]) -> Result<(), StoreError> {
        let _one = lock(&self.claiming);
        let rows: Vec<Owned> = ids
            .iter()
            .filter(|(kind, id)| self.owns(tenant, kind, id))
            .map(|(kind, id)| Owned {
                kind: kind.clone(),
                id: id.clone(),
                tenant: tenant.to_owned(),
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        self.backend.disown(&rows)?;
        for row in &rows {
            self.owners.remove(&*key(&row.kind, &row.id));
        }
        Ok(())
    }

    /// Erases everything a tenant owns (offboarding); how many ids. Blocking, and a
    /// scan of every id: offboarding is rare, lookups are not.
    pub fn erase_owner(&self, tenant: &str) -> Result<u64, StoreError> {
        let _one = lock(&self.claiming);
        let rows: Vec<Owned> = self
            .owners
            .iter()
            .filter(|entry| &**entry.value() == tenant)
            .filter_map(|entry| {
                let (kind, id) = entry.key().split_once(':')?;
                Some(Owned {
                    kind: kind.to_owned(),
                    id: id.to_owned(),
                    tenant: tenant.to_owned(),
                })
            })
            .collect();
        let erased = self.backend.erase_owner(tenant, &rows)?;
        for row in &rows {
            self.owners.remove(&*key(&row.kind, &row.id));
        }
        Ok(erased)
    }

    pub fn is_provisioned(&self, tenant: &str) -> bool {
        self.provisioned.contains(tenant)
    }

    /// Notes a mark another replica wrote to the shared store.
    pub fn remember_provisioned(&self, tenant: &str) {
        self.provisioned.insert(Box::from(tenant));
    }

    /// Marks a tenant provisioned, durably. Blocking.
    pub fn mark_provisioned(&self, tenant: &str, at: u64) -> Result<(), StoreError> {
        self.backend.mark_provisioned(tenant, at)?;
        self.provisioned.insert(Box::from(tenant));
        Ok(())
    }

    /// Drops a tenant's mark (offboarding); true when it had one. Blocking.
    pub fn unmark_provisioned(&self, tenant: &str) -> Result<bool, StoreError> {
        let had = self.backend.unmark_provisioned(tenant)?;
        Ok(self.provisioned.remove(tenant).is_some() || had)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, i)| (k.to_string(), i.to_string()))
            .collect()
    }

    #[test]
    fn the_first_owner_wins_and_a_refused_claim_writes_nothing() {
        let records = Records::in_memory();
        records.claim("alice", &ids(&[("c", "1")])).unwrap();
        let refused = records.claim("bob", &ids(&[("c", "2"), ("c", "1")]));
        assert!(matches!(refused, Err(ClaimError::OwnedByAnother(1))));
        assert_eq!(records.owner("c", "2"), None, "nothing of a refused claim");
        assert!(records.owns("alice", "c", "1"));
        // Kinds are apart: the same id of another kind is another object.
        records.claim("bob", &ids(&[("d", "1")])).unwrap();
        assert!(records.owns("bob", "d", "1"));
    }

    #[test]
    fn release_and_erase_touch_only_the_tenants_ids_and_survive_reopening() {
        let records = Records::in_memory();
        records
            .claim("alice", &ids(&[("c", "1"), ("c", "2")]))
            .unwrap();
        records.claim("bob", &ids(&[("c", "3")])).unwrap();
        records
            .release("alice", &ids(&[("c", "1"), ("c", "3")]))
            .unwrap();
        assert_eq!(records.owner("c", "1"), None);
        assert!(records.owns("bob", "c", "3"), "not alice's to release");
        assert_eq!(records.erase_owner("alice").unwrap(), 1);
        assert_eq!(records.owned_ids(), 1);
        let again = Records::open(Box::new(MemoryRecords {
            owners: Mutex::new(records.backend.owners().unwrap()),
            provisioned: Mutex::default(),
        }))
        .unwrap();
        assert!(again.owns("bob", "c", "3"));
        assert_eq!(again.owned_ids(), 1);
    }

    #[test]
    fn import_is_all_or_nothing() {
        let records = Records::in_memory();
        records.claim("alice", &ids(&[("c", "1")])).unwrap();
        let rows = |list: &[(&str, &str)]| -> Vec<Owned> {
            list.iter()
                .map(|(id, tenant)| Owned {
                    kind: "c".into(),
                    id: id.to_string(),
                    tenant: tenant.to_string(),
                })
                .collect()
        };
        assert!(records
            .import(&rows(&[("2", "bob"), ("1", "bob")]))
            .is_err());
        assert_eq!(records.owner("c", "2"), None);
        assert!(records
            .import(&rows(&[("2", "bob"), ("2", "carol")]))
            .is_err());
        assert_eq!(
            records
                .import(&rows(&[("2", "bob"), ("1", "alice")]))
                .unwrap(),
            2
        );
        assert!(records.owns("bob", "c", "2"));
    }
}
