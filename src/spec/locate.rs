//! Where a key path stands in the file as written: its span, and the line and column
//! of that span, so every error reads `file:line:col`.

use std::ops::Range;

use toml_edit::{Item, Table, Value};

use super::Seg;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Value,
    /// The key of the last segment, for errors about the key itself.
    Key,
}

/// The span of the deepest node of `path` that the file actually contains.
pub fn locate(root: &Table, path: &[Seg], target: Target) -> Option<Range<usize>> {
    enum Node<'n> {
        Item(&'n Item),
        Table(&'n Table),
        Value(&'n Value),
    }
    let mut node = Node::Table(root);
    let mut best = None;
    for (depth, seg) in path.iter().enumerate() {
        if target == Target::Key && depth + 1 == path.len() {
            if let Seg::Key(k) = seg {
                let key = match node {
                    Node::Table(t) => t.key(k),
                    Node::Item(Item::Table(t)) => t.key(k),
                    Node::Item(Item::Value(Value::InlineTable(t)))
                    | Node::Value(Value::InlineTable(t)) => t.key(k),
                    _ => None,
                };
                return key.and_then(|k| k.span()).or(best);
            }
        }
        let next = match (&node, seg) {
            (Node::Table(t), Seg::Key(k)) => t.get(k).map(Node::Item),
            (Node::Item(Item::Table(t)), Seg::Key(k)) => t.get(k).map(Node::Item),
            (Node::Item(Item::Value(Value::InlineTable(t))), Seg::Key(k))
            | (Node::Value(Value::InlineTable(t)), Seg::Key(k)) => t.get(k).map(Node::Value),
            (Node::Item(Item::ArrayOfTables(a)), Seg::Index(i)) => a.get(*i).map(Node::Table),
            (Node::Item(Item::Value(Value::Array(a))), Seg::Index(i))
            | (Node::Value(Value::Array(a)), Seg::Index(i)) => a.get(*i).map(Node::Value),
            _ => None,
        };
        let Some(next) = next else { break };
        let span = match &next {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        };
        best = span.or(best);
        node = next;
    }
    best
}

pub fn line_col(raw: &str, offset: usize) -> (usize, usize) {
    let before = &raw[..offset.min(raw.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_from_one() {
        let raw = "a = 1\nbb = \"x\"\n";
        assert_eq!(line_col(raw, 0), (1, 1));
        assert_eq!(line_col(raw, raw.find("\"x\"").unwrap()), (2, 6));
    }
}
