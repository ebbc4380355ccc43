//! `[[route]]` heads (name, match, scope), the privileged token and blocked tenants,
//! compiled into stage 2's [`RouteSettings`]. Shadowed routes and an empty table are
//! warnings, not errors.

use std::collections::BTreeSet;

use super::table::{Route, RouteTable};
use super::{RouteSettings, Scope};
use crate::refusal::Refusal;
use crate::secret::Secret;
use crate::spec::{key, Errors, Seg};

/// The keys of one `[[route]]` that stage 2 reads.
pub struct RouteHead<'a> {
    pub name: Option<&'a str>,
    pub matcher: &'a str,
    pub scope: Scope,
}

pub struct RouteSpec<'a> {
    pub routes: Vec<RouteHead<'a>>,
    pub privileged_token: Option<&'a str>,
    pub blocked: Vec<&'a str>,
    /// The refusal for a per-user route reached without any identity (stage 1 knows
    /// whether that asks for a header or a credential).
    pub missing_tenant: Refusal,
}

pub fn compile(
    spec: &RouteSpec<'_>,
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) -> Option<RouteSettings> {
    let privileged_token = match spec.privileged_token {
        Some("") => {
            errors.add(
                vec![key("tenant"), key("privileged_token")],
                "privileged_token is empty",
            );
            None
        }
        Some(t) => Some(Secret::new(t)),
        None => None,
    };
    let mut compiled = Vec::with_capacity(spec.routes.len());
    for (i, head) in spec.routes.iter().enumerate() {
        let path = |k: &str| vec![key("route"), Seg::Index(i), key(k)];
        if head.scope == Scope::Privileged && privileged_token.is_none() {
            errors.add(
                path("scope"),
                "a privileged route needs [tenant] privileged_token",
            );
        }
        match Route::parse_match(head.matcher) {
            Ok((methods, template)) => {
                if let Some(segment) = alternative_in_path(head.matcher) {
                    warnings.push(format!(
                        "route {:?}: the path segment {segment:?} is matched literally; `|` and `*` make alternatives only among methods (write one route per path)",
                        head.matcher.trim()
                    ));
                }
                compiled.push(Route {
                    index: i,
                    name: head
                        .name
                        .map_or_else(|| head.matcher.trim().to_owned(), str::to_owned),
                    match_text: head.matcher.trim().to_owned(),
                    methods,
                    template,
                    scope: head.scope,
                })
            }
            Err(e) => errors.add(path("match"), e),
        }
    }
    if compiled.len() != spec.routes.len() {
        return None;
    }
    let table = RouteTable::new(compiled);
    let names: Vec<&str> = table.iter().map(|r| r.name.as_str()).collect();
    for (later, earlier) in table.shadowed() {
        warnings.push(format!(
            "route {:?} can never match: the earlier route {:?} matches every request it would",
            names[later], names[earlier]
        ));
    }
    if table.is_empty() {
        warnings.push(
            "no [[route]] is configured: every request is refused (deny by default)".to_owned(),
        );
    }
    Some(RouteSettings {
        table,
        privileged_token,
        blocked: spec
            .blocked
            .iter()
            .map(|t| (*t).to_owned())
            .collect::<BTreeSet<_>>(),
        missing_tenant: spec.missing_tenant.clone(),
    })
}

/// A literal path segment that looks like alternatives (`add|upsert`) or a glob (`*`),
/// which a template never treats as such.
fn alternative_in_path(matcher: &str) -> Option<&str> {
    let path = matcher.trim().split_once(' ').map_or("", |(_, p)| p.trim());
    path.split('/')
        .filter(|s| !s.starts_with('{'))
        .find(|s| s.contains(['|', '*']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::compile_str;

    #[derive(serde::Deserialize)]
    struct Routes {
        #[serde(default)]
        route: Vec<Head>,
        tenant: Option<Tenant>,
    }

    #[derive(serde::Deserialize)]
    struct Head {
        name: Option<String>,
        #[serde(rename = "match")]
        matcher: String,
        scope: Scope,
    }

    #[derive(serde::Deserialize)]
    struct Tenant {
        privileged_token: String,
    }

    fn compiled(toml: &str) -> Result<(RouteSettings, Vec<String>), Vec<String>> {
        compile_str(toml, |r: &Routes, errors| {
            let spec = RouteSpec {
                routes: r
                    .route
                    .iter()
                    .map(|h| RouteHead {
                        name: h.name.as_deref(),
                        matcher: &h.matcher,
                        scope: h.scope,
                    })
                    .collect(),
                privileged_token: r.tenant.as_ref().map(|t| t.privileged_token.as_str()),
                blocked: vec!["mallory"],
                missing_tenant: Refusal::TenantRequired {
                    header: "x-tenant-id".to_owned(),
                },
            };
            let mut warnings = Vec::new();
            compile(&spec, errors, &mut warnings).map(|s| (s, warnings))
        })
    }

    #[test]
    fn compiles_the_table_in_file_order_and_warns_of_shadowed_routes() {
        let (settings, warnings) = compiled(
            "[[route]]\nmatch = \"GET /v1/{*rest}\"\nscope = \"shared\"\n[[route]]\nname = \"one\"\nmatch = \"GET /v1/x\"\nscope = \"tenant\"\n",
        )
        .unwrap();
        let names: Vec<_> = settings
            .table
            .iter()
            .map(|r| (r.index, r.name.as_str()))
            .collect();
        assert_eq!(names, [(0, "GET /v1/{*rest}"), (1, "one")]);
        assert!(settings.blocked.contains("mallory"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("\"one\" can never match"),
            "{warnings:?}"
        );
        let (_, warnings) = compiled("").unwrap();
        assert!(warnings[0].starts_with("no [[route]] is configured"));
    }

    #[test]
    fn warns_of_alternatives_inside_a_path_segment() {
        let (_, warnings) = compiled(
            "[[route]]\nmatch = \"POST|PUT /c/{id}/add|upsert\"\nscope = \"tenant\"\n[[route]]\nmatch = \"GET /files/*\"\nscope = \"shared\"\n",
        )
        .unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("the path segment \"add|upsert\" is matched literally"));
        assert!(warnings[1].contains("\"*\""));
    }

    #[test]
    fn refuses_each_bad_route_at_its_key() {
        let errors = compiled(
            "[[route]]\nmatch = \"get /x\"\nscope = \"tenant\"\n[[route]]\nmatch = \"GET /x\"\nscope = \"privileged\"\n[[route]]\nmatch = \"GET\"\nscope = \"deny\"\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "2:9: method \"get\" is not an upper-case method name (methods are case-sensitive: GET, POST, ...)",
                "6:9: a privileged route needs [tenant] privileged_token",
                "8:9: match \"GET\" needs a method and a path, like \"GET /v1/memories\"",
            ]
        );
        assert_eq!(
            compiled("[tenant]\nprivileged_token = \"\"\n").unwrap_err(),
            ["2:20: privileged_token is empty"]
        );
    }
}
