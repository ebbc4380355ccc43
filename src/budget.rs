//! One budget for every body tenantgate buffers: request bodies a rewrite reads and
//! answers the response stage inspects. Each buffer holds its bytes from the budget
//! while it is read and gives them back when the body it became is dropped, so many
//! large bodies at once get a clear refusal instead of growing the process until it
//! is killed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct Budget {
    left: AtomicUsize,
}

impl Budget {
    pub fn new(bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            left: AtomicUsize::new(bytes),
        })
    }

    /// An empty claim on the budget, grown as a body is read.
    pub fn claim(self: &Arc<Self>) -> Held {
        Held {
            budget: self.clone(),
            bytes: 0,
        }
    }

    pub fn left(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }
}

/// Bytes taken from the budget; given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Held {
    /// Takes `n` more bytes; `false` (and nothing taken) when the budget has not got them.
    pub fn grow(&mut self, n: usize) -> bool {
        let taken = self
            .budget
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok();
        if taken {
            self.bytes += n;
        }
        taken
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the budget for buffered bodies is used up")]
pub struct OverBudget;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_grow_within_the_budget_and_give_back_on_drop() {
        let budget = Budget::new(100);
        let mut a = budget.claim();
        assert!(a.grow(60));
        let mut b = budget.claim();
        assert!(!b.grow(50), "only 40 left");
        assert!(b.grow(40));
        assert_eq!(budget.left(), 0);
        drop(a);
        assert_eq!(budget.left(), 60);
        drop(b);
        assert_eq!(budget.left(), 100);
    }
}
