//! Rewriting a JSON body by editing the raw text at the rewritten spans: one streaming
//! pass (jiter) finds the values the rules name, everything else is copied byte for
//! byte, so numbers, key order, whitespace and escapes are forwarded exactly as sent.
//!
//! The same pass refuses duplicate keys in any object (compared after unescaping, so
//! `"\u0075ser_id"` is `"user_id"`) and nesting deeper than [`MAX_DEPTH`].

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use jiter::{Jiter, JiterError, Peek};

use super::{Mode, OwnedIds, Target, MAX_OWNED_IDS};
use crate::budget::Held;
use crate::json::pointer::{Cursor, Pointer, Step};
use crate::json::{quote, splice, Edit, Work, MAX_DEPTH};
use crate::refusal::Refusal;

#[derive(Debug, Clone)]
pub struct JsonRule {
    pub pointer: Pointer,
    pub mode: Mode,
}

/// The keys of one object, as hashes under a per-request random key. Two keys whose
/// hashes meet are taken as a duplicate: a 400, never a key let through, and with
/// SipHash's random key nobody can aim for it.
struct KeySet {
    hasher: RandomState,
    seen: HashSet<u64>,
    /// The keys rules name, as present in the object.
    present: Vec<String>,
}

impl KeySet {
    fn new(hasher: RandomState) -> Self {
        Self {
            hasher,
            seen: HashSet::new(),
            present: Vec::new(),
        }
    }

    /// False when the key was there already.
    fn insert(&mut self, key: &str) -> bool {
        self.seen.insert(self.hasher.hash_one(key))
    }

    /// Whether a key a rule names is present (exact, see `present`).
    fn contains(&self, key: &str) -> bool {
        self.present.iter().any(|p| p == key)
    }

    fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Array element spans taken from the budget at once.
const SPANS_PER_CLAIM: usize = 4096;

/// A position in one rule's pointer (tagged by the rule's index).
type State = Cursor<usize>;

enum Shape {
    Object,
    /// `strings`: the spans of its elements, when a rule needs them and all are strings.
    Array {
        strings: Option<Vec<(usize, usize)>>,
        empty: bool,
    },
    /// A string ending at `end`; decoded only if a rule applies to it.
    Str {
        end: usize,
    },
    /// The backend's "not given" at a `prefix` or `owned:` location.
    Null,
    /// A number ending at `end`, for `add:N`.
    Number {
        end: usize,
    },
    /// `true` or `false`, named for error messages.
    Scalar(&'static str),
}

impl Shape {
    /// The value's type as an error message names it.
    fn what(&self) -> &'static str {
        match self {
            Self::Object => "an object",
            Self::Array { .. } => "an array",
            Self::Str { .. } => "a string",
            Self::Null => "null",
            Self::Number { .. } => "a number",
            Self::Scalar(what) => what,
        }
    }
}

struct Walker<'a> {
    data: &'a [u8],
    rules: &'a [JsonRule],
    target: &'a Target<'a>,
    edits: Vec<Edit>,
    /// Hashes the keys of each object for its duplicate check.
    key_hasher: RandomState,
    /// `{ns}{sep}` as JSON string text, shared by every prefixed id.
    prefix: Option<Arc<str>>,
    /// Ids at `owned:` locations.
    owned: OwnedIds,
    work: Work<'a>,
}

/// Applies `rules` to `body`: the new body (`None` when nothing changed) and the ids
/// found at `owned:` locations.
pub fn rewrite(
    body: &[u8],
    rules: &[JsonRule],
    target: &Target,
) -> Result<(Option<Vec<u8>>, OwnedIds), Refusal> {
    rewrite_within(body, rules, target, None)
}

