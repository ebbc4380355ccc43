//! The response stage's cost on realistic answers, beside a plain serde_json parse of
//! the same bytes for scale, and on search answers of 1 KiB, 64 KiB and 8 MiB:
//! `cargo bench --bench respond`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use tenantgate::config::{self, Overrides};
use tenantgate::respond::json::process;
use tenantgate::respond::Recipient;
use tenantgate::store::Tenants;

const CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:1"
[[route]]
match = "GET /sessions"
scope = "tenant"
response.keep = { items = "/sessions", owner = "/id" }
[[route]]
match = "POST /search"
scope = "tenant"
"#;

/// A vector search answer: `n` hits, each with a 1536-float embedding.
fn search_answer(n: usize) -> Vec<u8> {
    let results: Vec<_> = (0..n)
        .map(|i| {
            let embedding: Vec<f64> = (0..1536).map(|k| (i * k) as f64 * 1e-4 - 0.5).collect();
            json!({"id": format!("u_alice__mem_{i}"), "user_id": "u_alice",
                   "session_id": "u_alice__trip", "score": 0.87,
                   "text": "Alice is allergic to peanuts", "embedding": embedding})
        })
        .collect();
    serde_json::to_vec(&json!({ "results": results })).unwrap()
}

/// A list of every user's sessions, half of them the caller's.
fn sessions_answer(n: usize) -> Vec<u8> {
    let sessions: Vec<_> = (0..n)
        .map(|i| {
            let owner = if i % 2 == 0 { "alice" } else { "bob" };
            json!({"id": format!("u_{owner}__s{i}"), "memories": i, "title": "a trip"})
        })
        .collect();
    serde_json::to_vec(&json!({ "sessions": sessions })).unwrap()
}

fn bench(c: &mut Criterion) {
    let snapshot = config::load_str(CONFIG, "bench.toml", &Overrides::default(), &|_| None)
        .expect("bench config");
    let config = &snapshot.config;
    let known = Tenants::default();
    let records = tenantgate::store::records::Records::in_memory();
    known.note("bob");
    let scope = Recipient {
        namespaces: &config.namespaces,
        root: "u_alice",
        tenant: Some("alice"),
        guard: true,
        configured: &config.respond.configured,
        known: &known,
        records: &records,
    };
    let routes: Vec<_> = config.rules.iter().collect();
    let cases = [
        ("search_10x1536", search_answer(10), routes[1]),
        ("sessions_1000_keep", sessions_answer(1000), routes[0]),
    ];
    let mut group = c.benchmark_group("respond");
    for (name, body, route) in &cases {
        group.throughput(Throughput::Bytes(body.len() as u64));
        let rules = &route.respond.rules;
        group.bench_with_input(BenchmarkId::new("process", name), body, |b, body| {
            b.iter(|| process(body, rules, &scope).expect("delivered"))
        });
        group.bench_with_input(
            BenchmarkId::new("serde_json_parse", name),
            body,
            |b, body| b.iter(|| serde_json::from_slice::<serde_json::Value>(body).expect("json")),
        );
    }
    group.finish();
    let mut group = c.benchmark_group("response_pass");
    group.sample_size(20);
    let rules = &routes[1].respond.rules;
    for (name, size) in [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("8MiB", 8 << 20)] {
        let body = answer_body(size).into_bytes();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| process(std::hint::black_box(body), rules, &scope).expect("delivered"))
        });
    }
    group.finish();
}

/// A search answer of about `size` bytes: hits with the caller's namespaced ids.
fn answer_body(size: usize) -> String {
    let hit = |i: usize| {
        format!(
            r#"{{"id":"u_alice__m{i}","user_id":"u_alice","session_id":"u_alice__trip","score":0.87,"memory":"Alice is allergic to peanuts, hit {i}"}}"#
        )
    };
    let mut hits = Vec::new();
    let mut len = 14;
    while len < size {
        let h = hit(hits.len());
        len += h.len() + 1;
        hits.push(h);
    }
    format!(r#"{{"results":[{}]}}"#, hits.join(","))
}

criterion_group!(benches, bench);
criterion_main!(benches);
