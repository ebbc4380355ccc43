//! The limiter check (stage 3's hot path): ns per check with one hot tenant and with a
//! million tenants, and the resident memory each tracked tenant costs.
//! `cargo bench --bench limiter`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tenantgate::clock::{Clock, SystemClock};
use tenantgate::gcra::Rate;
use tenantgate::limits::Limiter;

const TENANTS: usize = 1_000_000;

fn key(i: usize) -> String {
    format!("user-{i:07}")
}

/// Resident set size in bytes, from /proc (Linux).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn bench(c: &mut Criterion) {
    let clock = SystemClock::default();
    // Generous enough that the bucket never runs dry during the measurement.
    let rate = Rate::new(1_000_000_000, Duration::from_secs(1), 1_000_000).unwrap();
    let mut group = c.benchmark_group("limiter");

    let hot = Limiter::default();
    group.bench_function("check_hot_key", |b| {
        b.iter(|| hot.take(black_box("user-0000001"), &rate, 1, clock.mono()))
    });

    let keys: Vec<String> = (0..TENANTS).map(key).collect();
    let before = rss();
    let many = Limiter::default();
    for k in &keys {
        many.take(k, &rate, 1, clock.mono());
    }
    let per_tenant = (rss().saturating_sub(before)) as f64 / TENANTS as f64;
    eprintln!(
        "limiter: {} tenants tracked, {per_tenant:.0} bytes of RSS per tenant",
        many.keys()
    );
    let mut i = 0usize;
    group.bench_function("check_1m_keys", |b| {
        b.iter(|| {
            // A stride that defeats the cache the way real traffic from many users does.
            i = (i + 7_919) % TENANTS;
            many.take(&keys[i], &rate, 1, clock.mono())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
