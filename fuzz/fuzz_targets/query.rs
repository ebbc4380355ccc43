//! Any query through the query rewriter with `bind`, `prefix`, `prepend:.` and `add:1`
//! rules: it never panics, and a query it forwards names the caller in `user_id` exactly
//! once and has exactly one `namespace`, under the caller's label.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantgate::rewrite::query::rewrite;
use tenantgate::rewrite::{Mode, Target};

const ALICE: Target = Target {
    root: "u_alice",
    tenant: Some("alice"),
    separator: "__",
};

fuzz_target!(|query: &str| {
    let rules = [
        ("user_id".to_owned(), Mode::Bind),
        ("session".to_owned(), Mode::Prefix),
        ("namespace".to_owned(), Mode::PrependJoined(".".into())),
        ("max_depth".to_owned(), Mode::Add(1)),
    ];
    let mut owned = Vec::new();
    if let Ok(out) = rewrite(Some(query), &rules, &ALICE, &mut owned) {
        let out = out.unwrap_or_else(|| query.to_owned());
        let bound = out.split('&').filter(|p| p.starts_with("user_id=")).count();
        assert_eq!(bound, 1, "{query:?} -> {out:?}");
        assert!(out.split('&').any(|p| p == "user_id=u_alice"), "{query:?} -> {out:?}");
        // Names and values as a form-decoding backend reads them.
        let decode = |t: &str| {
            percent_encoding::percent_decode_str(&t.replace('+', " ")).decode_utf8_lossy().into_owned()
        };
        let named: Vec<String> = out
            .split('&')
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .filter(|(n, _)| decode(n) == "namespace")
            .map(|(_, v)| decode(v))
            .collect();
        assert_eq!(named.len(), 1, "{query:?} -> {out:?}");
        assert!(named[0] == "u_alice" || named[0].starts_with("u_alice."), "{query:?} -> {out:?}");
    }
});
