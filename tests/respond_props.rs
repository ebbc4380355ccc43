//! Property test of the response pass against a serde_json model: for any list of items
//! owned by the caller, another tenant, nobody, or namespace look-alikes, in any layout,
//! `keep` + guard + unwrap deliver exactly the caller's items with its ids unwrapped,
//! and withhold the answer exactly when a surviving string is another tenant's id.

use proptest::prelude::*;
use serde_json::{json, Value};
use tenantgate::config::{self, Overrides};
use tenantgate::respond::json::{process, Blocked};
use tenantgate::respond::Recipient;
use tenantgate::store::Tenants;

const CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:1"
[[route]]
match = "GET /sessions"
scope = "tenant"
response.keep = { items = "/data/items", owner = "/owner" }
"#;

fn owner() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("u_alice")),
        "[a-z0-9_]{0,4}".prop_map(|id| json!(format!("u_alice__{id}"))),
        "[a-z0-9_]{0,4}".prop_map(|id| json!(format!("u_bob__{id}"))),
        Just(json!("u_bob")),
        Just(json!("u_alicex__1")),
        Just(json!("U_alice__1")),
        Just(json!(7)),
        Just(Value::Null),
    ]
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("u_bob__leak")),
        Just(json!("u_alice__mine")),
        Just(json!("see u_bob__x")),
        "\\PC{0,5}".prop_map(Value::from),
    ]
}

fn item() -> impl Strategy<Value = Value> {
    (proptest::option::of(owner()), text(), any::<bool>()).prop_map(|(owner, text, nested)| {
        let mut item = serde_json::Map::new();
        if let Some(owner) = owner {
            item.insert("owner".into(), owner);
        }
        let text = if nested { json!([{"t": text}]) } else { text };
        item.insert("text".into(), text);
        Value::Object(item)
    })
}

/// The model: what the caller should receive, or `None` when the answer is withheld.
fn expected(items: &[Value], extra: &Value) -> Option<Value> {
    fn unwrap(value: &Value) -> Result<Value, ()> {
        Ok(match value {
            Value::String(s) if s == "u_alice" => json!("alice"),
            Value::String(s) => match s.strip_prefix("u_alice__") {
                Some(plain) => json!(plain),
                None if s.starts_with("u_bob__") || s == "u_bob" => return Err(()),
                None => value.clone(),
            },
            Value::Array(a) => Value::Array(a.iter().map(unwrap).collect::<Result<_, _>>()?),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| Ok((unwrap(&json!(k))?.as_str().unwrap().to_owned(), unwrap(v)?)))
                    .collect::<Result<_, ()>>()?,
            ),
            other => other.clone(),
        })
    }
    let kept: Vec<Value> = items
        .iter()
        .filter(|item| {
            item.get("owner")
                .and_then(Value::as_str)
                .is_some_and(|o| o == "u_alice" || o.starts_with("u_alice__"))
        })
        .cloned()
        .collect();
    unwrap(&json!({"data": {"items": kept}, "extra": extra})).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn keep_guard_and_unwrap_match_the_model(
        items in proptest::collection::vec(item(), 0..8),
        extra in text(),
        pretty in any::<bool>(),
    ) {
        let snapshot = config::load_str(CONFIG, "t.toml", &Overrides::default(), &|_| None).unwrap();
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
        let route = &config.rules[0];
        let doc = json!({"data": {"items": items}, "extra": extra});
        let body = if pretty {
            serde_json::to_vec_pretty(&doc).unwrap()
        } else {
            serde_json::to_vec(&doc).unwrap()
        };
        let got = process(&body, &route.respond.rules, &scope);
        match expected(&items, &extra) {
            Some(want) => {
                let delivered = got.expect("delivered").body.unwrap_or(body);
                let parsed: Value = serde_json::from_slice(&delivered).expect("valid JSON");
                prop_assert_eq!(parsed, want);
            }
            None => prop_assert!(matches!(got, Err(Blocked::Leak(_))), "{:?}", got),
        }
    }
}
