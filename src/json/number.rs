//! Reading one whole number out of a JSON answer (the metered units of a route), with
//! exactly the semantics of `serde_json::Value::pointer` + `as_u64` (RFC 6901 tokens,
//! the last of duplicate keys wins, serde_json's depth limit), but without building a
//! tree: answers carry embeddings, and everything off the path is skipped.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A `units = { json = "/usage/total_tokens" }` pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPath {
    pub text: String,
    tokens: Vec<String>,
}

impl NumberPath {
    /// `None` unless `text` starts with `/` and has no wildcard.
    pub fn parse(text: &str) -> Option<Self> {
        if !text.starts_with('/') || text.contains('*') {
            return None;
        }
        let tokens = text[1..]
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        Some(Self {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The whole, non-negative number at this path in `body`; 0 for anything else,
    /// nothing there, or a body serde_json would not parse.
    pub fn read(&self, body: &[u8]) -> u64 {
        let mut de = serde_json::Deserializer::from_slice(body);
        match Seek(&self.tokens).deserialize(&mut de) {
            Ok(found) if de.end().is_ok() => found.unwrap_or(0),
            _ => 0,
        }
    }
}

/// Consumes one value; `Some(n)` when the rest of the path leads to the number `n`.
/// Values off the path are consumed the same way (not as `IgnoredAny`, which
/// serde_json skips without its depth limit), so the limit holds everywhere.
struct Seek<'p>(&'p [String]);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Option<u64>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Option<u64>, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_u64<E>(self, v: u64) -> Result<Option<u64>, E> {
        Ok(self.0.is_empty().then_some(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Option<u64>, E> {
        Ok(u64::try_from(v).ok().filter(|_| self.0.is_empty()))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Option<u64>, E> {
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<u64>, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Option<u64>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<u64>, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<u64>, A::Error> {
        let (wanted, rest) = match self.0.split_first() {
            Some((first, rest)) => (Some(first.as_str()), rest),
            None => (None, self.0),
        };
        let mut found = None;
        while let Some(hit) = map.next_key_seed(KeyIs(wanted))? {
            if hit {
                found = map.next_value_seed(Seek(rest))?;
            } else {
                map.next_value_seed(Seek(&[]))?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<u64>, A::Error> {
        let wanted = self.0.first().and_then(|t| index(t));
        let rest = self.0.get(1..).unwrap_or_default();
        let mut found = None;
        let mut i = 0;
        loop {
            if Some(i) == wanted {
                match seq.next_element_seed(Seek(rest))? {
                    Some(value) => found = value,
                    None => break,
                }
            } else if seq.next_element_seed(Seek(&[]))?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }
}

/// An RFC 6901 array index, as serde_json reads one: no sign, no leading zero.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// Compares an object key with the path's next token without copying it.
struct KeyIs<'p>(Option<&'p str>);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(self.0 == Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tree-building reader this replaces answered.
    fn model(body: &str, pointer: &str) -> u64 {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.pointer(pointer).and_then(serde_json::Value::as_u64))
            .unwrap_or(0)
    }

    #[test]
    fn reads_as_serde_json_pointer_and_as_u64_would() {
        let deep = format!(
            "{{\"usage\":{{\"total\":5}},\"d\":{}{}}}",
            "[".repeat(127),
            "]".repeat(127)
        );
        let cases = [
            (
                r#"{"data":[1.5,{"x":"y"}],"usage":{"prompt":3,"total_tokens":42}}"#,
                "/usage/total_tokens",
            ),
            (r#"{"data":[1.5,{"x":"y"}]}"#, "/data/1/x"),
            (r#"{"data":[1.5,{"x":"y"}]}"#, "/data/0"),
            (r#"{"data":[1.5,{"x":"y"}]}"#, "/data/2"),
            (r#"{"n":-4}"#, "/n"),
            (r#"[{"n":7}]"#, "/0/n"),
            (r#"{"total":null,"total":1}"#, "/total"),
            (r#"{"total":1,"total":"alice"}"#, "/total"),
            (r#"{"usage":{"total":9223372036854775808}}"#, "/usage/total"),
            (
                r#"{"usage":{"total":18446744073709551616}}"#,
                "/usage/total",
            ),
            (r#"{"a":[0,7]}"#, "/a/01"),
            (r#"{"a":[0,7]}"#, "/a/+1"),
            (r#"{"a":[0,7]}"#, "/a/1"),
            (r#"{"a/b":{"~":3}}"#, "/a~1b/~0"),
            (r#"{"a~2":4}"#, "/a~2"),
            (r#"{"n":2} x"#, "/n"),
            (r#"{"n":2e0}"#, "/n"),
            (r#"{"n":{"m":1}}"#, "/n"),
            (&deep, "/usage/total"),
        ];
        for (body, pointer) in cases {
            let path = NumberPath::parse(pointer).unwrap();
            assert_eq!(
                path.read(body.as_bytes()),
                model(body, pointer),
                "{body} at {pointer}"
            );
        }
        assert_eq!(
            NumberPath::parse("/usage/total_tokens")
                .unwrap()
                .read(cases[0].0.as_bytes()),
            42
        );
        assert!(NumberPath::parse("usage").is_none() && NumberPath::parse("/a*b").is_none());
    }
}
