//! The JSON core the request rewriter and the response pass share: pointers with
//! wildcards and the cursors that walk them, span edits spliced into the original
//! bytes (so everything untouched is forwarded byte for byte), string quoting, the
//! depth limit, and reading one number without building a tree (number.rs).

pub mod edit;
pub mod number;
pub mod pointer;

pub use edit::{splice, Edit, Text, Work};

/// Deeper documents are refused: both walks recurse once per level.
pub const MAX_DEPTH: usize = 128;

/// `value` as a JSON string literal, quotes and escapes included.
pub fn quote(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// True for `application/json` and `application/*+json`, parameters aside.
pub fn is_media_type(value: &str) -> bool {
    // Compared in place: lowercasing a copy was two allocations on every request.
    let essence = value.split(';').next().unwrap_or("").trim().as_bytes();
    let starts = |prefix: &[u8]| {
        essence
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    let ends = |suffix: &[u8]| {
        essence.len() >= suffix.len()
            && essence[essence.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    essence.eq_ignore_ascii_case(b"application/json") || (starts(b"application/") && ends(b"+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }

    #[test]
    fn json_media_types_match_whatever_their_case() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/ld+JSON ",
        ] {
            assert!(is_media_type(yes), "{yes}");
        }
        for no in [
            "",
            "text/json",
            "application/jsonx",
            "application/json+xml",
            "application/notjson",
            "+json",
            "application/",
        ] {
            assert!(!is_media_type(no), "{no}");
        }
    }
}
