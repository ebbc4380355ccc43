//! `[verify]`: the canary scenarios `tenantgate verify` runs through the corridor, as
//! the config writes them and compiled. Canary tenant `a` writes something unique (the
//! run's marker), canary `b` and an unscoped caller probe for it; `verify/` runs them.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::json::pointer::Pointer;
use crate::spec::units::Dur;
use crate::spec::{at, key, Errors, KeyPath, Seg};

/// `[verify]` as the file writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// Run the scenarios inside the proxy this often (off when absent).
    pub interval: Option<Dur>,
    #[serde(default)]
    pub scenario: Vec<ScenarioSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    pub name: String,
    #[serde(default)]
    pub step: Vec<StepSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// `a`, `b` or `none` (no identity at all).
    #[serde(rename = "as")]
    pub who: String,
    /// `METHOD /path?query`, with `{marker}` and earlier captures.
    pub request: String,
    pub json: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Statuses that pass: numbers (`404`) or classes (`"2xx"`).
    #[serde(default)]
    pub expect: Vec<ExpectSpec>,
    /// Name -> RFC 6901 pointer into this step's JSON answer.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
    /// `present`, `absent` or `any`: whether the marker may be in the answer.
    pub marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ExpectSpec {
    Code(u16),
    Class(String),
}

#[derive(Debug, Clone, Default)]
pub struct VerifySettings {
    pub interval: Option<Duration>,
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    A,
    B,
    Nobody,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Present,
    Absent,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Code(u16),
    /// The hundreds digit: `2` for `2xx`.
    Class(u16),
}

#[derive(Debug, Clone)]
pub struct Step {
    pub who: Who,
    pub method: Method,
    pub target: String,
    pub json: Option<String>,
    pub headers: Vec<(HeaderName, String)>,
    /// Empty: any status.
    pub expect: Vec<Expect>,
    pub capture: Vec<(String, Pointer)>,
    pub marker: Marker,
}

impl Step {
    pub fn expects(&self, status: u16) -> bool {
        self.expect.is_empty()
            || self.expect.iter().any(|e| match *e {
                Expect::Code(code) => code == status,
                Expect::Class(class) => status / 100 == class,
            })
    }
}

/// A template's `{name}` placeholders: lower-case letters, digits and `_` between
/// braces, so the braces of a JSON body are left alone.
fn placeholders(text: &str) -> impl Iterator<Item = (usize, usize, &str)> {
    let bytes = text.as_bytes();
    (0..bytes.len()).filter_map(move |open| {
        if bytes[open] != b'{' {
            return None;
        }
        let len = bytes[open + 1..]
            .iter()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'_')
            .count();
        let close = open + 1 + len;
        (len > 0 && bytes.get(close) == Some(&b'}'))
            .then(|| (open, close + 1, &text[open + 1..close]))
    })
}

/// How a value is written where a placeholder stands.
#[derive(Debug, Clone, Copy)]
pub enum Escape {
    /// Percent-encoded (everything but unreserved characters), for paths and queries.
    Url,
    /// Escaped as inside a JSON string.
    Json,
    Raw,
}

