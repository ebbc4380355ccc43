//! Any body through the JSON rewriter: it never panics, whatever it accepts serde_json
//! accepts too, and what it writes is always valid JSON (selector bits pick the rules,
//! among them `prepend:.` and `add:1`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantgate::rewrite::json::{rewrite, JsonRule};
use tenantgate::json::pointer::Pointer;
use tenantgate::rewrite::{Mode, Target};

const TARGET: Target = Target { root: "u_alice", tenant: Some("alice"), separator: "__" };

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let all = [
        ("/user_id", Mode::Bind),
        ("/**/sid", Mode::Prefix),
        ("/meta/owner", Mode::Set),
        ("/ids", Mode::Prepend),
        ("/**/$or", Mode::Deny),
        ("/m/*/s", Mode::PrefixRequired),
        ("/ns", Mode::PrependJoined(".".into())),
        ("/**/depth", Mode::Add(1)),
    ];
    let rules: Vec<JsonRule> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| selector & (1 << i) != 0)
        .map(|(_, (p, m))| JsonRule { pointer: Pointer::parse(p).unwrap(), mode: m.clone() })
        .collect();
    if let Ok((out, _)) = rewrite(body, &rules, &TARGET) {
        assert!(valid(body), "accepted what serde_json rejects");
        if let Some(out) = out {
            assert!(valid(&out), "wrote invalid JSON");
        }
    }
});

/// serde_json's verdict, except that a number too large for an f64 (valid JSON by
/// RFC 8259's grammar, forwarded untouched) counts as valid.
fn valid(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(_) => true,
        Err(e) => e.to_string().contains("number out of range"),
    }
}
