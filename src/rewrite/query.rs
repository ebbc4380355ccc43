//! Query parameters: names and values are percent-decoded (and `+` read as a space, as
//! form-decoding backends do) before they are compared, so `user%5Fid` is `user_id`.
//! Parameters no rule names are forwarded as their raw text.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{Mode, Target};
use crate::refusal::Refusal;

/// Everything but unreserved characters is escaped in a rewritten parameter.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

struct Param<'q> {
    raw: &'q str,
    name: Option<String>,
    value: Option<String>,
}

fn decode(text: &str) -> Option<String> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// How loosely some backend may read a parameter name: PHP drops leading spaces and
/// turns `.` and ` ` into `_`, qs-style parsers read `a[]` and `a[x]` as `a`, others
/// match case-insensitively or drop control characters.
fn loosely(name: &str) -> String {
    let name = name.split('[').next().unwrap_or_default().trim_start();
    name.chars()
        .map(|c| if c == '.' || c == ' ' { '_' } else { c })
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Refuses a query another common parser could read differently from this one, for
/// the parameters the route rewrites: a look-alike of a rewritten name, or a `;`,
/// which some frameworks take as a separator.
fn refuse_differentials(query: &str, rules: &[(String, Mode)]) -> Result<(), Refusal> {
    if query.contains(';') {
        return Err(Refusal::BadRequest(
            "the query contains `;`, which some backends read as a separator; send it as %3B"
                .to_owned(),
        ));
    }
    let rewritten: Vec<(&str, String)> = rules
        .iter()
        .map(|(n, _)| (n.as_str(), loosely(n)))
        .collect();
    for raw in query.split('&').filter(|p| !p.is_empty()) {
        let raw_name = raw.split_once('=').map_or(raw, |(n, _)| n);
        let name = percent_decode_str(&raw_name.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        let seen = loosely(&name);
        if let Some((rule, _)) = rewritten.iter().find(|(r, l)| *r != name && *l == seen) {
            return Err(Refusal::BadRequest(format!(
                "the query parameter {name:?} could be read as {rule} by the backend; send {rule} exactly as spelled, once"
            )));
        }
    }
    Ok(())
}

pub fn rewrite(
    query: Option<&str>,
    rules: &[(String, Mode)],
    target: &Target,
    owned: &mut super::OwnedIds,
) -> Result<Option<String>, Refusal> {
    if !rules.is_empty() {
        refuse_differentials(query.unwrap_or_default(), rules)?;
    }
    let mut params: Vec<Param> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|raw| {
            let (name, value) = raw.split_once('=').unwrap_or((raw, ""));
            Param {
                raw,
                name: decode(name),
                value: decode(value),
            }
        })
        .collect();
    let mut replaced: Vec<Option<String>> = vec![None; params.len()];
    let mut appended = Vec::new();
    for (name, mode) in rules {
        let found: Vec<usize> = (0..params.len())
            .filter(|&i| params[i].name.as_deref() == Some(name.as_str()))
            .collect();
        let index = match found.as_slice() {
            [] => {
                match mode {
                    Mode::Bind | Mode::Set | Mode::PrependJoined(_) => {
                        appended.push(pair(name, target.root))
                    }
                    Mode::PrefixRequired => {
                        return Err(Refusal::BadRequest(format!(
                            "the query must carry {name}; without it the call would reach every user's data"
                        )))
                    }
                    _ => {}
                }
                continue;
            }
            [one] => *one,
            _ => {
                return Err(Refusal::BadRequest(format!(
                    "the query parameter {name} appears more than once (counting every spelling); send it once"
                )))
            }
        };
        let value = params[index].value.take().ok_or_else(|| {
            Refusal::BadRequest(format!("the query parameter {name} is not valid UTF-8"))
        })?;
        let rewritten = match mode {
            Mode::Deny => {
                return Err(Refusal::BadRequest(format!(
                    "the query may not carry {name}"
                )))
            }
            Mode::Bind if !target.is_self(&value) => return Err(Refusal::TenantMismatch),
            Mode::Bind | Mode::Set => target.root.to_owned(),
            Mode::Prefix | Mode::PrefixRequired => target.prefixed(&value),
            Mode::PrependJoined(delimiter) => target.joined(delimiter, &value),
            Mode::Add(n) => super::added(&value, *n, &format_args!("the query parameter {name}"))?,
            Mode::Prepend => {
                return Err(Refusal::BadRequest(format!(
                    "{name} cannot be prepended in a query"
                )))
            }
            Mode::Owned(kind) => {
                // Forwarded as sent; the pipeline checks the caller owns it.
                owned.push((kind.to_string(), value));
                continue;
            }
        };
        replaced[index] = Some(pair(name, &rewritten));
    }
    if replaced.iter().all(Option::is_none) && appended.is_empty() {
        return Ok(None);
    }
    let mut parts: Vec<String> = params
        .drain(..)
        .zip(replaced)
        .map(|(param, new)| new.unwrap_or_else(|| param.raw.to_owned()))
        .collect();
    parts.extend(appended);
    Ok(Some(parts.join("&")))
}

fn pair(name: &str, value: &str) -> String {
    format!(
        "{}={}",
        utf8_percent_encode(name, COMPONENT),
        utf8_percent_encode(value, COMPONENT)
    )
}
