//! GCRA (the generic cell rate algorithm): a bucket is one number, the theoretical
//! arrival time (TAT) of the next request, updated with a compare-and-swap. The rate
//! is not stored in the bucket, so a reload can change a tenant's plan without
//! touching (or resetting) its state.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::NANOS_PER_SEC;

/// `rate` tokens per `per`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Nanoseconds per token.
    interval: u64,
    burst: u64,
}

impl Rate {
    pub fn new(rate: u64, per: Duration, burst: u64) -> Result<Self, String> {
        if rate == 0 || burst == 0 {
            return Err("rate and burst must be at least 1".to_owned());
        }
        let per = u64::try_from(per.as_nanos()).map_err(|_| "per is too long".to_owned())?;
        let interval = per / rate;
        if interval == 0 {
            return Err("rate is more than one token per nanosecond".to_owned());
        }
        if interval.checked_mul(burst).is_none() {
            return Err("burst × (per / rate) overflows".to_owned());
        }
        Ok(Self { interval, burst })
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The time a full bucket takes to refill from empty.
    pub fn window(&self) -> u64 {
        self.interval * self.burst
    }
}

/// What a bucket looked like after a decision, for the rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub full_in: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed(Level),
    /// A slot was reserved this many nanoseconds from now (queue mode).
    Reserved {
        wait: u64,
        level: Level,
    },
    /// Nothing was taken; the cost fits in this many nanoseconds.
    Denied {
        retry_in: u64,
        level: Level,
    },
}

/// Per-tenant limiter state: the TAT and the counters of in-flight and queued requests.
#[derive(Debug, Default)]
pub struct Bucket {
    tat: AtomicU64,
    /// The token interval the TAT was last charged in; 0 for a fresh bucket.
    interval: AtomicU64,
    pub in_flight: AtomicU32,
    pub queued: AtomicU32,
}

impl Bucket {
    /// Takes `cost` tokens at `now`, or, when the wait for them is at most `max_wait`,
    /// reserves them for later.
    pub fn take(&self, rate: &Rate, cost: u64, now: u64, max_wait: Option<u64>) -> Decision {
        let window = rate.window();
        let charge = rate.interval.saturating_mul(cost);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            // A debt beyond this rate's window (plus its queue) was run up under a
            // slower limit before a reload: it never blocks longer than an empty
            // bucket of the new limit would.
            let owed = tat.min(
                now.saturating_add(window)
                    .saturating_add(max_wait.unwrap_or(0)),
            );
            let new_tat = owed.max(now).saturating_add(charge);
            let fits_at = new_tat.saturating_sub(window);
            let decision = if fits_at <= now {
                Decision::Allowed(level(rate, new_tat, now))
            } else if max_wait.is_some_and(|max| fits_at - now <= max) {
                Decision::Reserved {
                    wait: fits_at - now,
                    level: level(rate, new_tat, fits_at),
                }
            } else {
                return Decision::Denied {
                    retry_in: fits_at - now,
                    level: level(rate, owed, now),
                };
            };
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.interval.store(rate.interval, Ordering::Release);
                    return decision;
                }
                Err(current) => tat = current,
            }
        }
    }

    /// True when the TAT was charged under another rate (a reload changed the limit).
    pub fn needs_rescale(&self, rate: &Rate) -> bool {
        let charged = self.interval.load(Ordering::Acquire);
        charged != 0 && charged != rate.interval
    }

    /// Converts the outstanding debt into the new rate's tokens: a tenant that used
    /// n tokens still owes n (at most a full bucket, plus `allowance` for queued
    /// reservations). Needs exclusive access, so concurrent takes cannot interleave.
    pub fn rescale(&mut self, rate: &Rate, now: u64, allowance: u64) {
        let charged = *self.interval.get_mut();
        if charged == 0 || charged == rate.interval {
            return;
        }
        let tat = self.tat.get_mut();
        let debt = u128::from(tat.saturating_sub(now));
        let scaled = debt * u128::from(rate.interval) / u128::from(charged);
        let cap = rate.window().saturating_add(allowance);
        *tat = now.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX).min(cap));
        *self.interval.get_mut() = rate.interval;
    }

    /// True when the bucket holds nothing worth keeping: full again and idle.
    pub fn is_idle(&self, now: u64) -> bool {
        self.tat.load(Ordering::Acquire) <= now
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.queued.load(Ordering::Acquire) == 0
    }
}

