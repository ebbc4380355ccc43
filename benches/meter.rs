//! Metering's cost per request: recording one 2xx event (today's counters for the
//! quotas plus the pending row for the flush), for one hot tenant and spread over
//! 100,000. `cargo bench --bench meter`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tenantgate::identity::Caller;
use tenantgate::identity::TenantId;
use tenantgate::store::{Counters, Usage};

fn bench(c: &mut Criterion) {
    let delta = Counters {
        events: 1,
        units: 1,
        bytes_in: 512,
        bytes_out: 2048,
        last_at: 1_795_820_400,
    };
    let mut group = c.benchmark_group("meter");
    let usage = Usage::in_memory();
    let hot = Caller::Tenant(TenantId::parse("alice", None).expect("valid id"));
    group.bench_function("record_hot_tenant", |b| {
        b.iter(|| usage.add(black_box(&hot), 20_000, delta))
    });
    let many: Vec<Caller> = (0..100_000)
        .map(|n| Caller::Tenant(TenantId::parse(&format!("user-{n}"), None).expect("valid id")))
        .collect();
    let usage = Usage::in_memory();
    let mut i = 0;
    group.bench_function("record_100k_tenants", |b| {
        b.iter(|| {
            i = (i + 7_919) % many.len();
            usage.add(&many[i], 20_000, delta)
        })
    });
    group.bench_function("flush_after_100k_events", |b| {
        b.iter_batched(
            || {
                let usage = Usage::in_memory();
                for caller in &many {
                    usage.add(caller, 20_000, delta);
                }
                usage
            },
            |usage| usage.flush().expect("memory flush"),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
