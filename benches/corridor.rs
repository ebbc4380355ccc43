//! The stages' own costs, each on its own (issue 17): route match on the shipped route
//! table and on a table of 200 routes, the namespace codec, and the request rewrite
//! and the response pass at 1 KiB, 64 KiB and 8 MiB. The limiter (hot and over 1M
//! tenants) and metering have benches of their own (`limiter`, `meter`).
//! `cargo bench --bench corridor`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, Method};
use tenantgate::config::{self, Overrides};
use tenantgate::identity::TenantId;
use tenantgate::json::pointer::Pointer;
use tenantgate::namespace::{decode_tenant, encode_tenant};
use tenantgate::respond::json::process;
use tenantgate::respond::Recipient;
use tenantgate::rewrite::json::{rewrite, JsonRule};
use tenantgate::rewrite::{Mode, Target};
use tenantgate::tenants::KnownTenants;

const SIZES: [(&str, usize); 3] = [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("8MiB", 8 << 20)];

fn snapshot(text: &str) -> config::Snapshot {
    config::load_str(text, "bench.toml", &Overrides::default(), &|_| None).expect("bench config")
}

fn route_match(c: &mut Criterion) {
    let shipped = snapshot(include_str!("../config/tenantgate.toml"));
    let mut wide = String::from("[upstream]\nurl = \"http://127.0.0.1:9\"\n");
    for i in 0..200 {
        wide.push_str(&format!(
            "[[route]]\nmatch = \"GET|POST /v1/r{i}/{{id}}/items\"\nscope = \"tenant\"\n"
        ));
    }
    let wide = snapshot(&wide);
    let alice = TenantId::parse("alice", None).expect("tenant");
    let headers = HeaderMap::new();
    let mut group = c.benchmark_group("route");
    for (name, snapshot, method, path) in [
        (
            "shipped_first",
            &shipped,
            Method::POST,
            "/v1/sessions/trip/memories",
        ),
        ("shipped_last", &shipped, Method::DELETE, "/v1/memories"),
        ("200_routes_last", &wide, Method::POST, "/v1/r199/x/items"),
    ] {
        let config = &snapshot.config;
        group.bench_function(name, |b| {
            b.iter(|| {
                tenantgate::route::admit(
                    &config.route,
                    &config.namespaces,
                    &method,
                    black_box(path),
                    &headers,
                    Some(alice.clone()),
                )
            })
        });
    }
    group.finish();
}

fn namespace_codec(c: &mut Criterion) {
    let snapshot = snapshot("[upstream]\nurl = \"http://127.0.0.1:9\"\n");
    let scheme = &snapshot.config.namespaces;
    let mut group = c.benchmark_group("namespace");
    for (name, id) in [("plain", "alice"), ("email", "Alice.Smith+ai@example.com")] {
        let encoded = encode_tenant(id);
        let tenant = TenantId::parse(id, None).expect("tenant");
        let root = scheme.root(&tenant).expect("root");
        let value = scheme.namespaced(&root, "trip-2026");
        group.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| encode_tenant(black_box(id)))
        });
        group.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| decode_tenant(black_box(&encoded)))
        });
        group.bench_function(format!("root_{name}"), |b| {
            b.iter(|| scheme.root(black_box(&tenant)))
        });
        group.bench_function(format!("classify_{name}"), |b| {
            b.iter(|| {
                black_box(scheme.classify(black_box(&value)));
            })
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

fn request_rewrite(c: &mut Criterion) {
    let target = Target {
        root: "u_alice",
        tenant: Some("alice"),
        separator: "__",
    };
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
    let mut group = c.benchmark_group("request_rewrite");
    group.sample_size(20);
    for (name, size) in SIZES {
        let body = request_body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| rewrite(black_box(body.as_bytes()), &rules, &target).expect("rewritten"))
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

fn response_pass(c: &mut Criterion) {
    let snapshot = snapshot(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[route]]\nmatch = \"POST /search\"\nscope = \"tenant\"\n",
    );
    let config = &snapshot.config;
    let known = KnownTenants::default();
    known.note("bob");
    let records = tenantgate::store::records::Records::in_memory();
    let scope = Recipient {
        namespaces: &config.namespaces,
        root: "u_alice",
        tenant: Some("alice"),
        guard: true,
        configured: &config.respond.configured,
        known: &known,
        records: &records,
    };
    let rules = &config.rules[0].respond.rules;
    let mut group = c.benchmark_group("response_pass");
    group.sample_size(20);
    for (name, size) in SIZES {
        let body = answer_body(size).into_bytes();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| process(black_box(body), rules, &scope).expect("delivered"))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    route_match,
    namespace_codec,
    request_rewrite,
    response_pass
);
criterion_main!(benches);
