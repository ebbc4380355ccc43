//! State that outlives a config: usage per tenant and UTC day (SPEC 8). The limits
//! stage reads today's counts for quotas and degradation; the meter stage adds to
//! them. Counts are aggregated in memory and flushed to a [`Backend`] every `flush`
//! (and on graceful shutdown), so a crash loses at most one interval.

pub mod embedded;
pub mod memory;
pub mod records;
pub mod redis;
pub mod settings;
mod spool;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::identity::Caller;

/// One row of usage: a tenant's (or the project's) day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub events: u64,
    pub units: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Unix seconds of the last event.
    pub last_at: u64,
}

impl Counters {
    pub fn merge(&mut self, other: &Counters) {
        self.events = self.events.saturating_add(other.events);
        self.units = self.units.saturating_add(other.units);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.last_at = self.last_at.max(other.last_at);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("usage store: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn from(error: impl std::fmt::Display) -> Self {
        Self(error.to_string())
    }
}

/// Rows flushed at once: per (day, tenant), and the project's per day.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Unique in this process: a shared store adds each batch once, however often a
    /// lost reply makes it replayed.
    pub id: u64,
    /// The shared store's field of the process that numbered the batch, when that was
    /// an earlier one (a batch spooled at a stop and replayed after the next start).
    pub origin: Option<String>,
    pub tenants: HashMap<(u64, Box<str>), Counters>,
    pub project: HashMap<u64, Counters>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.tenants.is_empty() && self.project.is_empty()
    }

    fn rows(&self) -> usize {
        self.tenants.len() + self.project.len()
    }
}

/// Units recorded here and not yet known to be written, for the shared quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unwritten {
    /// Waiting for the next flush.
    pub pending: u64,
    /// In the batch being written (or waiting for its replay): its id and the units.
    pub landing: Option<(u64, u64)>,
}

impl Unwritten {
    pub fn total(&self) -> u64 {
        self.pending
            .saturating_add(self.landing.map_or(0, |(_, units)| units))
    }
}

/// Where flushed usage lives: [`memory::MemoryBackend`] or [`embedded::Embedded`].
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Adds every row of `batch` to what is stored, in one transaction.
    fn write(&self, batch: &Batch) -> Result<(), StoreError>;
    /// Every tenant's row of one day.
    fn day(&self, day: u64) -> Result<Vec<(String, Counters)>, StoreError>;
    fn project_day(&self, day: u64) -> Result<Counters, StoreError>;
    /// One tenant's rows for days in `from..=to`.
    fn user(&self, id: &str, from: u64, to: u64) -> Result<Vec<(u64, Counters)>, StoreError>;
    /// Every tenant's total over days in `from..=to`.
    fn totals(&self, from: u64, to: u64) -> Result<Vec<(String, Counters)>, StoreError>;
    /// Erases a tenant's rows; how many there were.
    fn erase(&self, id: &str) -> Result<u64, StoreError>;
    /// The tenants with a row on `day`, without their counters.
    fn tenants_on(&self, day: u64) -> Result<Vec<String>, StoreError> {
        Ok(self
            .day(day)?
            .into_iter()
            .map(|(tenant, _)| tenant)
            .collect())
    }
}

/// What a day's count in memory keeps: the project's every counter, a tenant's only
/// its units (the quotas' input), which at a million tenants saves 32 bytes of entry
/// per tenant, twice over in the table's spare room (scripts/tenants.py).
pub trait Tally: Default + Copy {
    fn merge(&mut self, delta: &Counters);
    fn units(&self) -> u64;
}

impl Tally for Counters {
    fn merge(&mut self, delta: &Counters) {
        Counters::merge(self, delta);
    }

    fn units(&self) -> u64 {
        self.units
    }
}

/// A tenant's units today.
#[derive(Debug, Default, Clone, Copy)]
pub struct Units(u64);

impl Tally for Units {
    fn merge(&mut self, delta: &Counters) {
        self.0 = self.0.saturating_add(delta.units);
    }

