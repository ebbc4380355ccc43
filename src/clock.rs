//! Time for the limiter and the quotas, injectable so tests can step through windows
//! and UTC midnights without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const NANOS_PER_SEC: u64 = 1_000_000_000;
pub const SECS_PER_DAY: u64 = 86_400;

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Monotonic nanoseconds since an arbitrary start: bucket arithmetic never jumps
    /// with the wall clock.
    fn mono(&self) -> u64;
    /// Wall-clock nanoseconds since the Unix epoch: UTC days and `X-RateLimit-Reset`.
    fn unix(&self) -> u64;

    /// The UTC day number (days since 1970-01-01).
    fn utc_day(&self) -> u64 {
        self.unix() / NANOS_PER_SEC / SECS_PER_DAY
    }

    /// Whole seconds until the next UTC midnight, at least 1.
    fn secs_to_midnight(&self) -> u64 {
        let day_nanos = SECS_PER_DAY * NANOS_PER_SEC;
        let left = day_nanos - self.unix() % day_nanos;
        left.div_ceil(NANOS_PER_SEC).max(1)
    }
}

#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn mono(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to; both readings advance together.
#[derive(Debug)]
pub struct ManualClock {
    unix_start: u64,
    elapsed: AtomicU64,
}

impl ManualClock {
    /// Starts at this wall-clock time.
    pub fn at(unix: Duration) -> Self {
        Self {
            unix_start: u64::try_from(unix.as_nanos()).unwrap_or(u64::MAX),
            elapsed: AtomicU64::new(0),
        }
    }

    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn mono(&self) -> u64 {
        // Offset so that 0 never means "never charged" in a bucket.
        NANOS_PER_SEC + self.elapsed.load(Ordering::SeqCst)
    }

    fn unix(&self) -> u64 {
        self.unix_start + self.elapsed.load(Ordering::SeqCst)
    }
}
