use super::*;
use crate::gcra::Rate;

/// A day that is only a count.
#[derive(Debug, Default)]
struct Count(u64);

impl Day for Count {
    fn is_vacant(&self) -> bool {
        self.0 == 0
    }
}

fn per_second() -> Rate {
    Rate::new(1, std::time::Duration::from_secs(1), 1).unwrap()
}

#[test]
fn known_tenants_stay_within_their_bound() {
    let known = Table::<Count>::with_bound(2);
    known.seed(["alice", "bob", "carol"]);
    known.note("alice");
    assert_eq!(known.known_len(), 2);
    assert!(known.knows("alice") && known.knows("bob") && !known.knows("carol"));
    assert!(known.forget_known("bob"));
    known.note("carol");
    assert!(known.knows("carol") && known.known_len() == 2);
}

#[test]
fn an_entry_lives_while_any_stage_holds_part_of_it() {
    let table = Table::<Count>::default();
    table.note("alice");
    table.day_mut("alice").0 = 3;
    table.with_bucket("alice", |b| b.take(&per_second(), 1, 0, None));
    assert_eq!(table.buckets(), 1);

    assert!(table.forget_known("alice"));
    assert_eq!(table.day("alice").map(|d| d.0), Some(3), "the day stays");
    assert!(table.clear_day("alice"));
    assert!(table.bucket("alice").is_some(), "the bucket stays");
    assert!(table.drop_bucket("alice", |_| false));
    assert_eq!(table.buckets(), 0);
    assert_eq!(table.entries.len(), 0, "nothing holds it: gone");

    // Each part alone keeps the entry, and the others read as fresh.
    table.day_mut("bob").0 = 1;
    assert!(!table.knows("bob") && table.bucket("bob").is_none());
    table.age_days(|d| d.0 = 0);
    assert_eq!(table.entries.len(), 0, "an aged-out day leaves nothing");
}

#[test]
fn a_sweep_gives_back_idle_buckets_only() {
    let table = Table::<Count>::default();
    let rate = per_second();
    table.with_bucket("idle", |b| b.take(&rate, 1, 0, None));
    table.with_bucket("busy", |b| b.take(&rate, 1, 0, None));
    table.with_bucket("busy", |b| b.in_flight.fetch_add(1, Ordering::AcqRel));
    table.note("known");
    table.with_bucket("known", |b| b.take(&rate, 1, 0, None));
    assert_eq!(table.buckets(), 3);

    let now = 2_000_000_000;
    table.sweep_buckets(|b| b.is_idle(now));
    assert_eq!(table.buckets(), 1);
    assert!(table.bucket("busy").is_some());
    assert!(table.bucket("idle").is_none() && table.bucket("known").is_none());
    assert!(table.knows("known"), "a known tenant outlives its bucket");
    assert_eq!(table.entries.len(), 2);
}

#[test]
fn a_bucket_in_use_is_kept_when_dropped() {
    let table = Table::<Count>::default();
    table.with_bucket("alice", |_| ());
    assert!(table.drop_bucket("alice", |_| true));
    assert_eq!(table.buckets(), 1);
    assert!(table.bucket("alice").is_some());
    assert!(!table.drop_bucket("nobody", |_| false));
}

#[test]
fn a_tenant_only_known_costs_no_box_and_gets_back_to_that() {
    let table = Table::<Count>::default();
    let boxed = |t: &str| table.entries.get(t).is_some_and(|s| s.0.is_some());
    table.note("alice");
    assert!(!boxed("alice"));
    table.day_mut("alice").0 = 2;
    table.with_bucket("alice", |_| ());
    assert!(boxed("alice") && table.knows("alice"));
    table.sweep_buckets(|_| true);
    assert!(boxed("alice"), "the day still needs it");
    table.age_days(|d| d.0 = 0);
    assert!(!boxed("alice") && table.knows("alice"));
    assert!(table.day("alice").is_none() && table.bucket("alice").is_none());
    // A tenant first seen with state, then noted, is known in its box.
    table.day_mut("bob").0 = 1;
    table.note("bob");
    assert!(table.knows("bob") && boxed("bob") && table.known_len() == 2);
    assert!(table.forget_known("bob"));
    assert!(!table.knows("bob") && table.day("bob").is_some());
}

#[test]
fn ageing_keeps_the_known_and_the_held() {
    let table = Table::<Count>::default();
    table.note("k");
    table.with_bucket("b", |_| ());
    table.day_mut("d").0 = 1;
    table.age_days(|d| d.0 = 0);
    assert!(table.knows("k") && table.bucket("b").is_some() && table.day("d").is_none());
    assert_eq!(table.entries.len(), 2);
}

#[test]
fn a_dropped_bucket_is_a_fresh_one() {
    let table = Table::<Count>::default();
    let rate = per_second();
    let now = 1_000_000_000;
    let take = || table.with_bucket("a", |b| b.take(&rate, 1, now, None));
    assert!(matches!(take(), crate::gcra::Decision::Allowed(_)));
    assert!(matches!(take(), crate::gcra::Decision::Denied { .. }));
    table.note("a");
    assert!(table.drop_bucket("a", |b| !b.is_unused()));
    assert!(matches!(take(), crate::gcra::Decision::Allowed(_)));
}

#[test]
fn the_counts_stay_exact_under_concurrent_use() {
    let table = std::sync::Arc::new(Table::<Count>::with_bound(usize::MAX));
    let rate = per_second();
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let table = table.clone();
            std::thread::spawn(move || {
                for round in 0..2000u64 {
                    let t = format!("t{}", round % 97);
                    match (i + round) % 7 {
                        0 => drop(table.with_bucket(&t, |b| b.take(&rate, 1, round, None))),
                        1 => table.with_fitted_bucket(&t, |_| false, |b| b.refill(), |_| ()),
                        2 => drop(table.drop_bucket(&t, |_| false)),
                        3 => table.sweep_buckets(|_| true),
                        4 => table.note(&t),
                        5 => table.day_mut(&t).0 += 1,
                        _ => {
                            table.forget_known(&t);
                            table.age_days(|d| d.0 = 0);
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let entries = || {
        table.entries.iter().filter_map(|s| {
            s.0.as_ref()
                .map(|e| (e.known, e.held.load(Ordering::Acquire)))
        })
    };
    let held = entries().filter(|(_, held)| *held).count();
    let known = table.entries.iter().filter(|s| s.is_known()).count();
    assert_eq!(table.buckets(), held);
    assert_eq!(table.known_len(), known);
    assert!(table.entries.iter().all(|s| !s.is_vacant()));
}