/// As [`rewrite`], taking the working memory (edits, the new body) from `held`.
pub fn rewrite_within(
    body: &[u8],
    rules: &[JsonRule],
    target: &Target,
    held: Option<&mut Held>,
) -> Result<(Option<Vec<u8>>, OwnedIds), Refusal> {
    let raw = format!("{}{}", target.root, target.separator);
    let per_edit = raw.len() + 2;
    let plain = raw
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    let mut walker = Walker {
        data: body,
        rules,
        target,
        edits: Vec::new(),
        prefix: plain.then(|| Arc::from(raw)),
        key_hasher: RandomState::new(),
        owned: OwnedIds::new(),
        work: Work::within(held),
    };
    let mut jiter = Jiter::new(body);
    let peek = jiter.peek().map_err(|e| invalid(&e))?;
    let states: Vec<State> = (0..rules.len()).map(Cursor::start).collect();
    walker.value(&mut jiter, peek, &states, 0)?;
    jiter.finish().map_err(|e| invalid(&e))?;
    let owned = std::mem::take(&mut walker.owned);
    if walker.edits.is_empty() {
        return Ok((None, owned));
    }
    let grows = walker.edits.len() * per_edit;
    if !walker.work.take(body.len() + grows) {
        return Err(Refusal::Overloaded);
    }
    Ok((Some(splice(body, &mut walker.edits)), owned))
}

/// The keys rewriting rules name at this object: a key's case-folded look-alike would
/// reach the same field in some backends without the rule seeing it.
fn targeted_keys<'r>(rules: &'r [JsonRule], states: &[State]) -> Vec<&'r str> {
    let mut names = Vec::new();
    for s in states {
        // A deny rule rewrites nothing: `or` beside a denied `OR` is another field.
        if rules[s.tag].mode == Mode::Deny {
            continue;
        }
        let steps = &rules[s.tag].pointer.steps;
        let mut at = s.step;
        while steps.get(at) == Some(&Step::AnyDepth) {
            at += 1;
        }
        if let Some(Step::Key(name)) = steps.get(at) {
            names.push(name.as_str());
        }
    }
    names
}

/// Equal under Unicode case folding (`K` and the Kelvin sign, `s` and `ſ`), as Go's
/// `strings.EqualFold` compares JSON keys with struct fields.
fn same_folded(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    let fold = |s: &str| -> String {
        s.chars()
            .flat_map(char::to_uppercase)
            .flat_map(char::to_lowercase)
            .collect()
    };
    fold(a) == fold(b)
}

fn duplicate(key: &str) -> Refusal {
    Refusal::BadRequest(format!(
        "the body repeats the key {key:?} in one object; send each key once"
    ))
}

fn invalid(error: &JiterError) -> Refusal {
    Refusal::BadRequest(format!("the body is not valid JSON (byte {})", error.index))
}

