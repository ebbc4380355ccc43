//! `Location`, `Content-Location` and `Link` carry ids inside URLs, so they are checked token by token
//! (split at URL delimiters, percent-decoded) rather than as whole strings.

use http::header::{HeaderMap, HeaderValue, CONTENT_LOCATION, LINK, LOCATION};
use percent_encoding::percent_decode_str;

use super::Recipient;
use crate::path::encode_segment;

const DELIMITERS: &[char] = &['/', '?', '&', '=', '#', '<', '>', ';', ',', '"', '\'', ' '];

/// Guards and unwraps the URL-bearing headers; `Err` with the number of other
/// tenants' ids found.
pub fn process(headers: &mut HeaderMap, scope: &Recipient, unwrap: bool) -> Result<(), usize> {
    for name in [LOCATION, CONTENT_LOCATION, LINK] {
        let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
        if values.is_empty() {
            continue;
        }
        let mut rewritten = Vec::with_capacity(values.len());
        for value in values {
            let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
            let (out, leaks) = rewrite_url(&text, scope, unwrap);
            if leaks > 0 {
                return Err(leaks);
            }
            rewritten.push(HeaderValue::from_str(&out).unwrap_or(value));
        }
        headers.remove(&name);
        for value in rewritten {
            headers.append(name.clone(), value);
        }
    }
    Ok(())
}

fn rewrite_url(text: &str, scope: &Recipient, unwrap: bool) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut leaks = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(DELIMITERS).unwrap_or(rest.len());
        let (token, after) = rest.split_at(end);
        if token.is_empty() {
            let delimiter_len = after.chars().next().map_or(0, char::len_utf8);
            out.push_str(&after[..delimiter_len]);
            rest = &after[delimiter_len..];
            continue;
        }
        let decoded = percent_decode_str(token).decode_utf8_lossy();
        match scope.own(&decoded) {
            Some(Some(plain)) if unwrap => out.push_str(&encode_segment(plain).to_string()),
            Some(_) => out.push_str(token),
            None => {
                if scope.guard && scope.finding(&decoded) {
                    leaks += 1;
                }
                out.push_str(token);
            }
        }
        rest = after;
    }
    (out, leaks)
}
