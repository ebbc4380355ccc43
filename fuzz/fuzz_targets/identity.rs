//! Any bytes as a bearer token, a key document and a keys file: stage 1 never panics,
//! and a token not signed with the fuzzer-unknown secret never verifies.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tenantgate::identity::api_key::ApiKeys;
use tenantgate::identity::cache::TokenCache;
use tenantgate::identity::jwt::{ClaimPath, JwtKeys, JwtSettings};
use tenantgate::identity::keys::KeySet;

fn settings() -> &'static JwtSettings {
    static SETTINGS: OnceLock<JwtSettings> = OnceLock::new();
    SETTINGS.get_or_init(|| JwtSettings {
        header: http::header::AUTHORIZATION,
        claim: ClaimPath::parse("sub").unwrap(),
        keys: JwtKeys::Secret(Arc::new(KeySet::hs256(b"never in any seed or corpus").unwrap())),
        issuer: None,
        audience: None,
        leeway_secs: 30,
        cache: TokenCache::default(),
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = KeySet::parse(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ApiKeys::parse(text, None);
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| tokio::runtime::Builder::new_current_thread().build().unwrap());
    let verified = runtime.block_on(settings().verify(text, 1_800_000_000.0));
    assert!(verified.is_err(), "a forged token verified: {text:?}");
});
