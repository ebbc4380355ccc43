//! Canonical request paths (SPEC 4). A path is split into percent-decoded segments;
//! anything that two components could read differently (dot segments, empty segments,
//! encoded separators, double encoding, `;` parameters) is refused here, so the route
//! that matched is the resource the upstream serves.

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("it does not start with /")]
    NotAbsolute,
    #[error("it has an empty segment (//)")]
    EmptySegment,
    #[error("it has a . or .. segment")]
    DotSegment,
    #[error("it has a backslash")]
    Backslash,
    #[error("it has a ; (path parameters are not allowed)")]
    Semicolon,
    #[error("it has an encoded /")]
    EncodedSlash,
    #[error("it has an encoded NUL or control character")]
    EncodedControl,
    #[error("it is double-encoded (%25)")]
    DoubleEncoded,
    #[error("it has a malformed percent-escape")]
    BadEscape,
    #[error("a segment does not decode to UTF-8")]
    NotUtf8,
}

/// A path after the checks: decoded segments plus whether it ended in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    pub segments: Vec<String>,
    pub trailing_slash: bool,
}

/// Bytes that stay literal when a decoded segment is forwarded: RFC 3986 unreserved
/// characters and the sub-delimiters that carry no meaning to common servers.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

impl CanonicalPath {
    pub fn parse(raw: &str) -> Result<Self, BadPath> {
        let rest = raw.strip_prefix('/').ok_or(BadPath::NotAbsolute)?;
        if rest.is_empty() {
            return Ok(Self {
                segments: Vec::new(),
                trailing_slash: false,
            });
        }
        let (body, trailing_slash) = match rest.strip_suffix('/') {
            Some(body) => (body, true),
            None => (rest, false),
        };
        let segments = body
            .split('/')
            .map(decode_segment)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            segments,
            trailing_slash,
        })
    }

    /// The path as forwarded: every segment re-encoded the one way tenantgate chose,
    /// so the upstream decodes exactly the values that were matched.
    pub fn encode(&self) -> String {
        let mut out =
            String::with_capacity(self.segments.iter().map(|s| s.len() + 1).sum::<usize>() + 1);
        for segment in &self.segments {
            out.push('/');
            out.extend(percent_encode(segment.as_bytes(), SEGMENT));
        }
        if self.trailing_slash || self.segments.is_empty() {
            out.push('/');
        }
        out
    }
}

pub fn encode_segment(value: &str) -> impl std::fmt::Display + '_ {
    percent_encode(value.as_bytes(), SEGMENT)
}

fn decode_segment(raw: &str) -> Result<String, BadPath> {
    if raw.is_empty() {
        return Err(BadPath::EmptySegment);
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(BadPath::BadEscape)?;
                let text = std::str::from_utf8(hex).map_err(|_| BadPath::BadEscape)?;
                let value = u8::from_str_radix(text, 16).map_err(|_| BadPath::BadEscape)?;
                i += 3;
                match value {
                    b'%' => return Err(BadPath::DoubleEncoded),
                    b'/' => return Err(BadPath::EncodedSlash),
                    b'\\' => return Err(BadPath::Backslash),
                    b';' => return Err(BadPath::Semicolon),
                    0..=0x1f | 0x7f => return Err(BadPath::EncodedControl),
                    other => other,
                }
            }
            b'\\' => return Err(BadPath::Backslash),
            b';' => return Err(BadPath::Semicolon),
            0..=0x1f | 0x7f => return Err(BadPath::EncodedControl),
            other => {
                i += 1;
                other
            }
        };
        decoded.push(byte);
    }
    let text = String::from_utf8(decoded).map_err(|_| BadPath::NotUtf8)?;
    if text == "." || text == ".." {
        return Err(BadPath::DotSegment);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(raw: &str) -> Vec<String> {
        CanonicalPath::parse(raw).unwrap().segments
    }

    #[test]
    fn decodes_and_reencodes_one_way() {
        assert_eq!(segs("/v1/%6Demories/a%20b"), ["v1", "memories", "a b"]);
        assert_eq!(
            CanonicalPath::parse("/v1/%6Demories/a%20b")
                .unwrap()
                .encode(),
            "/v1/memories/a%20b"
        );
        assert_eq!(CanonicalPath::parse("/").unwrap().encode(), "/");
        assert_eq!(CanonicalPath::parse("/a/").unwrap().encode(), "/a/");
        assert_eq!(
            CanonicalPath::parse("/caf%C3%A9").unwrap().encode(),
            "/caf%C3%A9"
        );
    }

    #[test]
    fn refuses_every_ambiguity() {
        let cases = [
            ("v1", BadPath::NotAbsolute),
            ("*", BadPath::NotAbsolute),
            ("/a//b", BadPath::EmptySegment),
            ("//a", BadPath::EmptySegment),
            ("/a/../b", BadPath::DotSegment),
            ("/a/./b", BadPath::DotSegment),
            ("/a/%2e%2E/b", BadPath::DotSegment),
            ("/a/.%2e", BadPath::DotSegment),
            ("/a/%2e", BadPath::DotSegment),
            ("/a%2Fb", BadPath::EncodedSlash),
            ("/a%2fb", BadPath::EncodedSlash),
            ("/a%5Cb", BadPath::Backslash),
            ("/a\\b", BadPath::Backslash),
            ("/a%00", BadPath::EncodedControl),
            ("/a%0a", BadPath::EncodedControl),
            ("/a;b=c", BadPath::Semicolon),
            ("/a%3Bb", BadPath::Semicolon),
            ("/a%252F", BadPath::DoubleEncoded),
            ("/a%2", BadPath::BadEscape),
            ("/a%zz", BadPath::BadEscape),
            ("/a%FF", BadPath::NotUtf8),
        ];
        for (raw, want) in cases {
            assert_eq!(CanonicalPath::parse(raw), Err(want), "{raw}");
        }
    }
}
