//! Property tests of the tenant codec and namespaced ids (SPEC 3): injective, reversible
//! by parsing the root, and only `[a-z0-9-]` in the encoded tenant, for any template
//! and separator `check` accepts.

use proptest::prelude::*;
use tenantgate::identity::TenantId;
use tenantgate::namespace::{decode_tenant, encode_tenant, Classified, NamespaceScheme, Unscoped};

/// Pieces that make tenants and ids look like roots, separators and escapes.
fn tricky_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("u_".to_owned()),
        Just("__".to_owned()),
        Just("_".to_owned()),
        Just("-".to_owned()),
        Just("-41".to_owned()),
        Just("-5f".to_owned()),
        Just("bob".to_owned()),
        Just("B".to_owned()),
        Just("é".to_owned()),
        Just("::".to_owned()),
        Just(".".to_owned()),
        "[a-z0-9]{1,3}",
        "\\PC{1,2}",
    ];
    prop::collection::vec(piece, 1..6).prop_map(|p| p.concat())
}

fn tenant() -> impl Strategy<Value = TenantId> {
    prop_oneof![tricky_text(), "\\PC{1,12}", any::<String>()]
        .prop_filter_map("valid tenant id", |t| TenantId::parse(&t, None).ok())
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![tricky_text(), any::<String>(), Just(String::new())]
}

fn namespaces() -> impl Strategy<Value = NamespaceScheme> {
    let safe = "[a-zA-Z0-9_.~:@-]{0,4}";
    let separator = prop_oneof![
        Just("__".to_owned()),
        Just(":".to_owned()),
        Just("~".to_owned()),
        "[a-z0-9-]{0,2}[A-Z_.~:@][a-zA-Z0-9_.~:@-]{0,2}",
    ];
    (safe, safe, separator).prop_filter_map("accepted by check", |(prefix, suffix, separator)| {
        NamespaceScheme::new(
            &format!("{prefix}{{tenant}}{suffix}"),
            &separator,
            None,
            Unscoped::Reject,
            "main~",
        )
        .ok()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encoding_uses_only_the_safe_alphabet_and_round_trips(t in tenant()) {
        let encoded = encode_tenant(t.as_str());
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        prop_assert_eq!(decode_tenant(&encoded), Some(t.to_string()));
    }

    #[test]
    fn namespaced_ids_parse_back_to_their_tenant_and_id(ns in namespaces(), t in tenant(), id in id()) {
        let root = ns.root(&t).unwrap();
        prop_assert_eq!(ns.classify(&root), Classified::Root { tenant: t.to_string() });
        let full = ns.namespaced(&root, &id);
        prop_assert_eq!(ns.classify(&full), Classified::Namespaced { tenant: t.to_string(), id: &id });
        prop_assert!(ns.is_within(&root, &full));
    }

    #[test]
    fn different_tenant_or_id_never_collide(
        ns in namespaces(),
        (t1, t2) in (tenant(), tenant()),
        (i1, i2) in (id(), id()),
    ) {
        let a = ns.namespaced(&ns.root(&t1).unwrap(), &i1);
        let b = ns.namespaced(&ns.root(&t2).unwrap(), &i2);
        if t1 != t2 || i1 != i2 {
            prop_assert_ne!(a, b);
        }
    }

    #[test]
    fn a_tenant_that_looks_like_a_namespaced_id_stays_itself(ns in namespaces(), t in tenant(), id in id()) {
        // The tenant "u_alice__x" must not be confused with alice's id "x".
        let root = ns.root(&t).unwrap();
        let lookalike = ns.namespaced(&root, &id);
        if let Ok(disguised) = TenantId::parse(&lookalike, None) {
            let their_root = ns.root(&disguised).unwrap();
            prop_assert_ne!(&their_root, &root);
            prop_assert!(!ns.is_within(&root, &their_root));
            prop_assert!(!ns.is_within(&their_root, &lookalike));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// The reverse direction: whatever a string is classified as, building that id
    /// again gives back exactly the string, so no two spellings name one tenant's id.
    #[test]
    fn classification_is_canonical(ns in namespaces(), text in prop_oneof![tricky_text(), any::<String>()]) {
        let candidates = [text.clone(), format!("u_{text}"), format!("u_{}", encode_tenant(&text))];
        for candidate in candidates {
            match ns.classify(&candidate) {
                Classified::Root { tenant } => {
                    let t = TenantId::parse(&tenant, None);
                    if let Ok(t) = t {
                        prop_assert_eq!(ns.root(&t).unwrap(), candidate);
                    }
                }
                Classified::Namespaced { tenant, id } => {
                    if let Ok(t) = TenantId::parse(&tenant, None) {
                        prop_assert_eq!(ns.namespaced(&ns.root(&t).unwrap(), id), candidate.clone());
                    }
                }
                Classified::Other => {}
            }
        }
    }
}
