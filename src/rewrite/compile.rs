//! `[route.rewrite]` and a route's `set_headers` (SPEC 4.1), compiled into
//! [`RouteRewrite`], enforcing the table of which mode may stand at which location.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::json::JsonRule;
use super::template::ValueTemplate;
use super::{Location, Mode, RouteRewrite};
use crate::hygiene;
use crate::identity::IdentitySettings;
use crate::json::pointer::Pointer;
use crate::route::template::Template;
use crate::route::Scope;
use crate::spec::{at, Errors, KeyPath};

/// `[route.rewrite]`: location -> mode, per SPEC 4.1.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteSpec {
    #[serde(default)]
    pub path: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub json: BTreeMap<String, String>,
    #[serde(default)]
    pub header: BTreeMap<String, String>,
}

impl RewriteSpec {
    pub fn is_empty(&self) -> bool {
        self.path.is_empty()
            && self.query.is_empty()
            && self.json.is_empty()
            && self.header.is_empty()
    }
}

/// The keys of one `[[route]]` that stage 4 reads, with what it checks them against.
pub struct RouteRewriteSpec<'a> {
    pub scope: Scope,
    /// The route's match template, for path rules to name its segments.
    pub template: &'a Template,
    pub set_headers: &'a BTreeMap<String, String>,
    pub rewrite: &'a RewriteSpec,
    /// A rule may not rewrite the identity header (it is never forwarded).
    pub identity: Option<&'a IdentitySettings>,
    /// `[tenant] namespace` and `main_namespace`: a `prepend:D` delimiter must not
    /// occur in a root, or the backend would split one root into several labels.
    pub roots: [&'a str; 2],
}

/// Parses a mode for `location`, refusing a `prepend:D` whose delimiter shares a
/// character with a root (the encoded tenant uses `[a-z0-9-]`): a root that contains
/// it, or ends in its first characters, would not be the backend's first label.
fn parse_mode(text: &str, location: Location, roots: [&str; 2]) -> Result<Mode, String> {
    let mode = Mode::parse(text, location)?;
    if let Mode::PrependJoined(delimiter) = &mode {
        let fixed = roots.map(|r| r.replace("{tenant}", "-"));
        if delimiter
            .chars()
            .any(|c| fixed.iter().any(|r| r.contains(c)))
        {
            return Err(format!(
                "{text}: a namespace root shares a character with {delimiter:?} ([tenant] namespace, main_namespace or the encoded tenant's -), so the backend could split it elsewhere; pick another delimiter"
            ));
        }
        if location == Location::Path && delimiter.contains('/') {
            return Err(format!(
                "{text}: a path segment cannot hold / (it would be forwarded as %2F, which backends decode differently)"
            ));
        }
    }
    Ok(mode)
}

/// Compiles one route's rules; errors are reported under `base` (`route[i]`).
pub fn compile_route(
    spec: &RouteRewriteSpec<'_>,
    base: &KeyPath,
    errors: &mut Errors,
) -> RouteRewrite {
    let mut out = RouteRewrite::default();
    for (name, value) in spec.set_headers {
        let path = at(base, &["set_headers", name]);
        let header = match hygiene::settable_header(name) {
            Ok(header) => header,
            Err(e) => {
                errors.add(path, e);
                continue;
            }
        };
        match ValueTemplate::parse(value) {
            Ok(t) => out.set_headers.push((header, t)),
            Err(e) => errors.add(path, format!("{name}: {e}")),
        }
    }
    let templated = out.set_headers.iter().any(|(_, t)| t.is_templated());
    if spec.scope != Scope::Tenant && (templated || !spec.rewrite.is_empty()) {
        errors.add(
            at(base, &["scope"]),
            "rewrite rules and {ns}/{tenant} templates apply only to tenant routes (a shared route rewrites nothing)",
        );
        return out;
    }
    let rules = spec.rewrite;
    for (name, mode) in &rules.path {
        let path = at(base, &["rewrite", "path", name]);
        let Ok(mode) =
            parse_mode(mode, Location::Path, spec.roots).map_err(|e| errors.add(path.clone(), e))
        else {
            continue;
        };
        match spec.template.param_index(name) {
            Some(index) => out.path.push((index, mode)),
            None if spec.template.rest_name() == Some(name.as_str()) => errors.add(
                path,
                format!("{{*{name}}} is never rewritten; name a single segment"),
            ),
            None => errors.add(
                path,
                format!("the match template has no {{{name}}} segment"),
            ),
        }
    }
    for (name, mode) in &rules.query {
        let path = at(base, &["rewrite", "query", name]);
        if let Ok(mode) =
            parse_mode(mode, Location::Query, spec.roots).map_err(|e| errors.add(path, e))
        {
            out.query.push((name.clone(), mode));
        }
    }
    for (pointer, mode) in &rules.json {
        let path = at(base, &["rewrite", "json", pointer]);
        let parsed = Pointer::parse(pointer)
            .and_then(|p| match p.steps.is_empty() {
                true => Err("the whole body cannot be rewritten; point at a field".to_owned()),
                false => Ok(p),
            })
            .map_err(|e| errors.add(path.clone(), e));
        let mode = parse_mode(mode, Location::Json, spec.roots).map_err(|e| errors.add(path, e));
        if let (Ok(pointer), Ok(mode)) = (parsed, mode) {
            out.json.push(JsonRule { pointer, mode });
        }
    }
    for (name, mode) in &rules.header {
        let path = at(base, &["rewrite", "header", name]);
        let header = match hygiene::settable_header(name) {
            Ok(header) => header,
            Err(e) => {
                errors.add(path, e);
                continue;
            }
        };
        if spec
            .identity
            .is_some_and(|i| i.is_lookalike(header.as_str()))
        {
            errors.add(
                path,
                "the identity header is never forwarded; rewrite another header",
            );
            continue;
        }
        if let Ok(mode) =
            parse_mode(mode, Location::Header, spec.roots).map_err(|e| errors.add(path, e))
        {
            out.header.push((header, mode));
        }
    }
    out
}

#[cfg(test)]
mod tests;
