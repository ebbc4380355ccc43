//! Property test of the JSON rewriter against a model written with serde_json: for any
//! JSON document, the rewritten text parses to exactly what the model predicts, and a
//! refusal happens exactly when the model says the body cannot be rewritten. The rules
//! cover bind/set injection, prefix at any depth, `prepend:.` and `add:1`.

use proptest::prelude::*;
use serde_json::{Map, Value};
use tenantgate::json::pointer::Pointer;
use tenantgate::rewrite::json::{rewrite, JsonRule};
use tenantgate::rewrite::{Mode, Target};

const ROOT: &str = "u_alice";
const TARGET: Target = Target {
    root: ROOT,
    tenant: Some("alice"),
    separator: "__",
};

fn rules() -> Vec<JsonRule> {
    [
        ("/**/sid", Mode::Prefix),
        ("/user_id", Mode::Set),
        ("/meta/owner", Mode::Set),
        ("/ns", Mode::PrependJoined(".".into())),
        ("/depth", Mode::Add(1)),
    ]
    .iter()
    .map(|(p, m)| JsonRule {
        pointer: Pointer::parse(p).unwrap(),
        mode: m.clone(),
    })
    .collect()
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,6}".prop_map(Value::String),
        Just(Value::String("s\"1\\é".into())),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        let key = prop_oneof![
            Just("sid".to_owned()),
            Just("user_id".to_owned()),
            Just("meta".to_owned()),
            Just("owner".to_owned()),
            Just("ns".to_owned()),
            Just("depth".to_owned()),
            "[a-z$]{1,3}"
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// What the rules should do, or `None` for a refusal.
fn model(input: &Value) -> Option<Value> {
    fn prefix_sids(value: &mut Value) -> Option<()> {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if key == "sid" {
                        match child {
                            Value::String(s) => *s = format!("{ROOT}__{s}"),
                            // The backend's "not given", forwarded as is.
                            Value::Null => {}
                            Value::Array(items) => {
                                for item in items.iter_mut() {
                                    let Value::String(s) = item else { return None };
                                    *s = format!("{ROOT}__{s}");
                                }
                            }
                            _ => return None,
                        }
                    } else {
                        prefix_sids(child)?;
                    }
                }
            }
            Value::Array(items) => items.iter_mut().try_for_each(prefix_sids)?,
            _ => {}
        }
        Some(())
    }
    let mut out = input.clone();
    let Value::Object(root) = &mut out else {
        return None;
    };
    // `/user_id` and `/meta/owner` are set (injected when absent); a value of another
    // type, or a non-object `meta`, is refused.
    match root.get("user_id") {
        None | Some(Value::String(_)) => {}
        Some(_) => return None,
    }
    match root.get("meta") {
        None => {}
        Some(Value::Object(meta)) if matches!(meta.get("owner"), None | Some(Value::String(_))) => {
        }
        Some(_) => return None,
    }
    // `/ns` (prepend:.) takes the root as its first label, injected when absent;
    // `/depth` (add:1) is a whole number (digits only) or null, and gains one.
    let ns = match root.get("ns") {
        None => ROOT.to_owned(),
        Some(Value::String(s)) if s.is_empty() => ROOT.to_owned(),
        Some(Value::String(s)) => format!("{ROOT}.{s}"),
        Some(_) => return None,
    };
    let depth = match root.get("depth") {
        None => None,
        Some(Value::Null) => Some(Value::Null),
        Some(Value::Number(n)) => Some(Value::from(n.as_u64()?.checked_add(1)?)),
        Some(_) => return None,
    };
    prefix_sids(&mut out)?;
    let Value::Object(root) = &mut out else {
        return None;
    };
    root.insert("ns".into(), ns.into());
    if let Some(depth) = depth {
        root.insert("depth".into(), depth);
    }
    root.insert("user_id".into(), ROOT.into());
    let meta = root
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    meta.as_object_mut()?.insert("owner".into(), ROOT.into());
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn rewritten_json_is_what_the_model_predicts(input in json(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&input) } else { serde_json::to_string(&input) }.unwrap();
        // The model reads the same text, so both sides parse numbers identically.
        let input: Value = serde_json::from_str(&text).unwrap();
        let got = rewrite(text.as_bytes(), &rules(), &TARGET).map(|(body, _)| body);
        match (model(&input), got) {
            (Some(expected), Ok(Some(bytes))) => {
                let parsed: Value = serde_json::from_slice(&bytes).expect("the rewritten body is valid JSON");
                prop_assert_eq!(parsed, expected);
            }
            (Some(expected), Ok(None)) => prop_assert_eq!(input, expected),
            (None, Err(_)) => {}
            (want, got) => prop_assert!(false, "model {:?} but rewriter {:?} for {}", want, got.map(|b| b.map(String::from_utf8)), text),
        }
    }

    #[test]
    fn bodies_no_rule_touches_pass_unchanged(input in json()) {
        let text = serde_json::to_string_pretty(&input).unwrap();
        let none: Vec<JsonRule> = Vec::new();
        prop_assert!(matches!(rewrite(text.as_bytes(), &none, &TARGET), Ok((None, _))));
    }
}

/// A query assembled from names and values a client or an attacker might send.
fn query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("namespace"),
        Just("Namespace"),
        Just("namespace[]"),
        Just("name%73pace"),
        Just("max_depth"),
        Just("key"),
        Just(" namespace"),
    ];
    let value = prop_oneof![
        Just(String::new()),
        Just("u_bob".to_owned()),
        Just("%2E".to_owned()),
        Just("-1".to_owned()),
        Just("7".to_owned()),
        "[a-z.+%0-9]{0,6}",
    ];
    prop::collection::vec((name, value), 0..5).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A dotted namespace forwarded in a query always starts with the caller's label,
    /// exactly once, whatever the query held; a depth forwarded is digits.
    #[test]
    fn a_forwarded_dotted_namespace_is_always_the_callers(q in query()) {
        let rules = [
            ("namespace".to_owned(), Mode::PrependJoined(".".into())),
            ("max_depth".to_owned(), Mode::Add(1)),
        ];
        let mut owned = Vec::new();
        if let Ok(out) = tenantgate::rewrite::query::rewrite(Some(&q), &rules, &TARGET, &mut owned) {
            let out = out.unwrap_or_else(|| q.clone());
            // Read as a form-decoding backend reads it: `+` a space, then percent-decoded.
            let decode = |t: &str| {
                percent_encoding::percent_decode_str(&t.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let params: Vec<(String, String)> = out
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .map(|(n, v)| (decode(n), decode(v)))
                .collect();
            let named: Vec<&String> = params.iter().filter(|(n, _)| n == "namespace").map(|(_, v)| v).collect();
            prop_assert_eq!(named.len(), 1, "{} -> {}", q, out);
            prop_assert!(named[0] == ROOT || named[0].starts_with("u_alice."), "{} -> {}", q, out);
            for (_, depth) in params.iter().filter(|(n, _)| n == "max_depth") {
                prop_assert!(!depth.is_empty() && depth.bytes().all(|b| b.is_ascii_digit()), "{} -> {}", q, out);
            }
        }
    }
}
