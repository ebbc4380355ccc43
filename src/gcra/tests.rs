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