fn level(rate: &Rate, tat: u64, now: u64) -> Level {
    let used = tat.saturating_sub(now);
    Level {
        remaining: rate.window().saturating_sub(used) / rate.interval,
        full_in: used,
    }
}

/// Whole seconds, rounded up: a client told to wait this long never comes back early.
pub fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(NANOS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = NANOS_PER_SEC;

    fn remaining(bucket: &Bucket, rate: &Rate, now: u64) -> u64 {
        level(rate, bucket.tat.load(Ordering::Acquire), now).remaining
    }

    #[test]
    fn rescaling_keeps_the_tokens_used() {
        let slow = Rate::new(1, Duration::from_secs(1), 3).unwrap();
        let fast = Rate::new(10, Duration::from_secs(1), 10).unwrap();
        // Raised: 3 of 3 used at 1/s become 3 of 10 at 10/s (7 left), not 3 s of debt.
        let mut bucket = Bucket::default();
        for _ in 0..3 {
            bucket.take(&slow, 1, SEC, None);
        }
        assert!(bucket.needs_rescale(&fast));
        bucket.rescale(&fast, SEC, 0);
        assert_eq!(remaining(&bucket, &fast, SEC), 7);
        // Lowered: 10 of 10 used at 10/s is more than 3 at 1/s: the bucket is empty.
        let mut bucket = Bucket::default();
        for _ in 0..10 {
            bucket.take(&fast, 1, SEC, None);
        }
        bucket.rescale(&slow, SEC, 0);
        assert_eq!(remaining(&bucket, &slow, SEC), 0);
        assert!(matches!(
            bucket.take(&slow, 1, SEC, None),
            Decision::Denied { retry_in, .. } if retry_in == SEC
        ));
    }

    #[test]
    fn a_burst_then_the_configured_pace() {
        let rate = Rate::new(10, Duration::from_secs(1), 3).unwrap();
        let bucket = Bucket::default();
        let t0 = 5 * SEC;
        for left in [2, 1, 0] {
            match bucket.take(&rate, 1, t0, None) {
                Decision::Allowed(l) => assert_eq!(l.remaining, left),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            bucket.take(&rate, 1, t0, None),
            Decision::Denied {
                retry_in: SEC / 10,
                level: Level {
                    remaining: 0,
                    full_in: 3 * SEC / 10
                }
            }
        );
        assert!(matches!(
            bucket.take(&rate, 1, t0 + SEC / 10, None),
            Decision::Allowed(_)
        ));
        assert!(bucket.is_idle(t0 + SEC));
    }

    #[test]
    fn queue_reserves_the_exact_slot_and_costs_above_burst_never_fit() {
        let rate = Rate::new(1, Duration::from_secs(1), 1).unwrap();
        let bucket = Bucket::default();
        assert!(matches!(
            bucket.take(&rate, 1, SEC, None),
            Decision::Allowed(_)
        ));
        assert!(matches!(
            bucket.take(&rate, 1, SEC, Some(2 * SEC)),
            Decision::Reserved { wait, .. } if wait == SEC
        ));
        assert!(matches!(
            bucket.take(&rate, 1, SEC, Some(2 * SEC)),
            Decision::Reserved { wait, .. } if wait == 2 * SEC
        ));
        assert!(matches!(
            bucket.take(&rate, 1, SEC, Some(2 * SEC)),
            Decision::Denied { retry_in, .. } if retry_in == 3 * SEC
        ));
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(SEC), 1);
        assert_eq!(ceil_secs(SEC + 1), 2);
    }
}
