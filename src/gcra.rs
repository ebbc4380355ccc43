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

    /// Nanoseconds per token.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// This rate split between `replicas` that each limit alone: each gets its share
    /// of the tokens and of the burst (at least one).
    pub fn shared_by(&self, replicas: u32) -> Self {
        let n = u64::from(replicas.max(1));
        Self {
            interval: self.interval.saturating_mul(n),
            burst: (self.burst / n).max(1),
        }
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

/// Per-tenant limiter state: the TAT, the counters of in-flight and queued requests,
/// and the quota units that admitted requests hold until they are metered.
#[derive(Debug, Default)]
pub struct Bucket {
    tat: AtomicU64,
    /// The token interval the TAT was last charged in; 0 for a fresh bucket.
    interval: AtomicU64,
    pub in_flight: AtomicU32,
    pub queued: AtomicU32,
    pub reserved: AtomicU64,
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

    /// True when no request holds an in-flight slot, a queue place or quota units in it.
    pub fn is_unused(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self.queued.load(Ordering::Acquire) == 0
            && self.reserved.load(Ordering::Acquire) == 0
    }

    /// Back to a fresh bucket's tokens; the in-flight and queue counts stay, since the
    /// requests they count still hold them.
    pub fn refill(&self) {
        self.tat.store(0, Ordering::Release);
        self.interval.store(0, Ordering::Release);
    }

    /// True when the bucket holds nothing worth keeping: full again and unused.
    pub fn is_idle(&self, now: u64) -> bool {
        self.tat.load(Ordering::Acquire) <= now && self.is_unused()
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
mod tests;
