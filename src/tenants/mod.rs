//! What this process keeps per tenant, in one table: whether the tenant is known (the
//! leak guard's), its units today (the store's) and its limiter bucket (stage 3's).
//! One entry a tenant, not one in each of three tables: each tenant costs one copy
//! of its id, one hash slot and one box (`scripts/tenants.py`, a million tenants:
//! 269 MiB for the process with three tables, 160 with this one).
//!
//! A known tenant is one the usage store has rows for (read at start) or one seen on
//! a request since (configured ones are in the config). The leak guard treats a bare
//! namespace root as a leak only for a known tenant, since an arbitrary `u_...` string
//! may be ordinary data.
//!
//! Each stage still owns its part: the store decides what a day holds (`D`), the
//! limiter what a bucket does; the table only keeps them together and drops an entry
//! once no part holds anything.

mod offboarding;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dashmap::mapref::one::{MappedRef, MappedRefMut, RefMut};
use dashmap::DashMap;

use crate::gcra::Bucket;
pub use offboarding::{Active, Offboarding, OffboardingGuard};

/// How many tenants are known at most; past it a new tenant is served as usual but
/// its bare root is no longer recognised by the guard.
pub const MAX_KNOWN: usize = 1_000_000;

/// What the store keeps of a tenant's day.
pub trait Day: Default {
    /// True when it holds nothing a fresh one would not.
    fn is_vacant(&self) -> bool;
}

#[derive(Debug, Default)]
pub struct Entry<D> {
    today: D,
    /// Fresh until the limiter first takes it; fresh again after a sweep.
    bucket: Bucket,
    /// The bucket is the limiter's (counted in `Table::buckets`), not a fresh one.
    held: AtomicBool,
    known: bool,
}

impl<D: Day> Entry<D> {
    /// A stage holds something in it: a day or a bucket.
    fn in_use(&self) -> bool {
        self.held.load(Ordering::Acquire) || !self.today.is_vacant()
    }

    fn is_vacant(&self) -> bool {
        !self.known && !self.in_use()
    }
}

/// A tenant's slot: most tenants the guard knows (the store's history, read at start)
/// have no day and no bucket in this process, and cost no box (`None`: known only).
#[derive(Debug)]
pub struct Slot<D>(Option<Box<Entry<D>>>);

impl<D: Day> Slot<D> {
    fn known_only() -> Self {
        Self(None)
    }

    fn full() -> Self {
        Self(Some(Box::default()))
    }

    fn entry(&self) -> Option<&Entry<D>> {
        self.0.as_deref()
    }

    /// The whole entry, made from a known-only slot when needed.
    fn entry_mut(&mut self) -> &mut Entry<D> {
        self.0.get_or_insert_with(|| {
            Box::new(Entry {
                known: true,
                ..Entry::default()
            })
        })
    }

    fn is_known(&self) -> bool {
        self.entry().is_none_or(|e| e.known)
    }

    fn is_vacant(&self) -> bool {
        self.entry().is_some_and(Entry::is_vacant)
    }

    /// Gives the box back once only the known mark is left in it.
    fn settle(&mut self) {
        if self.entry().is_some_and(|e| e.known && !e.in_use()) {
            self.0 = None;
        }
    }
}

/// Tenant ids are attacker-chosen, so the hash is SipHash with a key random per
/// process (std's `RandomState`), which is built to resist HashDoS.
#[derive(Debug)]
pub struct Table<D> {
    /// Each entry boxed: the table keeps spare room for up to as many entries again
    /// (it has just doubled at a million tenants), and a 24-byte slot wastes less of
    /// it than a 72-byte one.
    entries: DashMap<Box<str>, Slot<D>, std::hash::RandomState>,
    /// Known tenants and held buckets, kept apart: DashMap counts by visiting every
    /// shard, and the table holds more than either.
    known: AtomicUsize,
    buckets: AtomicUsize,
    bound: usize,
}

