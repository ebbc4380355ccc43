use super::*;

const ALICE: Target = Target {
    root: "u_alice",
    tenant: Some("alice"),
    separator: "__",
};

fn rules(list: &[(&str, Mode)]) -> Vec<JsonRule> {
    list.iter()
        .map(|(p, m)| JsonRule {
            pointer: Pointer::parse(p).unwrap(),
            mode: m.clone(),
        })
        .collect()
}

fn run(body: &str, list: &[(&str, Mode)]) -> Result<String, Refusal> {
    let out = rewrite(body.as_bytes(), &rules(list), &ALICE)?;
    Ok(out
        .0
        .map_or_else(|| body.to_owned(), |b| String::from_utf8(b).unwrap()))
}

#[test]
fn untouched_text_is_kept_byte_for_byte() {
    let body = "{ \"user_id\" : \"alice\",\n \"v\": [3.141592653589793238, 1E+2, -0.0],\"t\":\"caf\\u00e9\" }";
    let out = run(body, &[("/user_id", Mode::Bind)]).unwrap();
    assert_eq!(out, body.replace("\"alice\"", "\"u_alice\""));
}

#[test]
fn injection_creates_missing_parents_once() {
    let out = run(
        r#"{"a":1}"#,
        &[
            ("/meta/user_id", Mode::Bind),
            ("/meta/agent", Mode::Set),
            ("/ids", Mode::Prepend),
        ],
    )
    .unwrap();
    assert_eq!(
        out,
        r#"{"a":1,"meta":{"user_id":"u_alice","agent":"u_alice"},"ids":["u_alice"]}"#
    );
    assert_eq!(
        run("{}", &[("/user_id", Mode::Bind)]).unwrap(),
        r#"{"user_id":"u_alice"}"#
    );
    assert_eq!(
        run(r#"{"meta":{}}"#, &[("/meta/user_id", Mode::Set)]).unwrap(),
        r#"{"meta":{"user_id":"u_alice"}}"#
    );
}

#[test]
fn wildcards_rewrite_only_what_exists() {
    let body = r#"{"messages":[{"session_id":"s1"},{"role":"x"},{"session_id":"s2"}]}"#;
    let out = run(body, &[("/messages/*/session_id", Mode::Prefix)]).unwrap();
    assert_eq!(
        out,
        r#"{"messages":[{"session_id":"u_alice__s1"},{"role":"x"},{"session_id":"u_alice__s2"}]}"#
    );
    let out = run(
        r#"{"a":{"b":[{"id":"x"}]},"id":"y"}"#,
        &[("/**/id", Mode::Prefix)],
    )
    .unwrap();
    assert_eq!(
        out,
        r#"{"a":{"b":[{"id":"u_alice__x"}]},"id":"u_alice__y"}"#
    );
    assert_eq!(
        run(r#"{"m":[{"s":"1"}]}"#, &[("/m/0/s", Mode::Prefix)]).unwrap(),
        r#"{"m":[{"s":"u_alice__1"}]}"#
    );
}

#[test]
fn modes_check_values_and_types() {
    assert_eq!(
        run(r#"{"user_id":"u_alice"}"#, &[("/user_id", Mode::Bind)]).unwrap(),
        r#"{"user_id":"u_alice"}"#
    );
    assert_eq!(
        run(r#"{"user_id":"bob"}"#, &[("/user_id", Mode::Bind)]),
        Err(Refusal::TenantMismatch)
    );
    assert_eq!(
        run(r#"{"user_id":"bob"}"#, &[("/user_id", Mode::Set)]).unwrap(),
        r#"{"user_id":"u_alice"}"#
    );
    for wrong in [r#"{"$ne":"x"}"#, "1", "null", "true", r#"["alice"]"#] {
        let body = format!(r#"{{"user_id":{wrong}}}"#);
        assert!(
            matches!(
                run(&body, &[("/user_id", Mode::Bind)]),
                Err(Refusal::BadRequest(_))
            ),
            "{body}"
        );
    }
    assert_eq!(
        run(r#"{"ids":["a","b"]}"#, &[("/ids", Mode::Prefix)]).unwrap(),
        r#"{"ids":["u_alice__a","u_alice__b"]}"#
    );
    assert!(run(r#"{"ids":["a",1]}"#, &[("/ids", Mode::Prefix)]).is_err());
    assert_eq!(
        run(r#"{"ns":["x"]}"#, &[("/ns", Mode::Prepend)]).unwrap(),
        r#"{"ns":["u_alice","x"]}"#
    );
    assert_eq!(
        run(r#"{"ns":[]}"#, &[("/ns", Mode::Prepend)]).unwrap(),
        r#"{"ns":["u_alice"]}"#
    );
    assert!(run(r#"{}"#, &[("/s", Mode::PrefixRequired)]).is_err());
    assert_eq!(run(r#"{}"#, &[("/s", Mode::Prefix)]).unwrap(), "{}");
    assert!(run(r#"{"meta":"x"}"#, &[("/meta/user_id", Mode::Bind)]).is_err());
}

#[test]
fn deny_at_any_depth_and_duplicate_keys_are_refused() {
    let deny = [("/**/OR", Mode::Deny)];
    assert!(run(r#"{"where":{"a":[{"OR":[]}]}}"#, &deny).is_err());
    assert!(run(r#"{"OR":1}"#, &deny).is_err());
    assert_eq!(run(r#"{"or":1}"#, &deny).unwrap(), r#"{"or":1}"#);
    for dup in [
        r#"{"a":1,"a":2}"#,
        r#"{"x":{"a":1,"a":2}}"#,
        r#"{"user_id":"alice","user\u005fid":"bob"}"#,
    ] {
        assert!(
            matches!(run(dup, &[]), Err(Refusal::BadRequest(_))),
            "{dup}"
        );
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(run(&deep, &[]).is_err());
    for bad in ["{", r#"{"a":01}"#, "[1] x", r#""\ud800""#] {
        assert!(run(bad, &[]).is_err(), "{bad}");
    }
}

#[test]
fn an_index_in_a_pointer_takes_only_its_element_beside_any_depth_rules() {
    let deny_ne = ("/**/$ne", Mode::Deny);
    let body = r#"{"m":[{"s":"a"},{"s":"b"},{"s":"c"}]}"#;
    let out = run(body, &[("/m/1/s", Mode::Prefix), deny_ne.clone()]).unwrap();
    assert_eq!(out, r#"{"m":[{"s":"a"},{"s":"u_alice__b"},{"s":"c"}]}"#);
    let out = run(body, &[("/m/*/s", Mode::Prefix), deny_ne.clone()]).unwrap();
    assert_eq!(
        out,
        r#"{"m":[{"s":"u_alice__a"},{"s":"u_alice__b"},{"s":"u_alice__c"}]}"#
    );
    let refused = run(r#"{"m":[1,{"$ne":2}]}"#, &[deny_ne]);
    assert!(
        refused.is_err(),
        "a deep operator in a later element: {refused:?}"
    );
}

#[test]
fn joined_labels_and_depths_follow_a_prepended_root() {
    let dotted = Mode::PrependJoined(Arc::from("."));
    assert_eq!(
        run(r#"{"ns":"a.b"}"#, &[("/ns", dotted.clone())]).unwrap(),
        r#"{"ns":"u_alice.a.b"}"#
    );
    assert_eq!(
        run(r#"{"ns":""}"#, &[("/ns", dotted.clone())]).unwrap(),
        r#"{"ns":"u_alice"}"#
    );
    assert_eq!(
        run(r#"{}"#, &[("/ns", dotted.clone())]).unwrap(),
        r#"{"ns":"u_alice"}"#
    );
    for wrong in ["null", "[\"a\"]", "1", r#"{"$ne":"x"}"#] {
        let body = format!(r#"{{"ns":{wrong}}}"#);
        assert!(run(&body, &[("/ns", dotted.clone())]).is_err(), "{body}");
    }
    let depth = Mode::Add(1);
    assert_eq!(
        run(
            r#"{"max_depth": 2 ,"x":1}"#,
            &[("/max_depth", depth.clone())]
        )
        .unwrap(),
        r#"{"max_depth": 3 ,"x":1}"#
    );
    for kept in [r#"{}"#, r#"{"max_depth":null}"#] {
        assert_eq!(run(kept, &[("/max_depth", depth.clone())]).unwrap(), kept);
    }
    // Only digits: a sign, a fraction or an exponent could be read another way.
    for wrong in [
        "-1",
        "1.5",
        "1e2",
        "18446744073709551615",
        "\"2\"",
        "true",
        "[2]",
    ] {
        let body = format!(r#"{{"max_depth":{wrong}}}"#);
        assert!(
            matches!(
                run(&body, &[("/max_depth", depth.clone())]),
                Err(Refusal::BadRequest(_))
            ),
            "{body}"
        );
    }
}
