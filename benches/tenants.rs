//! `GET /admin/tenants` at a million tenants: the near-duplicate index over 1,000,000
//! ids (SPEC 9 wants the listing in under 5 s). `cargo bench --bench tenants`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tenantgate::admin::similar::near_duplicates;

fn ids() -> Vec<String> {
    let mut ids: Vec<String> = (0..1_000_000usize)
        .map(|n| match n % 3 {
            0 => format!("user-{n}"),
            1 => format!("name{n}@example.com"),
            _ => format!("{:x}-{n}", n.wrapping_mul(2_654_435_761)),
        })
        .collect();
    // A few real look-alikes among them.
    for n in 0..100 {
        ids[n * 3] = format!("Acme{n}");
        ids[n * 3 + 1] = format!("acme{n}");
    }
    ids
}

fn bench(c: &mut Criterion) {
    let ids = ids();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("tenants");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("near_duplicates_1m", |b| {
        b.iter(|| near_duplicates(black_box(&refs)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