type Key = Box<str>;
type Mapped<'a, D, T> = MappedRef<'a, Key, Slot<D>, T>;
type MappedMut<'a, D, T> = MappedRefMut<'a, Key, Slot<D>, T>;

impl<D: Day> Default for Table<D> {
    fn default() -> Self {
        Self::with_bound(MAX_KNOWN)
    }
}

impl<D: Day> Table<D> {
    pub fn with_bound(bound: usize) -> Self {
        Self {
            entries: DashMap::default(),
            known: AtomicUsize::new(0),
            buckets: AtomicUsize::new(0),
            bound,
        }
    }

    /// The tenant's slot for writing, made with `new` when missing; the id is copied
    /// only then.
    fn slot_mut(&self, tenant: &str, new: impl FnOnce() -> Slot<D>) -> RefMut<'_, Key, Slot<D>> {
        match self.entries.get_mut(tenant) {
            Some(slot) => slot,
            None => self.entries.entry(Box::from(tenant)).or_insert_with(new),
        }
    }

    fn drop_if_vacant(&self, tenant: &str) {
        self.entries.remove_if(tenant, |_, slot| slot.is_vacant());
    }

    // The known tenants.

    pub fn note(&self, tenant: &str) {
        // Read first: the common case (already known) takes no write lock.
        if self.knows(tenant) || self.known.load(Ordering::Relaxed) >= self.bound {
            return;
        }
        let mut made = false;
        let mut slot = self.slot_mut(tenant, || {
            made = true;
            Slot::known_only()
        });
        let newly = match slot.0.as_deref_mut() {
            None => made,
            Some(entry) => !std::mem::replace(&mut entry.known, true),
        };
        if newly {
            self.known.fetch_add(1, Ordering::Relaxed);
        }
        slot.settle();
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
        self.entries.get(tenant).is_some_and(|slot| slot.is_known())
    }

    /// Every tenant seen since start.
    pub fn known(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|slot| slot.is_known())
            .map(|slot| slot.key().to_string())
            .collect()
    }

    /// Forgets that a tenant was seen (offboarding); true when it was known.
    pub fn forget_known(&self, tenant: &str) -> bool {
        let only_known = |_: &Key, slot: &Slot<D>| slot.0.is_none();
        let forgotten = self.entries.remove_if(tenant, only_known).is_some()
            || self.entries.get_mut(tenant).is_some_and(|mut slot| {
                slot.0
                    .as_deref_mut()
                    .is_some_and(|e| std::mem::take(&mut e.known))
            });
        if forgotten {
            self.known.fetch_sub(1, Ordering::Relaxed);
            self.drop_if_vacant(tenant);
        }
        forgotten
    }

    pub fn known_len(&self) -> usize {
        self.known.load(Ordering::Relaxed)
    }

    // Today's units, as the store keeps them.

    pub fn day(&self, tenant: &str) -> Option<Mapped<'_, D, D>> {
        let slot = self.entries.get(tenant)?;
        slot.try_map(|slot| slot.entry().map(|e| &e.today)).ok()
    }

    /// The tenant's day for writing, made when missing.
    pub fn day_mut(&self, tenant: &str) -> MappedMut<'_, D, D> {
        self.slot_mut(tenant, Slot::full)
            .map(|slot| &mut slot.entry_mut().today)
    }

    /// Visits every tenant that has a day (not those with only a mark or a bucket).
    pub fn each_day(&self, mut visit: impl FnMut(&str, &D)) {
        for slot in self.entries.iter() {
            if let Some(entry) = slot.entry().filter(|e| !e.today.is_vacant()) {
                visit(slot.key(), &entry.today);
            }
        }
    }

    /// Lets `age` clear the days it no longer needs, then drops what is left vacant.
    pub fn age_days(&self, mut age: impl FnMut(&mut D)) {
        self.entries.retain(|_, slot| {
            if let Some(entry) = slot.0.as_deref_mut() {
                age(&mut entry.today);
            }
            slot.settle();
            !slot.is_vacant()
        });
    }

    /// Clears the tenant's day (offboarding); true when it held anything.
    pub fn clear_day(&self, tenant: &str) -> bool {
        let cleared = self.entries.get_mut(tenant).is_some_and(|mut slot| {
            let Some(entry) = slot.0.as_deref_mut() else {
                return false;
            };
            let cleared = !std::mem::take(&mut entry.today).is_vacant();
            slot.settle();
            cleared
        });
        self.drop_if_vacant(tenant);
        cleared
    }

    // Limiter buckets.

    /// The tenant's bucket, while the limiter holds one for it.
    pub fn bucket(&self, tenant: &str) -> Option<Mapped<'_, D, Bucket>> {
        let slot = self.entries.get(tenant)?;
        slot.try_map(|slot| {
            let entry = slot.entry()?;
            entry.held.load(Ordering::Acquire).then_some(&entry.bucket)
        })
        .ok()
    }

    /// Runs `f` on the tenant's bucket, taken by the limiter (made fresh when missing).
    pub fn with_bucket<T>(&self, tenant: &str, f: impl FnOnce(&Bucket) -> T) -> T {
        self.with_fitted_bucket(tenant, |_| true, |_| {}, f)
    }

    /// The same, first letting `fit` change a bucket that `fits` refuses (a rescale
    /// after a reload). One lookup under the shard's read lock when it fits and
    /// exists; otherwise the write lock, held from the fit to the end of `f`, so no
    /// other take sees the bucket half-changed.
    pub fn with_fitted_bucket<T>(
        &self,
        tenant: &str,
        fits: impl Fn(&Bucket) -> bool,
        fit: impl FnOnce(&mut Bucket),
        f: impl FnOnce(&Bucket) -> T,
    ) -> T {
        if let Some(slot) = self.entries.get(tenant) {
            if let Some(entry) = slot.entry().filter(|e| fits(&e.bucket)) {
                self.hold(entry);
                return f(&entry.bucket);
            }
        }
        let mut slot = self.slot_mut(tenant, Slot::full);
        let entry = slot.entry_mut();
        self.hold(entry);
        if !fits(&entry.bucket) {
            fit(&mut entry.bucket);
        }
        f(&entry.bucket)
    }

    fn hold(&self, entry: &Entry<D>) {
        // Loaded first: a held bucket (every request but a tenant's first) takes no
        // locked instruction here.
        if !entry.held.load(Ordering::Acquire) && !entry.held.swap(true, Ordering::AcqRel) {
            self.buckets.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Buckets the limiter holds.
    pub fn buckets(&self) -> usize {
        self.buckets.load(Ordering::Relaxed)
    }

    /// Gives back every held bucket `idle` says holds nothing worth keeping (it then
    /// equals a fresh one), and drops the entries left vacant.
    pub fn sweep_buckets(&self, idle: impl Fn(&Bucket) -> bool) {
        self.entries.retain(|_, slot| {
            if let Some(entry) = slot.0.as_deref_mut() {
                if *entry.held.get_mut() && idle(&entry.bucket) {
                    self.release(entry);
                }
            }
            slot.settle();
            !slot.is_vacant()
        });
    }

    /// Gives back the tenant's bucket unless `keep` (which may change it) says it is
    /// still in use; true when there was one.
    pub fn drop_bucket(&self, tenant: &str, keep: impl FnOnce(&mut Bucket) -> bool) -> bool {
        let had = self.entries.get_mut(tenant).is_some_and(|mut slot| {
            let Some(entry) = slot.0.as_deref_mut() else {
                return false;
            };
            if !*entry.held.get_mut() {
                return false;
            }
            if !keep(&mut entry.bucket) {
                self.release(entry);
            }
            slot.settle();
            true
        });
        self.drop_if_vacant(tenant);
        had
    }

    fn release(&self, entry: &mut Entry<D>) {
        entry.bucket = Bucket::default();
        *entry.held.get_mut() = false;
        self.buckets.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
