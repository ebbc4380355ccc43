//! Stage 2's route match (on the shipped route table and on one of 200 routes) and
//! the namespace codec, on their own (issue 17). The rewrite and the response pass by
//! size are in `rewrite` and `respond`; the limiter and metering in `limiter` and
//! `meter`. `cargo bench --bench corridor`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method};
use tenantgate::config::{self, Overrides};
use tenantgate::identity::TenantId;
use tenantgate::namespace::{decode_tenant, encode_tenant};

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

criterion_group!(benches, route_match, namespace_codec);
criterion_main!(benches);
