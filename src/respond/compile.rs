//! `[route.response]` (SPEC 4.2, 4.3), compiled into [`RouteResponse`]: `unwrap`
//! defaults to true on tenant routes; `keep` by namespace (`owner`) or by ownership
//! (`owned` + `at`); `learn` and `forget` for opaque ids.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::json::{Keep, KeepBy, ResponseRules};
use super::RouteResponse;
use crate::json::pointer::Pointer;
use crate::route::Scope;
use crate::spec::{at, Errors, KeyPath, Seg};
use crate::store::records;

/// `[route.response]` as the file writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    pub unwrap: Option<bool>,
    pub keep: Option<KeepSpec>,
    pub learn: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub unprepend: Vec<String>,
    pub forget: Option<bool>,
    #[serde(default)]
    pub passthrough: bool,
    pub ids_at: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepSpec {
    pub items: String,
    pub owner: Option<String>,
    pub owned: Option<String>,
    pub at: Option<String>,
}

/// Compiles one route's response rules; errors are reported under `base` (`route[i]`).
pub fn compile_route(
    scope: Scope,
    spec: &ResponseSpec,
    base: &KeyPath,
    errors: &mut Errors,
) -> RouteResponse {
    let declared = spec.unwrap.is_some()
        || spec.keep.is_some()
        || spec.learn.is_some()
        || spec.forget.is_some()
        || !spec.unprepend.is_empty()
        || spec.ids_at.is_some()
        || spec.passthrough;
    if scope != Scope::Tenant {
        if declared {
            errors.add(
                at(base, &["response"]),
                "response rules apply only to tenant routes",
            );
        }
        return RouteResponse::default();
    }
    let keep = spec
        .keep
        .as_ref()
        .and_then(|keep| compile_keep(keep, at(base, &["response", "keep"]), errors));
    let mut learn = Vec::new();
    for (pointer, kind) in spec.learn.iter().flatten() {
        let path = at(base, &["response", "learn"]);
        match (Pointer::parse(pointer), records::kind(kind)) {
            (Ok(p), Ok(kind)) => learn.push((p, kind)),
            (Err(e), _) | (_, Err(e)) => errors.add(path, e),
        }
    }
    if !learn.is_empty() && spec.passthrough {
        errors.add(
            at(base, &["response", "learn"]),
            "learn reads the answer, which passthrough = true forwards unread",
        );
    }
    let mut unprepend = Vec::new();
    for (i, text) in spec.unprepend.iter().enumerate() {
        match Pointer::parse(text) {
            Ok(p) => unprepend.push(p),
            Err(e) => {
                let mut path = at(base, &["response", "unprepend"]);
                path.push(Seg::Index(i));
                errors.add(path, e);
            }
        }
    }
    let ids_at = spec.ids_at.as_ref().map(|list| {
        let mut pointers = Vec::new();
        for (i, text) in list.iter().enumerate() {
            match Pointer::parse(text) {
                Ok(p) => pointers.push(p),
                Err(e) => {
                    let mut path = at(base, &["response", "ids_at"]);
                    path.push(Seg::Index(i));
                    errors.add(path, e);
                }
            }
        }
        pointers
    });
    RouteResponse {
        rules: ResponseRules {
            unwrap: spec.unwrap.unwrap_or(true),
            keep,
            unprepend,
            learn,
            ids_at,
        },
        passthrough: spec.passthrough,
        forget: spec.forget.unwrap_or(false),
    }
}

/// `keep = { items, owner }` or `keep = { items, owned = KIND, at }`.
fn compile_keep(keep: &KeepSpec, path: KeyPath, errors: &mut Errors) -> Option<Keep> {
    let (by, at) = match (&keep.owner, &keep.owned, &keep.at) {
        (Some(owner), None, None) => (KeepBy::Namespace, owner),
        (None, Some(kind), Some(at)) => match records::kind(kind) {
            Ok(kind) => (KeepBy::Owned(kind), at),
            Err(e) => {
                errors.add(path, e);
                return None;
            }
        },
        _ => {
            errors.add(
                path,
                "keep needs owner = \"/pointer/in/each/item\", or owned = \"KIND\" with at = \"/pointer/to/the/id\"",
            );
            return None;
        }
    };
    match (Pointer::parse(&keep.items), Pointer::parse(at)) {
        (Ok(items), Ok(owner)) => Some(Keep { items, owner, by }),
        (Err(e), _) | (_, Err(e)) => {
            errors.add(path, e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::compile_str;

    #[derive(Deserialize)]
    struct Route {
        scope: Scope,
        #[serde(default)]
        response: ResponseSpec,
    }

    fn compiled(toml: &str) -> Result<RouteResponse, Vec<String>> {
        compile_str(toml, |r: &Route, errors| {
            Some(compile_route(r.scope, &r.response, &Vec::new(), errors))
        })
    }

    #[test]
    fn compiles_keep_unprepend_and_the_unwrap_default() {
        let r = compiled(
            "scope = \"tenant\"\n[response]\nkeep = { items = \"/sessions/*\", owner = \"/id\" }\nunprepend = [\"/namespace\"]\n",
        )
        .unwrap();
        assert!(r.rules.unwrap && !r.passthrough);
        let keep = r.rules.keep.unwrap();
        assert_eq!(
            (keep.items.text.as_str(), keep.owner.text.as_str()),
            ("/sessions/*", "/id")
        );
        assert_eq!(r.rules.unprepend[0].text, "/namespace");
        assert!(compiled("scope = \"shared\"\n").is_ok());
    }

    #[test]
    fn compiles_the_ownership_forms() {
        let r = compiled(
            "scope = \"tenant\"\n[response]\nkeep = { items = \"\", owned = \"collection\", at = \"/id\" }\nlearn = { \"/*/id\" = \"collection\" }\nforget = true\n",
        )
        .unwrap();
        let keep = r.rules.keep.unwrap();
        assert!(keep.items.steps.is_empty(), "the root pointer");
        assert_eq!(keep.by, KeepBy::Owned("collection".into()));
        assert_eq!(r.rules.learn[0].0.text, "/*/id");
        assert_eq!(&*r.rules.learn[0].1, "collection");
        assert!(r.forget);
    }

    #[test]
    fn refuses_each_bad_rule_at_its_key() {
        let errors = compiled(
            "scope = \"tenant\"\n[response]\nkeep = { items = \"/x\" }\nunprepend = [\"/ok\", \"bad\"]\nlearn = { \"/id\" = \"my collection\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "3:8: keep needs owner = \"/pointer/in/each/item\", or owned = \"KIND\" with at = \"/pointer/to/the/id\"",
                "5:9: owned:my collection: a kind is a name of letters, digits, _ - and . (owned:collection)",
                "4:21: JSON pointer \"bad\" must start with /",
            ]
        );
        assert_eq!(
            compiled("scope = \"tenant\"\n[response]\nkeep = { items = \"/x\", owned = \"c\" }\n").unwrap_err(),
            ["3:8: keep needs owner = \"/pointer/in/each/item\", or owned = \"KIND\" with at = \"/pointer/to/the/id\""]
        );
        assert_eq!(
            compiled(
                "scope = \"tenant\"\n[response]\npassthrough = true\nlearn = { \"/id\" = \"c\" }\n"
            )
            .unwrap_err(),
            ["4:9: learn reads the answer, which passthrough = true forwards unread"]
        );
        assert_eq!(
            compiled("scope = \"shared\"\n[response]\npassthrough = true\n").unwrap_err(),
            ["2:1: response rules apply only to tenant routes"]
        );
    }
}
