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
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }
}
