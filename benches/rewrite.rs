//! The request rewriter's cost: a memory-add body with an embedding, and an object of
//! 20,000 keys (a body an attacker controls). `cargo bench --bench rewrite`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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
    let mut group = c.benchmark_group("rewrite");
    for (name, body) in [("memory_add_1536", add), ("object_20k_keys", wide)] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| rewrite(black_box(body.as_bytes()), &rules, &TARGET).expect("rewritten"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
