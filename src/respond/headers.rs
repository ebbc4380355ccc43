//! Response headers carry ids inside URLs (`Location`, `Link`), cookies and custom
//! fields (`X-Thread-Id: u_bob__t1`), so every value is checked token by token (split
//! at URL and cookie delimiters, percent-decoded) rather than as a whole string.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::percent_decode_str;

use super::Recipient;
use crate::path::encode_segment;

const DELIMITERS: &[char] = &['/', '?', '&', '=', '#', '<', '>', ';', ',', '"', '\'', ' '];

/// Guards and unwraps every response header value (`Set-Cookie`, `X-Thread-Id` and
/// the URL-bearing ones alike); `Err` with the number of other tenants' ids found.
pub fn process(headers: &mut HeaderMap, scope: &Recipient, unwrap: bool) -> Result<(), usize> {
    let mut rewritten: Vec<(HeaderName, Vec<HeaderValue>)> = Vec::new();
    for name in headers.keys() {
        let mut values = Vec::new();
        let mut changed = false;
        for value in headers.get_all(name) {
            if !scope.namespaces.may_occur_in(value.as_bytes()) {
                values.push(value.clone());
                continue;
            }
            let text = String::from_utf8_lossy(value.as_bytes());
            let (out, leaks) = rewrite_url(&text, scope, unwrap);
            if leaks > 0 {
                return Err(leaks);
            }
            if out == text {
                values.push(value.clone());
            } else {
                changed = true;
                values.push(HeaderValue::from_str(&out).unwrap_or_else(|_| value.clone()));
            }
        }
        if changed {
            rewritten.push((name.clone(), values));
        }
    }
    for (name, values) in rewritten {
        headers.remove(&name);
        for value in values {
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