    fn units(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Dated<C> {
    day: u64,
    counters: C,
    /// The day's units as the shared store last told them (every replica's flushed
    /// usage); 0 when it was never asked.
    shared: u64,
}

impl<C: Tally> Dated<C> {
    fn used(&self, day: u64) -> u64 {
        if self.day == day {
            self.counters.units().max(self.shared)
        } else {
            0
        }
    }

    /// Adds an event to the day held. An event of an earlier day (one that read the
    /// clock just before midnight and got here after one of the new day) is stored
    /// with its own day but never replaces today's counts.
    fn add(&mut self, day: u64, delta: &Counters) {
        if day < self.day {
            return;
        }
        self.turn(day);
        self.counters.merge(delta);
    }

    fn turn(&mut self, day: u64) {
        if self.day != day {
            *self = Dated {
                day,
                ..Dated::default()
            };
        }
    }

    fn saw_shared(&mut self, day: u64, units: u64) {
        if day >= self.day {
            self.turn(day);
            self.shared = units;
        }
    }

    /// The best this replica knows of the day's units while the shared store is
    /// away: its own count, or what the store last said plus what is unwritten here.
    fn known(&self, day: u64, unwritten: u64) -> u64 {
        if self.day != day {
            return 0;
        }
        self.counters
            .units()
            .max(self.shared.saturating_add(unwritten))
    }
}

/// A tenant's day, as the per-tenant table keeps it beside its other state.
pub type TenantDay = Dated<Units>;

/// Every tenant's state in one table: known, today's units, limiter bucket.
pub type Tenants = crate::tenants::Table<TenantDay>;

// A tenant's entry is one jemalloc size class: a field more would cost a million
// tenants 16 MiB (scripts/tenants.py).
const _: () = assert!(std::mem::size_of::<crate::tenants::Entry<TenantDay>>() <= 64);

impl crate::tenants::Day for TenantDay {
    fn is_vacant(&self) -> bool {
        self.day == 0 && self.counters.0 == 0 && self.shared == 0
    }
}

impl Dated<Counters> {
    fn on(&self, day: u64) -> Counters {
        if self.day == day {
            self.counters
        } else {
            Counters::default()
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Usage as the proxy sees it: today's counts in memory for the quotas, unflushed
/// deltas waiting for the backend, and queries that read the backend after a flush.
#[derive(Debug)]
pub struct Usage {
    backend: Box<dyn Backend>,
    /// Usage is made first, so it makes the table; the app hands it on to the limiter
    /// and the leak guard.
    today: Arc<Tenants>,
    project_today: Mutex<Dated<Counters>>,
    pending: Mutex<Batch>,
    /// The batch being written, or whose write failed: replayed, as it is and under
    /// its id, before any newer rows, so a write that did land is not added twice.
    /// Set under the `pending` lock, so a reader of both sees every row once.
    writing: Mutex<Option<Arc<Batch>>>,
    /// A spooled batch an earlier process numbered but never sent, written after
    /// `writing` and before anything newer.
    queued: Mutex<Option<Arc<Batch>>>,
    batches: std::sync::atomic::AtomicU64,
    /// A file of usage spooled at a stop, removed once its rows are written.
    spooled: Mutex<Option<std::path::PathBuf>>,
    /// Serializes flushes so rows are written in order.
    flushing: Mutex<()>,
    /// Woken on every event, for `flush = "0s"`.
    pub recorded: tokio::sync::Notify,
}

impl Usage {
    /// Opens usage over `backend`, reading today's counts back from it.
    pub fn open(backend: Box<dyn Backend>, today: u64) -> Result<Self, StoreError> {
        let usage = Self::over(backend);
        *lock(&usage.project_today) = Dated {
            day: today,
            counters: usage.backend.project_day(today)?,
            ..Dated::default()
        };
        for (tenant, counters) in usage.backend.day(today)? {
            *usage.today.day_mut(&tenant) = Dated {
                day: today,
                counters: Units(counters.units),
                ..Dated::default()
            };
        }
        Ok(usage)
    }

    /// In memory only: for tests and the playground.
    pub fn in_memory() -> Self {
        Self::over(Box::new(memory::MemoryBackend::default()))
    }

    /// Over `backend`, nothing read from it yet.
    pub fn over(backend: Box<dyn Backend>) -> Self {
        Self {
            today: Arc::default(),
            project_today: Mutex::default(),
            pending: Mutex::default(),
            writing: Mutex::default(),
            queued: Mutex::default(),
            spooled: Mutex::default(),
            batches: std::sync::atomic::AtomicU64::new(1),
            flushing: Mutex::default(),
            recorded: tokio::sync::Notify::new(),
            backend,
        }
    }

    /// Units the caller used today; a call without a tenant reads the project's.
    /// With a shared store, at least what it last said of every replica's usage.
    pub fn used(&self, who: &Caller, day: u64) -> u64 {
        match who {
            Caller::Tenant(t) => self.today.day(t.as_str()).map_or(0, |d| d.used(day)),
            Caller::Project => self.project_used(day),
        }
    }

    /// The per-tenant table this usage keeps its days in.
    pub fn table(&self) -> &Arc<Tenants> {
        &self.today
    }

    /// Everyone's units today.
    pub fn project_used(&self, day: u64) -> u64 {
        lock(&self.project_today).used(day)
    }

    pub fn project_today(&self, day: u64) -> Counters {
        lock(&self.project_today).on(day)
    }

    /// The project's totals of `day` as stored, after writing what is pending: with a
    /// shared store, every replica's. Blocking.
    pub fn project_stored(&self, day: u64) -> Result<Counters, StoreError> {
        self.flush()?;
        self.backend.project_day(day)
    }

    /// Records one metered event. Calls that name no tenant count only in the
    /// project's totals.
    pub fn add(&self, who: &Caller, day: u64, delta: Counters) {
        if let Caller::Tenant(t) = who {
            self.today.day_mut(t.as_str()).add(day, &delta);
        }
        lock(&self.project_today).add(day, &delta);
        let mut pending = lock(&self.pending);
        if let Caller::Tenant(t) = who {
            pending
                .tenants
                .entry((day, Box::from(t.as_str())))
                .or_default()
                .merge(&delta);
        }
        pending.project.entry(day).or_default().merge(&delta);
        drop(pending);
        self.recorded.notify_one();
    }

    /// Rows waiting to be written (tenant days and project days): the next flush's,
    /// and those of a write in progress or waiting for its replay.
    pub fn pending_rows(&self) -> usize {
        let pending = lock(&self.pending);
        let writing = lock(&self.writing);
        // A row in both (a tenant's day, written again since the failed write) is one.
        let also_writing = writing.as_ref().map_or(0, |batch| {
            let tenants = batch.tenants.keys();
            let project = batch.project.keys();
            tenants
                .filter(|k| !pending.tenants.contains_key(*k))
                .count()
                + project
                    .filter(|d| !pending.project.contains_key(*d))
                    .count()
        });
        pending.rows() + also_writing + lock(&self.queued).as_ref().map_or(0, |b| b.rows())
    }

    /// Writes what is pending. A batch whose write fails is kept whole and replayed
    /// under its id first, so a store that recovers loses nothing and, when the failed
    /// write did land, counts nothing twice.
    pub fn flush(&self) -> Result<(), StoreError> {
        let _in_order = lock(&self.flushing);
        let replay = lock(&self.writing).clone();
        if let Some(batch) = replay {
            self.backend.write(&batch)?;
            *lock(&self.writing) = None;
        }
        let queued = lock(&self.queued).take();
        if let Some(batch) = queued {
            *lock(&self.writing) = Some(batch.clone());
            self.backend.write(&batch)?;
            *lock(&self.writing) = None;
        }
        let batch = {
            let mut pending = lock(&self.pending);
            if pending.is_empty() {
                drop(pending);
                self.spool_written();
                return Ok(());
            }
            let mut batch = std::mem::take(&mut *pending);
            batch.id = self
                .batches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let batch = Arc::new(batch);
            *lock(&self.writing) = Some(batch.clone());
            batch
        };
        self.backend.write(&batch)?;
        *lock(&self.writing) = None;
        self.spool_written();
        Ok(())
    }

    /// The caller's units of `day` this replica recorded and has not yet seen written:
    /// those pending, and those of the batch being written (with its id, so a shared
    /// store can tell whether that write has landed).
    pub fn unwritten(&self, who: &Caller, day: u64) -> Unwritten {
        let pending = lock(&self.pending);
        let writing = lock(&self.writing);
        let units = |batch: &Batch| match who {
            Caller::Tenant(t) => batch
                .tenants
                .get(&(day, Box::from(t.as_str())))
                .map_or(0, |c| c.units),
            Caller::Project => batch.project.get(&day).map_or(0, |c| c.units),
        };
        // A batch an earlier process numbered (replayed from its spool) is told apart
        // by that process's field, which the limit script does not read: its units
        // count as pending until it is written (early, never late).
        let (own, spooled) = match writing.as_ref() {
            Some(batch) if batch.origin.is_some() => (None, Some(batch)),
            other => (other, None),
        };
        let queued = lock(&self.queued);
        let earlier = spooled.map_or(0, |b| units(b)) + queued.as_ref().map_or(0, |b| units(b));
        Unwritten {
            pending: units(&pending).saturating_add(earlier),
            landing: own
                .map(|batch| (batch.id, units(batch)))
                .filter(|(_, units)| *units > 0),
        }
    }

    /// Remembers the caller's units today as the shared store told them.
    pub fn saw_shared(&self, who: &Caller, day: u64, units: u64) {
        match who {
            Caller::Tenant(t) => self.today.day_mut(t.as_str()).saw_shared(day, units),
            Caller::Project => lock(&self.project_today).saw_shared(day, units),
        }
    }

    /// The caller's units today as best known without the shared store: what it last
    /// said plus what this replica has not written since, or this replica's own count.
    pub fn known(&self, who: &Caller, day: u64) -> u64 {
        let unwritten = self.unwritten(who, day).total();
        match who {
            Caller::Tenant(t) => self
                .today
                .day(t.as_str())
                .map_or(0, |d| d.known(day, unwritten)),
            Caller::Project => lock(&self.project_today).known(day, unwritten),
        }
    }

    /// Tenants with usage on `day`.
    pub fn active(&self, day: u64) -> usize {
        let mut active = 0;
        self.today
            .each_day(|_, d| active += usize::from(d.day == day));
        active
    }

    /// Every tenant's units on `day`, for per-tenant metrics.
    pub fn units_on(&self, day: u64) -> Vec<(String, u64)> {
        let mut units = Vec::new();
        self.today.each_day(|tenant, d| {
            if d.day == day {
                units.push((tenant.to_owned(), d.counters.units()));
            }
        });
        units
    }

    /// Drops today's counters of tenants last seen before `day` (they are stored).
    pub fn forget_before(&self, day: u64) {
        self.today.age_days(|d| {
            if d.day < day {
                *d = Dated::default();
            }
        });
    }

    /// Top `limit` tenants by units over days `from..=to`, then by id.
    pub fn by_user(
        &self,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(String, Counters)>, StoreError> {
        self.flush()?;
        let mut rows = self.backend.totals(from, to)?;
        rows.sort_by(|a, b| b.1.units.cmp(&a.1.units).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(limit);
        Ok(rows)
    }

    pub fn user(&self, id: &str, from: u64, to: u64) -> Result<Vec<(u64, Counters)>, StoreError> {
        self.flush()?;
        self.backend.user(id, from, to)
    }

    /// The tenants the store has a row of `day` for (every replica's, with a shared
    /// store), without writing what is pending. Blocking.
    pub fn tenants_on(&self, day: u64) -> Result<Vec<String>, StoreError> {
        self.backend.tenants_on(day)
    }

    /// Every tenant's row of `day`, by id; pending rows are written first only when
    /// `flush` (an export flushes once, then reads day by day).
    pub fn day(&self, day: u64, flush: bool) -> Result<Vec<(String, Counters)>, StoreError> {
        if flush {
            self.flush()?;
        }
        let mut rows = self.backend.day(day)?;
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }

    /// Every tenant with its totals over days `from..=to`.
    pub fn tenants(&self, from: u64, to: u64) -> Result<Vec<(String, Counters)>, StoreError> {
        self.flush()?;
        self.backend.totals(from, to)
    }

    /// Erases a tenant's usage, stored and in memory; how many rows there were.
    pub fn erase(&self, id: &str) -> Result<u64, StoreError> {
        self.flush()?;
        let in_memory = u64::from(self.today.clear_day(id));
        let stored = self.backend.erase(id)?;
        Ok(stored.max(in_memory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::TenantId;

    fn event(units: u64) -> Counters {
        Counters {
            events: 1,
            units,
            ..Counters::default()
        }
    }

    #[test]
    fn a_late_event_of_yesterday_never_resets_today() {
        let usage = Usage::in_memory();
        let alice = Caller::Tenant(TenantId::parse("alice", None).unwrap());
        usage.add(&alice, 11, event(3));
        usage.add(&alice, 10, event(5));
        assert_eq!(usage.used(&alice, 11), 3);
        assert_eq!(usage.project_used(11), 3);
        // Yesterday's event is still stored, on its own day.
        let rows = usage.user("alice", 10, 11).unwrap();
        assert_eq!(rows, vec![(10, event(5)), (11, event(3))]);
        assert_eq!(usage.backend.project_day(10).unwrap().units, 5);
    }
}
