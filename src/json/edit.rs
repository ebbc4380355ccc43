//! Span edits: each replaces the bytes `at..end` of the original document with `text`
//! (an empty text deletes, an empty span inserts). The document is rebuilt once, in a
//! single pass over the edits sorted by position, so the cost is linear in its size.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub at: usize,
    pub end: usize,
    pub text: String,
}

impl Edit {
    pub fn delete(at: usize, end: usize) -> Self {
        Self {
            at,
            end,
            text: String::new(),
        }
    }
}

/// `data` with `edits` applied. Edits must not overlap (an insertion may stand at the
/// start or end of another edit's span).
pub fn splice(data: &[u8], edits: &mut [Edit]) -> Vec<u8> {
    edits.sort_by_key(|e| (e.at, e.end));
    let added: usize = edits.iter().map(|e| e.text.len()).sum();
    let mut out = Vec::with_capacity(data.len() + added);
    let mut copied = 0;
    for edit in edits.iter() {
        out.extend_from_slice(&data[copied..edit.at]);
        out.extend_from_slice(edit.text.as_bytes());
        copied = edit.end;
    }
    out.extend_from_slice(&data[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_deletes_and_inserts_in_one_pass() {
        let mut edits = vec![
            Edit::delete(6, 12),
            Edit {
                at: 12,
                end: 12,
                text: r#","c":3"#.into(),
            },
            Edit {
                at: 1,
                end: 4,
                text: r#""x""#.into(),
            },
        ];
        let out = splice(br#"{"a":1,"b":2}"#, &mut edits);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"x":1,"c":3}"#);
    }
}
