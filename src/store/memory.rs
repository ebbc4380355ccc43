//! Usage counters in memory, one per caller, reset when the UTC day changes.

use dashmap::DashMap;
use std::sync::Mutex;

use super::Usage;
use crate::route::Caller;

#[derive(Debug, Default, Clone, Copy)]
struct Day {
    day: u64,
    units: u64,
}

impl Day {
    fn on(self, day: u64) -> u64 {
        if self.day == day {
            self.units
        } else {
            0
        }
    }

    fn add(&mut self, day: u64, units: u64) {
        if self.day != day {
            *self = Day { day, units: 0 };
        }
        self.units = self.units.saturating_add(units);
    }
}

#[derive(Debug, Default)]
pub struct MemoryUsage {
    tenants: DashMap<Box<str>, Day>,
    /// Calls not made as a tenant (unscoped, privileged).
    project_calls: Mutex<Day>,
    /// Everyone's units together, for `[limits.project] daily_units`.
    total: Mutex<Day>,
}

impl MemoryUsage {
    /// Tenants with a counter, for memory accounting.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

fn read(day: &Mutex<Day>) -> Day {
    *day.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Usage for MemoryUsage {
    fn used(&self, who: &Caller, day: u64) -> u64 {
        match who {
            Caller::Tenant(t) => self.tenants.get(t.as_str()).map_or(0, |d| d.on(day)),
            Caller::Project => read(&self.project_calls).on(day),
        }
    }

    fn project_used(&self, day: u64) -> u64 {
        read(&self.total).on(day)
    }

    fn forget_before(&self, day: u64) {
        self.tenants.retain(|_, d| d.day >= day);
    }

    fn add(&self, who: &Caller, day: u64, units: u64) {
        match who {
            Caller::Tenant(t) => match self.tenants.get_mut(t.as_str()) {
                Some(mut d) => d.add(day, units),
                None => self
                    .tenants
                    .entry(Box::from(t.as_str()))
                    .or_default()
                    .add(day, units),
            },
            Caller::Project => self
                .project_calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .add(day, units),
        }
        self.total
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(day, units);
    }
}
