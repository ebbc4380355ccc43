use super::*;

fn spec() -> NamespaceScheme {
    NamespaceScheme::new("u_{tenant}", "__", None, Unscoped::Reject, "main").unwrap()
}

#[test]
fn encodes_as_the_spec_fixes_it() {
    assert_eq!(encode_tenant("alice"), "alice");
    assert_eq!(encode_tenant("Alice"), "-41lice");
    assert_eq!(encode_tenant("a_b"), "a-5fb");
    assert_eq!(encode_tenant("a-b"), "a-2db");
    assert_eq!(encode_tenant("é"), "-c3-a9");
    assert_eq!(decode_tenant("-41lice").as_deref(), Some("Alice"));
    assert_eq!(decode_tenant("-61"), None, "non-canonical");
    assert_eq!(decode_tenant("-4"), None);
    assert_eq!(
        decode_tenant("-4F"),
        None,
        "upper-case hex is not canonical"
    );
    assert_eq!(decode_tenant("-ff"), None, "not UTF-8");
}

#[test]
fn classifies_by_the_root() {
    let ns = spec();
    let alice = TenantId::parse("alice", None).unwrap();
    let root = ns.root(&alice).unwrap();
    assert_eq!(root, "u_alice");
    assert_eq!(
        ns.classify("u_alice"),
        Classified::Root {
            tenant: "alice".into()
        }
    );
    assert_eq!(
        ns.classify("u_alice__s1__x"),
        Classified::Namespaced {
            tenant: "alice".into(),
            id: "s1__x"
        }
    );
    let tricky = TenantId::parse("u_bob__x", None).unwrap();
    let tricky_root = ns.root(&tricky).unwrap();
    assert_eq!(tricky_root, "u_u-5fbob-5f-5fx");
    assert_eq!(
        ns.classify(&ns.namespaced(&tricky_root, "y")),
        Classified::Namespaced {
            tenant: "u_bob__x".into(),
            id: "y"
        }
    );
    for other in [
        "U_bob__x",
        "u-bob",
        "xu_bob__x",
        "see u_bob__x",
        "u_",
        "u___x",
        "main",
        "u_-61__x",
    ] {
        assert_eq!(ns.classify(other), Classified::Other, "{other}");
    }
}

#[test]
fn refuses_unsafe_settings() {
    assert!(NamespaceScheme::new("u_{tenant}", "-", None, Unscoped::Reject, "main").is_err());
    assert!(NamespaceScheme::new("u_{tenant}", ".", None, Unscoped::Reject, "main").is_err());
    assert!(NamespaceScheme::new("u_", "__", None, Unscoped::Reject, "main").is_err());
    assert!(NamespaceScheme::new("u_{tenant}", "__", None, Unscoped::Reject, "u_main").is_err());
    assert!(NamespaceScheme::new("{tenant}", "__", None, Unscoped::Reject, "main").is_err());
    assert!(NamespaceScheme::new("{tenant}", "__", None, Unscoped::Reject, "Main").is_ok());
}

#[test]
fn max_encoded_limits_the_encoded_form() {
    let ns = NamespaceScheme::new("u_{tenant}", "__", Some(6), Unscoped::Reject, "main").unwrap();
    assert!(ns.root(&TenantId::parse("abcdef", None).unwrap()).is_ok());
    assert_eq!(
        ns.root(&TenantId::parse("Abc", None).unwrap()),
        Ok("u_-41bc".to_owned())
    );
    assert_eq!(
        ns.root(&TenantId::parse("ABc", None).unwrap()),
        Err(InvalidTenant::EncodedTooLong)
    );
}

#[test]
fn compile_reports_each_refusal_at_its_key() {
    #[derive(serde::Deserialize)]
    struct Tables {
        tenant: Tenant,
    }
    #[derive(serde::Deserialize)]
    struct Tenant {
        namespace: String,
        separator: String,
        main_namespace: String,
    }
    let compiled = |toml: &str| {
        crate::spec::compile_str(toml, |t: &Tables, errors| {
            let t = &t.tenant;
            let spec = SchemeSpec {
                namespace: &t.namespace,
                separator: &t.separator,
                max_encoded: None,
                unscoped: Unscoped::Reject,
                main_namespace: &t.main_namespace,
            };
            compile(&spec, errors)
        })
    };
    let ok =
        "[tenant]\nnamespace = \"u_{tenant}\"\nseparator = \"__\"\nmain_namespace = \"main\"\n";
    assert_eq!(compiled(ok).unwrap().pattern(), "u_{tenant}");
    let bad = |ns: &str, sep: &str, main: &str| {
        let toml = format!(
            "[tenant]\nnamespace = {ns:?}\nseparator = {sep:?}\nmain_namespace = {main:?}\n"
        );
        compiled(&toml).unwrap_err()
    };
    assert!(bad("u_", "__", "main")[0].starts_with("2:13: namespace must contain {tenant}"));
    assert!(bad("u_{tenant}", "-", "main")[0].starts_with("3:13: separator \"-\""));
    assert!(bad("u_{tenant}", "__", "u_main")[0].starts_with("4:18: main_namespace \"u_main\""));
}

#[test]
fn may_occur_in_rules_out_only_values_without_the_prefix_or_an_escape() {
    let ns = spec();
    assert!(ns.may_occur_in(b"session=u_bob__s1; Path=/"));
    assert!(ns.may_occur_in(b"/v1/u%5Fbob__s1"));
    assert!(!ns.may_occur_in(b"application/json"));
    let bare = NamespaceScheme::new("{tenant}", "__", None, Unscoped::Reject, "Main").unwrap();
    assert!(
        bare.may_occur_in(b"anything"),
        "no prefix: every value is judged"
    );
}
