//! `[route.response]` (SPEC 4.2), compiled into [`RouteResponse`]: `unwrap` defaults
//! to true on tenant routes; the ownership forms (`learn`, `forget`, `keep.owned`) are
//! refused until ownership exists.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::json::{Keep, ResponseRules};
use super::RouteResponse;
use crate::json::pointer::Pointer;
use crate::route::Scope;
use crate::spec::{at, Errors, KeyPath, Seg};

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
        || !spec.unprepend.is_empty()
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
    if spec.learn.is_some() || spec.forget.is_some() {
        let field = if spec.learn.is_some() {
            "learn"
        } else {
            "forget"
        };
        errors.add(
            at(base, &["response", field]),
            "ownership of opaque ids (learn, forget) is not supported by this version yet",
        );
    }
    let keep = spec.keep.as_ref().and_then(|keep| {
        let path = at(base, &["response", "keep"]);
        if keep.owned.is_some() || keep.at.is_some() {
            errors.add(path, "keep's owned form needs ownership, which this version does not support yet; use owner");
            return None;
        }
        let Some(owner) = &keep.owner else {
            errors.add(path, "keep needs owner = \"/pointer/in/each/item\"");
            return None;
        };
        match (Pointer::parse(&keep.items), Pointer::parse(owner)) {
            (Ok(items), Ok(owner)) => Some(Keep { items, owner }),
            (Err(e), _) | (_, Err(e)) => {
                errors.add(path, e);
                None
            }
        }
    });
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
    RouteResponse {
        rules: ResponseRules {
            unwrap: spec.unwrap.unwrap_or(true),
            keep,
            unprepend,
        },
        passthrough: spec.passthrough,
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
    fn refuses_each_bad_rule_at_its_key() {
        let errors = compiled(
            "scope = \"tenant\"\n[response]\nkeep = { items = \"/x\" }\nunprepend = [\"/ok\", \"bad\"]\nlearn = { \"/id\" = \"collection\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "5:9: ownership of opaque ids (learn, forget) is not supported by this version yet",
                "3:8: keep needs owner = \"/pointer/in/each/item\"",
                "4:21: JSON pointer \"bad\" must start with /",
            ]
        );
        assert_eq!(
            compiled("scope = \"tenant\"\n[response]\nkeep = { items = \"/x\", owned = \"c\" }\n").unwrap_err(),
            ["3:8: keep's owned form needs ownership, which this version does not support yet; use owner"]
        );
        assert_eq!(
            compiled("scope = \"shared\"\n[response]\npassthrough = true\n").unwrap_err(),
            ["2:1: response rules apply only to tenant routes"]
        );
    }
}
