//! Reading a config: parse the TOML, take `${VAR}` from the environment, deserialize,
//! validate. Every error, whichever step finds it, carries a key path that is turned
//! into `file:line:col` against the original text, so `${VAR}` never shifts a position.

use std::ops::Range;
use std::path::Path;

use sha2::{Digest, Sha256};
use toml_edit::ImDocument;

use super::{compile, model, Overrides, Snapshot};
use crate::spec::locate::{line_col, locate, Target};
use crate::spec::{KeyPath, Seg};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.origin, self.line, self.col, self.message
        )
    }
}

/// All the errors one attempt at loading found, each on its own line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub fn load_file(path: &Path, overrides: &Overrides, env: Env) -> Result<Snapshot, ConfigErrors> {
    let origin = path.display().to_string();
    let raw = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            origin: origin.clone(),
            line: 1,
            col: 1,
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    load_str(&raw, &origin, overrides, env)
}

pub fn load_str(
    raw: &str,
    origin: &str,
    overrides: &Overrides,
    env: Env,
) -> Result<Snapshot, ConfigErrors> {
    let source = Source::parse(raw, origin)?;
    let written: toml::Value =
        toml::from_str(raw).map_err(|e| source.error_at(e.span(), e.message()))?;
    let mut value = written.clone();
    interpolate(&mut value, &mut Vec::new(), env)
        .map_err(|(path, msg)| source.error(&path, msg))?;

    let mut file: model::File = serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = serde_path(e.path());
        let message = e.inner().message().to_owned();
        match unknown_field(&message) {
            Some(field) => {
                if path.last() != Some(&Seg::Key(field.clone())) {
                    path.push(Seg::Key(field));
                }
                source.error_at(locate(source.doc.as_table(), &path, Target::Key), message)
            }
            None => source.error(&path, message),
        }
    })?;
    overrides.apply(&mut file);

    let compiled = compile::compile(&file).map_err(|errors| {
        let mut found: Vec<ConfigError> = errors
            .into_iter()
            .flat_map(|(path, msg)| source.error(&path, msg).0)
            .collect();
        found.sort_by_key(|e| (e.line, e.col));
        ConfigErrors(found)
    })?;
    Ok(Snapshot {
        config: compiled,
        generation: 0,
        sha256: hex::encode(Sha256::digest(raw.as_bytes())),
        loaded_at: std::time::SystemTime::now(),
        origin: origin.to_owned(),
        redacted: redact(&written),
        route_metrics: Vec::new(),
    })
}

struct Source<'a> {
    raw: &'a str,
    origin: &'a str,
    doc: ImDocument<&'a str>,
}

impl<'a> Source<'a> {
    fn parse(raw: &'a str, origin: &'a str) -> Result<Self, ConfigErrors> {
        match ImDocument::parse(raw) {
            Ok(doc) => Ok(Self { raw, origin, doc }),
            Err(e) => {
                let (line, col) = line_col(raw, e.span().map_or(0, |s| s.start));
                Err(ConfigErrors(vec![ConfigError {
                    origin: origin.to_owned(),
                    line,
                    col,
                    message: one_line(e.message()),
                }]))
            }
        }
    }

    fn error(&self, path: &[Seg], message: impl Into<String>) -> ConfigErrors {
        self.error_at(locate(self.doc.as_table(), path, Target::Value), message)
    }

    fn error_at(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigErrors {
        let (line, col) = line_col(self.raw, span.map_or(0, |s| s.start));
        ConfigErrors(vec![ConfigError {
            origin: self.origin.to_owned(),
            line,
            col,
            message: message.into(),
        }])
    }
}

fn one_line(message: &str) -> String {
    message
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

fn serde_path(path: &serde_path_to_error::Path) -> KeyPath {
    path.iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            _ => None,
        })
        .collect()
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// Replaces `${VAR}` in every string value; `$${` is a literal `${`. An undefined
/// variable is an error, never an empty string: a missing secret must not become
/// an empty (and so guessable) credential.
fn interpolate(
    value: &mut toml::Value,
    path: &mut KeyPath,
    env: Env,
) -> Result<(), (KeyPath, String)> {
    match value {
        toml::Value::String(s) if s.contains('$') => {
            *s = expand(s, env).map_err(|msg| (path.clone(), msg))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                interpolate(item, path, env)?;
                path.pop();
            }
        }
        toml::Value::Table(table) => {
            for (k, item) in table.iter_mut() {
                path.push(Seg::Key(k.clone()));
                interpolate(item, path, env)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(text: &str, env: Env) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| {
                format!("unterminated ${{ in {text:?}; write ${{NAME}}, or $${{ for a literal")
            })?;
            let name = &after[..end];
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "${{{name}}} is not a valid environment variable name"
                ));
            }
            let found = env(name).ok_or_else(|| {
                format!("environment variable {name} is not set (referenced as ${{{name}}})")
            })?;
            out.push_str(&found);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

const SECRET_KEYS: &[&str] = &["token", "privileged_token", "hs256_secret", "client_key"];
const SECRET_TABLES: &[&str] = &["set_headers", "upstream_headers"];

/// The file as written (before `${VAR}`), with every secret-bearing value hidden.
fn redact(value: &toml::Value) -> serde_json::Value {
    fn walk(value: &toml::Value, hide: bool) -> serde_json::Value {
        if hide && !matches!(value, toml::Value::Table(_)) {
            return serde_json::Value::String("[redacted]".to_owned());
        }
        match value {
            toml::Value::String(s) => serde_json::Value::String(s.clone()),
            toml::Value::Integer(i) => serde_json::Value::from(*i),
            toml::Value::Float(f) => serde_json::Value::from(*f),
            toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
            toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
            toml::Value::Array(items) => items.iter().map(|i| walk(i, false)).collect(),
            toml::Value::Table(table) => table
                .iter()
                .map(|(k, v)| {
                    let secret = hide
                        || SECRET_KEYS.contains(&k.as_str())
                        || SECRET_TABLES.contains(&k.as_str());
                    // A url may carry a password (`[store] url`): shown without it.
                    if let (false, "url", toml::Value::String(url)) = (secret, k.as_str(), v) {
                        let shown = crate::store::settings::redact_url(url);
                        return (k.clone(), serde_json::Value::String(shown));
                    }
                    (k.clone(), walk(v, secret))
                })
                .collect(),
        }
    }
    walk(value, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "s3cret".to_owned())
    }

    #[test]
    fn expands_defined_variables_and_escapes() {
        assert_eq!(expand("Bearer ${KEY}", &env).unwrap(), "Bearer s3cret");
        assert_eq!(expand("$${KEY} costs $5", &env).unwrap(), "${KEY} costs $5");
    }

    #[test]
    fn undefined_variable_is_an_error_not_empty() {
        let err = expand("Bearer ${MISSING}", &env).unwrap_err();
        assert!(err.contains("MISSING is not set"), "{err}");
        assert!(expand("${unterminated", &env).is_err());
        assert!(expand("${1BAD}", &env).is_err());
    }
}
