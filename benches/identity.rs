//! Stage 1's cost per request in the verified modes: one JWT verified per algorithm
//! (signature, then claims: `_cold`) and found in the cache of verified tokens
//! (`_cached`), and one API key looked up among 10 000.
//! `cargo bench --bench identity`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};
use tenantgate::identity::api_key::ApiKeys;
use tenantgate::identity::cache::TokenCache;
use tenantgate::identity::jwt::{ClaimPath, JwtKeys, JwtSettings};
use tenantgate::identity::keys::KeySet;

const NOW: f64 = 1_800_000_000.0;

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/keys")
            .join(name),
    )
    .unwrap()
}

fn settings(set: KeySet) -> JwtSettings {
    JwtSettings {
        header: http::header::AUTHORIZATION,
        claim: ClaimPath::parse("sub").unwrap(),
        keys: JwtKeys::Secret(Arc::new(set)),
        issuer: Some("https://auth.test".to_owned()),
        audience: Some("memory".to_owned()),
        leeway_secs: 30,
        cache: TokenCache::default(),
    }
}

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let claims = serde_json::json!({
        "sub": "user-0000042", "iss": "https://auth.test", "aud": "memory",
        "exp": NOW as u64 + 600, "iat": NOW as u64,
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("identity");
    let secret = b"a-shared-secret-of-at-least-32-bytes";
    let cases = [
        (
            "jwt_hs256",
            Algorithm::HS256,
            EncodingKey::from_secret(secret).unwrap(),
            KeySet::hs256(secret).unwrap(),
        ),
        (
            "jwt_rs256",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&key_file("rsa.key")).unwrap(),
            KeySet::parse(&key_file("rsa.pub")).unwrap(),
        ),
        (
            "jwt_es256",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&key_file("ec.key")).unwrap(),
            KeySet::parse(&key_file("ec.pub")).unwrap(),
        ),
        (
            "jwt_eddsa",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&key_file("ed.key")).unwrap(),
            KeySet::parse(&key_file("ed.pub")).unwrap(),
        ),
    ];
    for (name, alg, signing, set) in cases {
        let jwt = settings(set);
        let token = token(alg, &signing);
        assert!(runtime.block_on(jwt.verify(&token, NOW)).is_ok());
        group.bench_function(format!("{name}_cold"), |b| {
            b.iter(|| {
                jwt.cache.clear();
                runtime.block_on(jwt.verify(black_box(&token), NOW))
            })
        });
        group.bench_function(format!("{name}_cached"), |b| {
            b.iter(|| runtime.block_on(jwt.verify(black_box(&token), NOW)))
        });
    }

    let mut file = String::from("[keys]\n");
    for i in 0..10_000 {
        let digest = hex::encode(Sha256::digest(format!("key-{i}").as_bytes()));
        file.push_str(&format!("\"{digest}\" = \"user-{i}\"\n"));
    }
    let keys = ApiKeys::parse(&file, None).unwrap();
    group.bench_function("api_key_of_10k", |b| {
        b.iter(|| keys.tenant_of(black_box(b"key-4242")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
