//! A circuit breaker: after [`TRIPS_AFTER`] failures in a row the circuit opens and
//! calls fail at once for [`OPEN_FOR`]; then one call at a time probes, and the first
//! success closes it. While Redis is away, a request pays nothing to learn it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TRIPS_AFTER: u32 = 3;
const OPEN_FOR: Duration = Duration::from_millis(500);
/// How long one probe holds the half-open circuit. A probe whose caller went away
/// (a flush that stopped at its first error) frees it when this runs out.
const PROBE_FOR: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Breaker {
    epoch: Instant,
    failures: AtomicU32,
    /// Nanoseconds since `epoch` until which calls are refused; 0 while closed.
    open_until: AtomicU64,
    /// Until when the current probe holds the half-open circuit.
    probe_until: AtomicU64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probe_until: AtomicU64::new(0),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Breaker {
    fn now(&self) -> u64 {
        nanos(self.epoch.elapsed()).max(1)
    }

    pub fn is_closed(&self) -> bool {
        self.open_until.load(Ordering::Acquire) == 0
    }

    /// True when a call may go to Redis: the circuit is closed, or this call is the
    /// one probe of a circuit whose open time is over.
    pub fn allows(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now();
        let probe = self.probe_until.load(Ordering::Acquire);
        now >= until
            && now >= probe
            && self
                .probe_until
                .compare_exchange(
                    probe,
                    now + nanos(PROBE_FOR),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// True when this success closed an open circuit.
    pub fn succeeded(&self) -> bool {
        self.failures.store(0, Ordering::Release);
        self.probe_until.store(0, Ordering::Release);
        self.open_until.swap(0, Ordering::AcqRel) != 0
    }

    /// True when this failure opened the circuit. A failure while open (a probe's)
    /// keeps it open for another [`OPEN_FOR`].
    pub fn failed(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let reopen = self.now() + nanos(OPEN_FOR);
        if !self.is_closed() {
            self.open_until.store(reopen, Ordering::Release);
            self.probe_until.store(0, Ordering::Release);
            return false;
        }
        failures >= TRIPS_AFTER
            && self
                .open_until
                .compare_exchange(0, reopen, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_a_success_closes_it() {
        let breaker = Breaker::default();
        assert!(!breaker.failed());
        assert!(!breaker.failed());
        assert!(breaker.failed(), "the third failure in a row opens it");
        assert!(!breaker.allows(), "open: calls fail at once");
        // As if OPEN_FOR had passed.
        breaker.open_until.store(1, Ordering::Release);
        assert!(breaker.allows(), "one probe");
        assert!(!breaker.allows(), "only one probe at a time");
        // A probe whose caller went away frees the circuit after PROBE_FOR.
        breaker.probe_until.store(1, Ordering::Release);
        assert!(breaker.allows(), "a lost probe is replaced");
        assert!(!breaker.failed(), "a failed probe keeps it open");
        assert!(!breaker.allows());
        breaker.open_until.store(1, Ordering::Release);
        assert!(breaker.allows());
        assert!(breaker.succeeded());
        assert!(breaker.is_closed() && breaker.allows());
        // A success resets the count.
        assert!(!breaker.failed());
    }
}