impl Walker<'_> {
    fn advance(&self, states: &[State], key: Option<&str>, index: Option<usize>) -> Vec<State> {
        Cursor::descend(states, |rule| &self.rules[rule].pointer, key, index)
    }

    fn value(
        &mut self,
        j: &mut Jiter,
        peek: Peek,
        states: &[State],
        depth: usize,
    ) -> Result<Shape, Refusal> {
        if depth > MAX_DEPTH {
            return Err(Refusal::BadRequest(format!(
                "the body nests deeper than {MAX_DEPTH} levels"
            )));
        }
        let start = j.current_index();
        let mut matched: Vec<usize> = Vec::new();
        for s in states {
            if s.at_end(&self.rules[s.tag].pointer) && !matched.contains(&s.tag) {
                matched.push(s.tag);
            }
        }
        let wants_strings = matched.iter().any(|&r| {
            matches!(
                self.rules[r].mode,
                Mode::Prefix | Mode::PrefixRequired | Mode::Owned(_)
            )
        });
        let shape = match peek {
            Peek::Object => self.object(j, states, depth)?,
            Peek::Array => self.array(j, states, wants_strings, depth)?,
            Peek::String => {
                j.known_str().map_err(|e| invalid(&e))?;
                Shape::Str {
                    end: j.current_index(),
                }
            }
            Peek::Null => {
                j.known_skip(Peek::Null).map_err(|e| invalid(&e))?;
                Shape::Null
            }
            other => {
                j.known_skip(other).map_err(|e| invalid(&e))?;
                match other.is_num() {
                    true => Shape::Number {
                        end: j.current_index(),
                    },
                    false => Shape::Scalar("true or false"),
                }
            }
        };
        if !matches!(shape, Shape::Object) {
            self.refuse_injection_into_non_object(states, matches!(shape, Shape::Array { .. }))?;
        }
        for rule in matched {
            self.apply(rule, start, &shape)?;
        }
        Ok(shape)
    }

    fn object(&mut self, j: &mut Jiter, states: &[State], depth: usize) -> Result<Shape, Refusal> {
        // A set, not a list: an object of n keys must not cost n² comparisons; and of
        // hashes, so a key is never copied.
        let mut keys = KeySet::new(self.key_hasher.clone());
        let targeted = targeted_keys(self.rules, states);
        let mut next = j.known_object().map_err(|e| invalid(&e))?;
        while let Some(k) = next {
            if !keys.insert(k) {
                return Err(duplicate(k));
            }
            // Whether a rule's own field is present is decided by exact match, never
            // by hash, so a collision can only refuse, not skip an injection.
            if targeted.contains(&k) {
                keys.present.push(k.to_owned());
            }
            if let Some(name) = targeted.iter().find(|n| **n != k && same_folded(n, k)) {
                return Err(Refusal::BadRequest(format!(
                    "the body carries {k:?}, which a backend matching keys case-insensitively (Go's encoding/json) reads as {name:?}; send {name:?} exactly as spelled"
                )));
            }
            let child = self.advance(states, Some(k), None);
            let peek = j.peek().map_err(|e| invalid(&e))?;
            self.value(j, peek, &child, depth + 1)?;
            next = j.next_key().map_err(|e| invalid(&e))?;
        }
        let end = j.current_index();
        self.inject(states, &keys, end)?;
        Ok(Shape::Object)
    }

    fn array(
        &mut self,
        j: &mut Jiter,
        states: &[State],
        wants_strings: bool,
        depth: usize,
    ) -> Result<Shape, Refusal> {
        let mut strings = wants_strings.then(Vec::new);
        let mut all_strings = true;
        let mut next = j.known_array().map_err(|e| invalid(&e))?;
        let empty = next.is_none();
        let mut index = 0;
        // Every element reaches the same cursors unless a rule names an index: then
        // they are found once, not allocated again for each of an embedding's floats.
        let shared = Cursor::index_free(states, |rule| &self.rules[rule].pointer)
            .then(|| self.advance(states, None, Some(0)));
        while let Some(peek) = next {
            let start = j.current_index();
            let own;
            let child = match &shared {
                Some(child) => child.as_slice(),
                None => {
                    own = self.advance(states, None, Some(index));
                    own.as_slice()
                }
            };
            let shape = self.value(j, peek, child, depth + 1)?;
            if let (Some(list), Shape::Str { end }) = (strings.as_mut(), &shape) {
                list.push((start, *end));
                // The spans are working memory too, taken in steps like the edits.
                if list.len() % SPANS_PER_CLAIM == 0
                    && !self
                        .work
                        .take(SPANS_PER_CLAIM * std::mem::size_of::<(usize, usize)>())
                {
                    return Err(Refusal::Overloaded);
                }
            } else {
                all_strings = false;
            }
            index += 1;
            next = j.array_step().map_err(|e| invalid(&e))?;
        }
        Ok(Shape::Array {
            strings: strings.filter(|_| all_strings),
            empty,
        })
    }

    fn injects(&self, rule: usize) -> bool {
        let rule = &self.rules[rule];
        !rule.pointer.has_wildcard()
            && matches!(
                rule.mode,
                Mode::Bind
                    | Mode::Set
                    | Mode::Prepend
                    | Mode::PrependJoined(_)
                    | Mode::PrefixRequired
            )
    }

    /// A rule that must inject below this value cannot, because it is not an object.
    fn refuse_injection_into_non_object(
        &self,
        states: &[State],
        is_array: bool,
    ) -> Result<(), Refusal> {
        for s in states {
            let rule = &self.rules[s.tag];
            let by_index = matches!(rule.pointer.steps.get(s.step), Some(Step::Key(k)) if k.parse::<usize>().is_ok());
            if s.step < rule.pointer.steps.len() && self.injects(s.tag) && !(is_array && by_index) {
                return Err(Refusal::BadRequest(format!(
                    "{} needs an object along its path; the body has another type there",
                    rule.pointer.text
                )));
            }
        }
        Ok(())
    }

    /// Adds the fields that rules without wildcards require but the object lacks,
    /// creating missing parent objects, as one insertion before the closing brace.
    fn inject(&mut self, states: &[State], keys: &KeySet, end: usize) -> Result<(), Refusal> {
        let mut members: Vec<(Vec<String>, String)> = Vec::new();
        for s in states {
            let rule = &self.rules[s.tag];
            let Some(Step::Key(name)) = rule.pointer.steps.get(s.step) else {
                continue;
            };
            if keys.contains(name) || !self.injects(s.tag) {
                continue;
            }
            let leaf = match rule.mode {
                Mode::PrefixRequired => {
                    return Err(Refusal::BadRequest(format!(
                        "the body must carry {}; without it the call would reach every user's data",
                        rule.pointer.text
                    )))
                }
                Mode::Prepend => format!("[{}]", quote(self.target.root)),
                _ => quote(self.target.root),
            };
            let path: Vec<String> = rule.pointer.steps[s.step..]
                .iter()
                .filter_map(|step| match step {
                    Step::Key(k) => Some(k.clone()),
                    _ => None,
                })
                .collect();
            if !members.iter().any(|(p, _)| *p == path) {
                members.push((path, leaf));
            }
        }
        if members.is_empty() {
            return Ok(());
        }
        let mut text = render_members(&members);
        if !keys.is_empty() {
            text.insert(0, ',');
        }
        self.edits.push(Edit::replace(end - 1, end - 1, text));
        Ok(())
    }

    fn apply(&mut self, rule: usize, start: usize, shape: &Shape) -> Result<(), Refusal> {
        let JsonRule { pointer, mode } = &self.rules[rule];
        let target = self.target;
        let wrong_type = || {
            Refusal::BadRequest(format!(
                "{} must be a string here, not {} (operator objects such as {{\"$ne\": ...}} are refused too)",
                pointer.text,
                shape.what()
            ))
        };
        let edit = match (mode, shape) {
            // The backend's "not given": forwarded as is.
            (Mode::Prefix | Mode::Owned(_) | Mode::Add(_), Shape::Null) => return Ok(()),
            (Mode::Add(n), Shape::Number { end }) => {
                let text = std::str::from_utf8(&self.data[start..*end]).unwrap_or_default();
                Edit::replace(start, *end, super::added(text, *n, &pointer.text)?)
            }
            (Mode::Add(_), _) => {
                return Err(Refusal::BadRequest(format!(
                    "{} must be a whole number, not {}",
                    pointer.text,
                    shape.what()
                )))
            }
            (Mode::PrependJoined(delimiter), Shape::Str { end }) => {
                let labels = self.text(start, *end)?;
                Edit::replace(start, *end, quote(&target.joined(delimiter, &labels)))
            }
            (Mode::PrefixRequired, Shape::Null) => {
                return Err(Refusal::BadRequest(format!(
                    "{} is null; without an id the call would reach every user's data",
                    pointer.text
                )))
            }
            (Mode::Owned(kind), Shape::Str { end }) => {
                let id = self.text(start, *end)?;
                return self.own(kind, id);
            }
            (
                Mode::Owned(kind),
                Shape::Array {
                    strings: Some(items),
                    ..
                },
            ) => {
                for &(at, end) in items {
                    let id = self.text(at, end)?;
                    self.own(kind, id)?;
                }
                return Ok(());
            }
            (Mode::Deny, _) => {
                return Err(Refusal::BadRequest(format!(
                    "the body may not carry {}",
                    pointer.text
                )))
            }
            (Mode::Bind, Shape::Str { end }) => {
                if !target.is_self(&self.text(start, *end)?) {
                    return Err(Refusal::TenantMismatch);
                }
                Edit::replace(start, *end, quote(target.root))
            }
            (Mode::Set, Shape::Str { end, .. }) => Edit::replace(start, *end, quote(target.root)),
            (Mode::Prefix | Mode::PrefixRequired, Shape::Str { end }) => {
                self.prefix(start, *end)?
            }
            (
                Mode::PrefixRequired,
                Shape::Array {
                    strings: Some(items),
                    ..
                },
            ) if items.is_empty() => {
                return Err(Refusal::BadRequest(format!(
                    "{} is an empty list; without ids the call would reach every user's data",
                    pointer.text
                )))
            }
            (
                Mode::Prefix | Mode::PrefixRequired,
                Shape::Array {
                    strings: Some(items),
                    ..
                },
            ) => {
                for &(at, end) in items {
                    let edit = self.prefix(at, end)?;
                    self.push(edit)?;
                }
                return Ok(());
            }
            (Mode::Prepend, Shape::Array { empty, .. }) => {
                let mut text = quote(target.root);
                if !empty {
                    text.push(',');
                }
                Edit::replace(start + 1, start + 1, text)
            }
            (Mode::Prepend, _) => {
                return Err(Refusal::BadRequest(format!(
                    "{} must be an array",
                    pointer.text
                )))
            }
            _ => return Err(wrong_type()),
        };
        self.push(edit)
    }

    /// The edit that prefixes the string spanning `start..end`: an insertion of the
    /// shared `{ns}{sep}` after the opening quote when that needs no escaping (it
    /// never does for the namespace alphabet), else the string re-encoded.
    fn prefix(&self, start: usize, end: usize) -> Result<Edit, Refusal> {
        match &self.prefix {
            Some(prefix) => Ok(Edit::insert(start + 1, prefix)),
            None => Ok(Edit::replace(
                start,
                end,
                quote(&self.target.prefixed(&self.text(start, end)?)),
            )),
        }
    }

    /// The decoded string whose JSON text spans `start..end`.
    fn text(&self, start: usize, end: usize) -> Result<String, Refusal> {
        Jiter::new(&self.data[start..end])
            .next_str()
            .map(str::to_owned)
            .map_err(|e| invalid(&e))
    }

    /// Collects an id at an `owned:` location, at most [`MAX_OWNED_IDS`] of them.
    fn own(&mut self, kind: &str, id: String) -> Result<(), Refusal> {
        if self.owned.len() >= MAX_OWNED_IDS {
            return Err(Refusal::BadRequest(format!(
                "the body names more than {MAX_OWNED_IDS} opaque ids; send fewer at once"
            )));
        }
        self.owned.push((kind.to_owned(), id));
        Ok(())
    }

    /// Records an edit (of two on one value, `splice` keeps the first), taking what
    /// the edits hold from the buffer budget as they grow.
    fn push(&mut self, edit: Edit) -> Result<(), Refusal> {
        self.edits.push(edit);
        if self.work.track(self.edits.len()) {
            Ok(())
        } else {
            Err(Refusal::Overloaded)
        }
    }
}

/// `"a":{"b":"v"},"c":"w"` for paths `[a,b]` and `[c]`, merging shared parents.
fn render_members(members: &[(Vec<String>, String)]) -> String {
    let mut out = String::new();
    let mut done: Vec<&str> = Vec::new();
    for (path, leaf) in members {
        let head = path[0].as_str();
        if done.contains(&head) {
            continue;
        }
        done.push(head);
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&quote(head));
        out.push(':');
        if path.len() == 1 {
            out.push_str(leaf);
            continue;
        }
        let nested: Vec<(Vec<String>, String)> = members
            .iter()
            .filter(|(p, _)| p.len() > 1 && p[0] == head)
            .map(|(p, l)| (p[1..].to_vec(), l.clone()))
            .collect();
        out.push('{');
        out.push_str(&render_members(&nested));
        out.push('}');
    }
    out
}

#[cfg(test)]
mod tests;
