//! State that outlives a config: usage per caller and UTC day. The limits stage reads
//! it for quotas and degradation, the meter stage writes it. In memory for now; the
//! metering issue persists it behind the same trait.

pub mod memory;

use crate::route::Caller;

pub trait Usage: Send + Sync + std::fmt::Debug {
    /// Units the caller used on this UTC day (the project: everyone's together).
    fn used(&self, who: &Caller, day: u64) -> u64;
    fn project_used(&self, day: u64) -> u64;
    /// Records a metered response: counts for the caller and for the project total.
    fn add(&self, who: &Caller, day: u64, units: u64);
    /// Drops counters of days before `day` that no quota reads any more.
    fn forget_before(&self, day: u64);
}
