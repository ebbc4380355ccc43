use super::*;
use crate::spec::compile_str;
use std::sync::Arc;

#[derive(serde::Deserialize)]
struct Route {
    #[serde(rename = "match")]
    matcher: String,
    scope: Scope,
    #[serde(default)]
    set_headers: BTreeMap<String, String>,
    #[serde(default)]
    rewrite: RewriteSpec,
}

fn compiled(toml: &str) -> Result<RouteRewrite, Vec<String>> {
    let identity = IdentitySettings {
        header: http::HeaderName::from_static("x-tenant-id"),
        pattern: None,
        proof: crate::identity::Proof::Header,
        trust_network: false,
        key_file: None,
    };
    compile_str(toml, |r: &Route, errors| {
        let (_, template) = crate::route::table::Route::parse_match(&r.matcher).ok()?;
        let spec = RouteRewriteSpec {
            scope: r.scope,
            template: &template,
            set_headers: &r.set_headers,
            rewrite: &r.rewrite,
            identity: Some(&identity),
            roots: ["u_{tenant}", "main"],
        };
        Some(compile_route(&spec, &Vec::new(), errors))
    })
}

#[test]
fn compiles_every_location() {
    let rules = compiled(
        r#"match = "POST /v1/{session}/memories"
scope = "tenant"
set_headers = { "X-Backend-User" = "{ns}" }
[rewrite]
path = { session = "prefix" }
query = { user_id = "bind" }
header = { "X-User" = "set" }
json = { "/user_id" = "bind", "/**/$or" = "deny" }
"#,
    )
    .unwrap();
    assert_eq!(rules.path, [(1, Mode::Prefix)]);
    assert_eq!(rules.query, [("user_id".to_owned(), Mode::Bind)]);
    assert_eq!(rules.header[0].0.as_str(), "x-user");
    let json: Vec<_> = rules
        .json
        .iter()
        .map(|r| (r.pointer.text.as_str(), r.mode.clone()))
        .collect();
    assert_eq!(json, [("/**/$or", Mode::Deny), ("/user_id", Mode::Bind)]);
    assert!(rules.set_headers[0].1.is_templated());
}

#[test]
fn refuses_each_bad_rule_at_its_key() {
    let errors = compiled(
        r#"match = "POST /v1/{session}/{*rest}"
scope = "tenant"
[rewrite]
path = { session = "deny", rest = "prefix", nope = "bind" }
query = { q = "prepend" }
json = { "user_id" = "bind", "/a" = "owned:no way" }
header = { "X-Tenant_Id" = "set", "Content-Length" = "set" }
"#,
    )
    .unwrap_err();
    assert_eq!(
        errors,
        [
            "4:52: the match template has no {nope} segment",
            "4:35: {*rest} is never rewritten; name a single segment",
            "4:20: deny is not allowed in path rules (see the spec 4.1 table)",
            "5:15: prepend is not allowed in query rules (see the spec 4.1 table)",
            "6:37: owned:no way: a kind is a name of letters, digits, _ - and . (owned:collection)",
            "6:22: JSON pointer \"user_id\" must start with /",
            "7:54: Content-Length cannot be set by the config (it frames or routes the request)",
            "7:28: the identity header is never forwarded; rewrite another header",
        ]
    );
    let errors = compiled(
        "match = \"GET /x\"\nscope = \"shared\"\nset_headers = { \"X-U\" = \"{tenant}\" }\n",
    )
    .unwrap_err();
    assert_eq!(
        errors,
        ["2:9: rewrite rules and {ns}/{tenant} templates apply only to tenant routes (a shared route rewrites nothing)"]
    );
}

#[test]
fn joined_prepends_and_adds_have_their_locations_and_delimiters() {
    let rules = compiled(
        r#"match = "GET /v1/{ns}"
scope = "tenant"
[rewrite]
path = { ns = "prepend:+" }
query = { namespace = "prepend:.", max_depth = "add:1" }
json = { "/depth" = "add:2" }
header = { "X-Ns" = "prepend:::" }
"#,
    )
    .unwrap();
    assert_eq!(rules.path, [(1, Mode::PrependJoined(Arc::from("+")))]);
    assert!(rules.scopes());
    let errors = compiled(
        r#"match = "GET /v1/{ns}"
scope = "tenant"
[rewrite]
path = { ns = "add:1" }
query = { a = "prepend:-", b = "prepend:_", c = "prepend:", d = "add:0", e = "prepend:x", f = "prepend:._" }
header = { "X-D" = "add:1" }
"#,
    )
    .unwrap_err();
    let joined = errors.join("\n");
    for expected in [
        "add:1 is not allowed in path rules",
        "prepend:-: a namespace root shares a character with \"-\"",
        "prepend:_: a namespace root shares a character with \"_\"",
        "prepend:._: a namespace root shares a character with \"._\"",
        "prepend:: the delimiter must be 1 to 8 punctuation characters",
        "prepend:x: the delimiter must be",
        "add:0: N must be a whole number from 1 to 1000",
        "add:1 is not allowed in header rules",
    ] {
        assert!(joined.contains(expected), "{expected} in {joined}");
    }
}

#[test]
fn a_path_delimiter_cannot_be_a_slash() {
    let errors = compiled(
        "match = \"GET /v1/{ns}\"\nscope = \"tenant\"\n[rewrite]\npath = { ns = \"prepend:/\" }\n",
    )
    .unwrap_err();
    assert!(
        errors[0].contains("a path segment cannot hold /"),
        "{errors:?}"
    );
}
