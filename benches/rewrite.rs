//! The request rewriter's cost: a memory-add body with an embedding, an object of
//! 20,000 keys (a body an attacker controls), and 8 MiB bodies (the default
//! `max_body`) of rewritten items and of keys; and the memory-add body at 1 KiB, 64 KiB
//! and 8 MiB. `cargo bench --bench rewrite`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tenantgate::json::pointer::Pointer;
use tenantgate::rewrite::json::{rewrite, JsonRule};
use tenantgate::rewrite::{Mode, Target};

const TARGET: Target = Target {
    root: "u_alice",
    tenant: Some("alice"),
    separator: "__",
};

fn bench(c: &mut Criterion) {
    let rules = vec![
        JsonRule {
            pointer: Pointer::parse("/user_id").expect("pointer"),
            mode: Mode::Bind,
        },
        JsonRule {
            pointer: Pointer::parse("/**/$ne").expect("pointer"),
            mode: Mode::Deny,
        },
    ];
    let embedding: Vec<String> = (0..1536)
        .map(|i| format!("{:.6}", i as f64 * 1e-3))
        .collect();
    let add = format!(
        r#"{{"text":"Alice is allergic to peanuts","user_id":"alice","metadata":{{"k":"v"}},"embedding":[{}]}}"#,
        embedding.join(",")
    );
    let keys: Vec<String> = (0..20_000).map(|i| format!(r#""k{i}":"v{i}""#)).collect();
    let wide = format!("{{{}}}", keys.join(","));
    let prefix = vec![JsonRule {
        pointer: Pointer::parse("/ids").expect("pointer"),
        mode: Mode::Prefix,
    }];
    let ids: Vec<String> = (0..(8 << 20) / 11)
        .map(|i| format!("\"i{i:07}\""))
        .collect();
    let items = format!("{{\"ids\":[{}]}}", ids.join(","));
    let members: Vec<String> = (0..(8 << 20) / 17)
        .map(|i| format!("\"k{i:07}\":\"v{i}\""))
        .collect();
    let keys = format!("{{{},\"user_id\":\"alice\"}}", members.join(","));
    let mut group = c.benchmark_group("rewrite");
    group.sample_size(10);
    for (name, body, rules) in [
        ("memory_add_1536", add, &rules),
        ("object_20k_keys", wide, &rules),
        ("items_8mib", items, &prefix),
        ("keys_8mib", keys, &rules),
    ] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| rewrite(black_box(body.as_bytes()), rules, &TARGET).expect("rewritten"))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("request_rewrite");
    group.sample_size(20);
    for (name, size) in [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("8MiB", 8 << 20)] {
        let body = request_body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| rewrite(black_box(body.as_bytes()), &rules, &TARGET).expect("rewritten"))
        });
    }
    group.finish();
}

/// A memory-add body of about `size` bytes: text, metadata and an embedding.
fn request_body(size: usize) -> String {
    let mut floats = Vec::new();
    let mut len = 80;
    let mut i = 0u32;
    while len < size {
        let f = format!("{:.6}", f64::from(i % 1000) * 1e-3 - 0.5);
        len += f.len() + 1;
        floats.push(f);
        i += 1;
    }
    format!(
        r#"{{"text":"Alice is allergic to peanuts","metadata":{{"k":"v"}},"embedding":[{}]}}"#,
        floats.join(",")
    )
}

criterion_group!(benches, bench);
criterion_main!(benches);