const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `template` with every placeholder replaced by its value, escaped for its place.
pub fn render(template: &str, vars: &BTreeMap<String, String>, escape: Escape) -> String {
    let mut out = String::with_capacity(template.len());
    let mut from = 0;
    for (open, end, name) in placeholders(template) {
        let Some(value) = vars.get(name) else {
            continue;
        };
        out.push_str(&template[from..open]);
        match escape {
            Escape::Url => out.extend(utf8_percent_encode(value, COMPONENT)),
            Escape::Json => {
                let quoted = crate::json::quote(value);
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
            Escape::Raw => out.push_str(value),
        }
        from = end;
    }
    out.push_str(&template[from..]);
    out
}

pub fn compile(spec: &VerifySpec, errors: &mut Errors) -> VerifySettings {
    let base = vec![key("verify")];
    let interval = spec.interval.map(|d| d.0);
    if interval.is_some_and(|d| d < Duration::from_secs(1)) {
        errors.add(at(&base, &["interval"]), "interval must be at least 1s");
    }
    let mut names = Vec::new();
    let mut scenarios = Vec::new();
    for (i, scenario) in spec.scenario.iter().enumerate() {
        let path = [base.clone(), vec![key("scenario"), Seg::Index(i)]].concat();
        if scenario.name.is_empty() || names.contains(&scenario.name.as_str()) {
            errors.add(
                at(&path, &["name"]),
                "each scenario needs a name of its own",
            );
        }
        names.push(&scenario.name);
        if scenario.step.is_empty() {
            errors.add(at(&path, &["step"]), "a scenario needs at least one step");
        }
        let mut defined = vec!["marker".to_owned()];
        let steps = scenario
            .step
            .iter()
            .enumerate()
            .filter_map(|(j, step)| {
                let path = [path.clone(), vec![key("step"), Seg::Index(j)]].concat();
                compile_step(step, &path, &mut defined, errors)
            })
            .collect();
        scenarios.push(Scenario {
            name: scenario.name.clone(),
            steps,
        });
    }
    if interval.is_some() && scenarios.is_empty() {
        errors.add(
            at(&base, &["interval"]),
            "interval runs the [[verify.scenario]] entries, and there are none",
        );
    }
    VerifySettings {
        interval,
        scenarios,
    }
}

fn compile_step(
    spec: &StepSpec,
    path: &KeyPath,
    defined: &mut Vec<String>,
    errors: &mut Errors,
) -> Option<Step> {
    let start = errors.len();
    let who = match spec.who.as_str() {
        "a" => Who::A,
        "b" => Who::B,
        "none" => Who::Nobody,
        other => {
            errors.add(
                at(path, &["as"]),
                format!("as = {other:?}: use \"a\", \"b\" or \"none\""),
            );
            Who::Nobody
        }
    };
    let (method, target) = match spec.request.trim().split_once(' ') {
        Some((m, t)) if t.starts_with('/') => (Method::from_bytes(m.as_bytes()).ok(), t.trim()),
        _ => (None, ""),
    };
    if method.is_none() {
        errors.add(
            at(path, &["request"]),
            "write the request as \"METHOD /path?query\"",
        );
    }
    let mut headers = Vec::new();
    for (name, value) in &spec.headers {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) if HeaderValue::from_str(value).is_ok() => {
                headers.push((header, value.clone()))
            }
            _ => errors.add(at(path, &["headers", name]), "not a valid header"),
        }
    }
    let texts = [Some(target), spec.json.as_deref()]
        .into_iter()
        .flatten()
        .chain(spec.headers.values().map(String::as_str));
    for text in texts {
        for (_, _, name) in placeholders(text) {
            if !defined.iter().any(|d| d == name) {
                errors.add(
                    at(path, &["request"]),
                    format!("{{{name}}} is neither {{marker}} nor captured by an earlier step"),
                );
            }
        }
    }
    let expect = spec
        .expect
        .iter()
        .filter_map(|e| match e {
            ExpectSpec::Code(code @ 100..=599) => Some(Expect::Code(*code)),
            ExpectSpec::Class(class) => match class.as_bytes() {
                [d @ b'1'..=b'5', b'x', b'x'] => Some(Expect::Class(u16::from(d - b'0'))),
                _ => None,
            },
            ExpectSpec::Code(_) => None,
        })
        .collect::<Vec<_>>();
    if expect.len() != spec.expect.len() {
        errors.add(
            at(path, &["expect"]),
            "expect lists statuses (404) or classes (\"2xx\")",
        );
    }
    let expect = match (expect.is_empty(), who) {
        (true, Who::A) => vec![Expect::Class(2)],
        _ => expect,
    };
    let marker = match (spec.marker.as_deref(), who) {
        (Some("present"), _) => Marker::Present,
        (Some("absent"), _) | (None, Who::B | Who::Nobody) => Marker::Absent,
        (Some("any"), _) | (None, Who::A) => Marker::Any,
        (Some(other), _) => {
            errors.add(
                at(path, &["marker"]),
                format!("marker = {other:?}: use present, absent or any"),
            );
            Marker::Any
        }
    };
    let mut capture = Vec::new();
    for (name, pointer) in &spec.capture {
        let valid = !name.is_empty()
            && name != "marker"
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        match Pointer::parse(pointer) {
            Ok(p) if valid && !p.has_wildcard() => capture.push((name.clone(), p)),
            _ => errors.add(
                at(path, &["capture", name]),
                "capture names ([a-z0-9_]) a JSON pointer without wildcards",
            ),
        }
        defined.push(name.clone());
    }
    (errors.len() == start).then(|| Step {
        who,
        method: method.unwrap_or_default(),
        target: target.to_owned(),
        json: spec.json.clone(),
        headers,
        expect,
        capture,
        marker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        verify: VerifySpec,
    }

    fn compiled(toml: &str) -> Result<VerifySettings, Vec<String>> {
        crate::spec::compile_str(toml, |f: &File, errors| Some(compile(&f.verify, errors)))
    }

    #[test]
    fn steps_default_by_caller_and_bad_ones_are_refused_at_their_key() {
        let settings = compiled(
            r#"[verify]
[[verify.scenario]]
name = "s"
[[verify.scenario.step]]
as = "a"
request = "POST /notes"
json = '{"text": "{marker}"}'
capture = { id = "/id" }
[[verify.scenario.step]]
as = "b"
request = "GET /notes/{id}"
expect = [404, "2xx"]
"#,
        )
        .unwrap();
        let steps = &settings.scenarios[0].steps;
        assert_eq!(
            (steps[0].expect.as_slice(), steps[0].marker),
            (&[Expect::Class(2)][..], Marker::Any)
        );
        assert_eq!(steps[1].marker, Marker::Absent);
        assert!(steps[1].expects(404) && steps[1].expects(204) && !steps[1].expects(403));

        let errors = compiled(
            r#"[verify]
interval = "10ms"
[[verify.scenario]]
name = "s"
[[verify.scenario.step]]
as = "c"
request = "GET /notes/{nope}"
expect = ["2yy", 700]
capture = { marker = "/id", "Bad" = "/x", w = "/*" }
marker = "maybe"
[[verify.scenario]]
name = "s"
"#,
        )
        .unwrap_err()
        .join("\n");
        for expected in [
            "interval must be at least 1s",
            "as = \"c\": use \"a\", \"b\" or \"none\"",
            "{nope} is neither {marker} nor captured by an earlier step",
            "expect lists statuses",
            "capture names ([a-z0-9_]) a JSON pointer without wildcards",
            "marker = \"maybe\"",
            "each scenario needs a name of its own",
            "a scenario needs at least one step",
        ] {
            assert!(errors.contains(expected), "{expected} in:\n{errors}");
        }
    }

    #[test]
    fn placeholders_are_replaced_and_json_braces_kept() {
        let vars = BTreeMap::from([("marker".to_owned(), "m\"1 /".to_owned())]);
        assert_eq!(
            render(r#"{"text": "{marker}", "x": {}}"#, &vars, Escape::Json),
            r#"{"text": "m\"1 /", "x": {}}"#
        );
        assert_eq!(
            render("/v1/{marker}?q={marker}", &vars, Escape::Url),
            "/v1/m%221%20%2F?q=m%221%20%2F"
        );
        assert_eq!(render("{unknown}", &vars, Escape::Raw), "{unknown}");
    }
}
