//! A route's `units` (SPEC 4), compiled into [`RouteUnits`].

use http::HeaderName;
use serde::Deserialize;

use super::RouteUnits;
use crate::json::number::NumberPath;
use crate::route::Scope;
use crate::spec::{at, Errors, KeyPath};

/// A route's metered units per 2xx: a number, or read from the response. Each table
/// form refuses keys of the other, so `{ header = .., json = .. }` is an error rather
/// than a silent choice.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "units: a number, { header = \"Name\" } or { json = \"/pointer\" }"
)]
pub enum UnitsSpec {
    Fixed(u64),
    Header(HeaderUnits),
    Json(JsonUnits),
}

impl UnitsSpec {
    /// The units a request is taken to be worth before its answer says: the fixed
    /// number, else 1, so that requests in flight near a quota count against it.
    pub fn held(&self) -> u64 {
        match self {
            Self::Fixed(n) => *n,
            Self::Header(_) | Self::Json(_) => 1,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderUnits {
    pub header: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonUnits {
    pub json: String,
}

/// Compiles one route's `units`; `buffered` says whether the response stage reads the
/// route's answer (a tenant route without passthrough), which `units.json` needs.
pub fn compile_route(
    spec: Option<&UnitsSpec>,
    scope: Scope,
    buffered: bool,
    base: &KeyPath,
    errors: &mut Errors,
) -> RouteUnits {
    let path = || at(base, &["units"]);
    match spec {
        None => RouteUnits::default(),
        Some(UnitsSpec::Fixed(n)) => RouteUnits::Fixed(*n),
        Some(UnitsSpec::Header(HeaderUnits { header })) => {
            match HeaderName::try_from(header.as_str()) {
                Ok(name) => RouteUnits::Header(name),
                Err(_) => {
                    errors.add(path(), format!("{header:?} is not a header name"));
                    RouteUnits::default()
                }
            }
        }
        Some(UnitsSpec::Json(JsonUnits { json })) => {
            let pointer = NumberPath::parse(json);
            if pointer.is_none() {
                errors.add(path(), "units.json must be a JSON pointer without wildcards, like \"/usage/total_tokens\"");
            }
            if scope != Scope::Tenant || !buffered {
                errors.add(
                    path(),
                    "units.json reads the answer's body, which only tenant routes without passthrough buffer",
                );
            }
            pointer.map_or_else(RouteUnits::default, RouteUnits::Json)
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
        units: Option<UnitsSpec>,
        #[serde(default)]
        passthrough: bool,
    }

    fn compiled(toml: &str) -> Result<RouteUnits, Vec<String>> {
        compile_str(toml, |r: &Route, errors| {
            let units = r.units.as_ref();
            Some(compile_route(
                units,
                r.scope,
                !r.passthrough,
                &Vec::new(),
                errors,
            ))
        })
    }

    #[test]
    fn compiles_each_form() {
        assert_eq!(
            compiled("scope = \"shared\"").unwrap(),
            RouteUnits::Fixed(1)
        );
        assert_eq!(
            compiled("scope = \"shared\"\nunits = 3").unwrap(),
            RouteUnits::Fixed(3)
        );
        assert_eq!(
            compiled("scope = \"shared\"\nunits = { header = \"X-Units\" }").unwrap(),
            RouteUnits::Header(HeaderName::from_static("x-units"))
        );
        let json = compiled("scope = \"tenant\"\nunits = { json = \"/usage/total\" }").unwrap();
        assert_eq!(
            json.json_pointer().map(|p| p.text.as_str()),
            Some("/usage/total")
        );
    }

    #[test]
    fn a_mixed_form_is_refused() {
        let errors = compiled("scope = \"tenant\"\nunits = { header = \"X-U\", json = \"/u\" }")
            .unwrap_err();
        assert!(
            errors[0].contains("units: a number, { header"),
            "{errors:?}"
        );
    }

    #[test]
    fn refuses_each_bad_form_at_its_key() {
        assert_eq!(
            compiled("scope = \"shared\"\nunits = { header = \"a b\" }").unwrap_err(),
            ["2:9: \"a b\" is not a header name"]
        );
        assert_eq!(
            compiled("scope = \"tenant\"\npassthrough = true\nunits = { json = \"/a/*\" }").unwrap_err(),
            [
                "3:9: units.json must be a JSON pointer without wildcards, like \"/usage/total_tokens\"",
                "3:9: units.json reads the answer's body, which only tenant routes without passthrough buffer",
            ]
        );
    }
}
