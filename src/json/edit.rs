//! Span edits: each replaces the bytes `at..end` of the original document with `text`
//! (an empty text deletes, an empty span inserts). The document is rebuilt once, in a
//! single pass over the edits sorted by position, so the cost is linear in its size.
//! A prefix inserted before many ids shares one text, so an edit allocates nothing.

use std::sync::Arc;

use crate::budget::Held;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Owned(String),
    Shared(Arc<str>),
}

impl Text {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Owned(s) => s.as_bytes(),
            Self::Shared(s) => s.as_bytes(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub at: usize,
    pub end: usize,
    pub text: Text,
}

impl Edit {
    pub fn replace(at: usize, end: usize, text: String) -> Self {
        Self {
            at,
            end,
            text: Text::Owned(text),
        }
    }

    pub fn delete(at: usize, end: usize) -> Self {
        Self::replace(at, end, String::new())
    }

    pub fn insert(at: usize, text: &Arc<str>) -> Self {
        Self {
            at,
            end: at,
            text: Text::Shared(text.clone()),
        }
    }
}

/// `data` with `edits` applied. Of edits that overlap (two rules on one value), the
/// first in document order wins, and exact repeats count once; an insertion may stand
/// at the start or end of another edit's span.
pub fn splice(data: &[u8], edits: &mut [Edit]) -> Vec<u8> {
    edits.sort_by_key(|e| (e.at, e.end));
    let added: usize = edits.iter().map(|e| e.text.as_bytes().len()).sum();
    let mut out = Vec::with_capacity(data.len() + added);
    let mut copied = 0;
    let mut last: Option<&Edit> = None;
    for edit in edits.iter() {
        if edit.at < copied || last == Some(edit) {
            continue;
        }
        out.extend_from_slice(&data[copied..edit.at]);
        out.extend_from_slice(edit.text.as_bytes());
        copied = edit.end;
        last = Some(edit);
    }
    out.extend_from_slice(&data[copied..]);
    out
}

/// What a pass's edits hold, taken from the buffer budget as they are made, so the
/// working memory of a large rewrite is bounded like the bodies themselves.
pub struct Work<'a> {
    held: Option<&'a mut Held>,
    counted: usize,
}

/// Edits taken from the budget at once.
const EDITS_PER_CLAIM: usize = 4096;

impl<'a> Work<'a> {
    pub fn within(held: Option<&'a mut Held>) -> Self {
        Self { held, counted: 0 }
    }

    /// Accounts for the edits made so far; `false` when the budget has no room.
    pub fn track(&mut self, edits: usize) -> bool {
        if edits < self.counted + EDITS_PER_CLAIM {
            return true;
        }
        let more = edits - self.counted;
        self.counted = edits;
        self.take(more * std::mem::size_of::<Edit>())
    }

    /// Takes `bytes` more (the spliced output, before it is built).
    pub fn take(&mut self, bytes: usize) -> bool {
        self.held.as_mut().is_none_or(|held| held.grow(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_deletes_and_inserts_in_one_pass() {
        let mut edits = vec![
            Edit::delete(6, 12),
            Edit::replace(12, 12, r#","c":3"#.into()),
            Edit::replace(1, 4, r#""x""#.into()),
        ];
        let out = splice(br#"{"a":1,"b":2}"#, &mut edits);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"x":1,"c":3}"#);
    }

    #[test]
    fn overlapping_and_repeated_edits_apply_once() {
        let prefix: Arc<str> = Arc::from("p_");
        let mut edits = vec![
            Edit::insert(2, &prefix),
            Edit::replace(1, 5, r#""x""#.into()),
            Edit::insert(7, &prefix),
            Edit::insert(7, &prefix),
        ];
        let out = splice(br#"["ab","cd"]"#, &mut edits);
        assert_eq!(String::from_utf8(out).unwrap(), r#"["x","p_cd"]"#);
    }
}
