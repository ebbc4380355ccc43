//! The JSON core the request rewriter and the response pass share: pointers with
//! wildcards and the cursors that walk them, span edits spliced into the original
//! bytes (so everything untouched is forwarded byte for byte), string quoting, the
//! depth limit, and reading one number without building a tree.

pub mod edit;
pub mod pointer;

use jiter::{Jiter, NumberInt, Peek};

pub use edit::{splice, Edit};
use pointer::{Pointer, Step};

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

/// The whole, non-negative number at `pointer` (no wildcards) in `body`: walks to it,
/// skipping what it passes, without building a tree (answers carry embeddings).
/// Anything else there, or nothing: `None`.
pub fn number_at(body: &[u8], pointer: &Pointer) -> Option<u64> {
    let mut j = Jiter::new(body);
    pointer
        .steps
        .iter()
        .try_for_each(|step| descend(&mut j, step))?;
    match j.next_int() {
        Ok(NumberInt::Int(n)) => u64::try_from(n).ok(),
        _ => None,
    }
}

/// Moves `j` from a value to its child at `step`; `None` when there is none.
fn descend(j: &mut Jiter, step: &Step) -> Option<()> {
    let Step::Key(name) = step else { return None };
    match j.peek().ok()? {
        Peek::Object => {
            let mut hit = j.known_object().ok()?.map(|k| k == name);
            loop {
                match hit {
                    Some(true) => return Some(()),
                    Some(false) => {
                        let value = j.peek().ok()?;
                        j.known_skip(value).ok()?;
                        hit = j.next_key().ok()?.map(|k| k == name);
                    }
                    None => return None,
                }
            }
        }
        Peek::Array => {
            let wanted: usize = name.parse().ok()?;
            let mut next = j.known_array().ok()?;
            for _ in 0..wanted {
                j.known_skip(next?).ok()?;
                next = j.array_step().ok()?;
            }
            next.map(|_| ())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_number_at_a_pointer_without_a_tree() {
        let at = |p: &str, body: &str| number_at(body.as_bytes(), &Pointer::parse(p).unwrap());
        let body = r#"{"data":[1.5,{"x":"y"}],"usage":{"prompt":3,"total_tokens":42}}"#;
        assert_eq!(at("/usage/total_tokens", body), Some(42));
        assert_eq!(at("/usage/prompt", body), Some(3));
        assert_eq!(at("/data/1/x", body), None, "a string is not a number");
        assert_eq!(at("/data/0", body), None, "nor is a fraction");
        assert_eq!(at("/data/2", body), None, "past the end");
        assert_eq!(at("/missing", body), None);
        assert_eq!(at("/n", r#"{"n":-4}"#), None, "nor a negative number");
        assert_eq!(at("/0/n", r#"[{"n":7}]"#), Some(7));
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }
}
