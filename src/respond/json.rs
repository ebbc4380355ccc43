//! The response body pass (SPEC 4.2), one streaming walk with span edits like the
//! request side: `keep` drops list items outside the caller's namespace, the leak
//! guard collects every other tenant's id it meets, `unwrap` strips the caller's
//! namespace from ids, `unprepend` drops a leading root from arrays. Findings inside an
//! item that `keep` drops are discarded with the item, so keep runs before the guard.
//! `learn` collects the opaque ids at its pointers the same way: an id inside a
//! dropped item is never learned.

use std::sync::Arc;

use jiter::{Jiter, Peek};

use super::Recipient;
use crate::budget::Held;
use crate::json::pointer::{Cursor, Pointer};
use crate::json::{quote, splice, Edit, Work, MAX_DEPTH};

#[derive(Debug, Clone)]
pub struct Keep {
    pub items: Pointer,
    /// Relative to each item: its owner (a namespaced id) or its opaque id.
    pub owner: Pointer,
    pub by: KeepBy,
}

/// What keeps an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepBy {
    /// `owner`: the value is in the caller's namespace.
    Namespace,
    /// `owned` + `at`: the value is an id of this kind the caller owns.
    Owned(Arc<str>),
}

#[derive(Debug, Clone, Default)]
pub struct ResponseRules {
    pub unwrap: bool,
    pub keep: Option<Keep>,
    pub unprepend: Vec<Pointer>,
    /// Strings at these pointers become the caller's, as ids of that kind.
    pub learn: Vec<(Pointer, Arc<str>)>,
    /// `ids_at`: where the answer holds namespaced ids. The guard and unwrap look only
    /// there (keys not at all); `None`: at every string and key.
    pub ids_at: Option<Vec<Pointer>>,
}

/// What the pass made of a body that may be delivered.
#[derive(Debug, Default)]
pub struct Processed {
    /// `None`: deliver the body as it is.
    pub body: Option<Vec<u8>>,
    /// (kind, id) at `learn` pointers, in delivered parts of the body.
    pub learned: Vec<(String, String)>,
}

/// Why a body cannot be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// Another tenant's ids, this many of them.
    Leak(usize),
    NotJson,
    /// The edits would pass the buffer budget.
    OverBudget,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Items,
    Unprepend(usize),
    Learn(usize),
    Ids(usize),
}

type State = Cursor<Kind>;

static WHOLE_DOCUMENT: Pointer = Pointer {
    steps: Vec::new(),
    text: String::new(),
};

enum Verdict {
    Untouched,
    /// Another tenant's id.
    Leak,
    /// The caller's own id, as the JSON string that replaces it.
    Unwrap(String),
    /// The caller's own `{ns}{sep}x`, written plainly: these leading bytes (after the
    /// quote) go, and nothing is allocated.
    Strip(usize),
}

struct Walker<'a> {
    data: &'a [u8],
    rules: &'a ResponseRules,
    scope: &'a Recipient<'a>,
    edits: Vec<Edit>,
    leaks: Vec<usize>,
    /// (where, kind index, id) for each learned id, the position for `keep`'s drops.
    learned: Vec<(usize, usize, String)>,
    work: Work<'a>,
    over_budget: bool,
}

pub fn process(
    body: &[u8],
    rules: &ResponseRules,
    scope: &Recipient,
) -> Result<Processed, Blocked> {
    process_within(body, rules, scope, None)
}

/// As [`process`], taking the working memory (edits, the new body) from `held`.
pub fn process_within(
    body: &[u8],
    rules: &ResponseRules,
    scope: &Recipient,
    held: Option<&mut Held>,
) -> Result<Processed, Blocked> {
    let mut walker = Walker {
        data: body,
        rules,
        scope,
        edits: Vec::new(),
        leaks: Vec::new(),
        learned: Vec::new(),
        work: Work::within(held),
        over_budget: false,
    };
    let mut jiter = Jiter::new(body);
    let peek = jiter.peek().map_err(|_| Blocked::NotJson)?;
    let mut states = Vec::new();
    if rules.keep.is_some() {
        states.push(Cursor::start(Kind::Items));
    }
    states.extend((0..rules.unprepend.len()).map(|i| Cursor::start(Kind::Unprepend(i))));
    states.extend((0..rules.learn.len()).map(|i| Cursor::start(Kind::Learn(i))));
    let ids = rules.ids_at.as_ref().map_or(0, Vec::len);
    states.extend((0..ids).map(|i| Cursor::start(Kind::Ids(i))));
    walker.value(&mut jiter, peek, states, None, 0)?;
    jiter.finish().map_err(|_| Blocked::NotJson)?;
    if !walker.leaks.is_empty() {
        return Err(Blocked::Leak(walker.leaks.len()));
    }
    let output = body.len() + walker.edits.len();
    if walker.over_budget || (!walker.edits.is_empty() && !walker.work.take(output)) {
        return Err(Blocked::OverBudget);
    }
    let learned = std::mem::take(&mut walker.learned)
        .into_iter()
        .map(|(_, kind, id)| (rules.learn[kind].1.to_string(), id))
        .collect();
    let body = (!walker.edits.is_empty()).then(|| splice(body, &mut walker.edits));
    Ok(Processed { body, learned })
}

impl Walker<'_> {
    fn pointer(&self, kind: Kind) -> &Pointer {
        match kind {
            Kind::Items => {
                &self
                    .rules
                    .keep
                    .as_ref()
                    .expect("items state implies keep")
                    .items
            }
            Kind::Unprepend(i) => &self.rules.unprepend[i],
            Kind::Learn(i) => &self.rules.learn[i].0,
            // Ids states are made from `ids_at`, so the entry is there.
            Kind::Ids(i) => self
                .rules
                .ids_at
                .as_deref()
                .and_then(|ids| ids.get(i))
                .unwrap_or(&WHOLE_DOCUMENT),
        }
    }

    fn advance(&self, states: &[State], key: Option<&str>, index: Option<usize>) -> Vec<State> {
        Cursor::descend(states, |kind| self.pointer(kind), key, index)
    }

    /// Owner probe: `Some(step)` while walking an item's owner pointer; the returned
    /// string is the owner, if this value is it.
    fn owner_step(
        &self,
        probe: Option<usize>,
        key: Option<&str>,
        index: Option<usize>,
    ) -> Option<usize> {
        let step = probe?;
        let owner = &self.rules.keep.as_ref()?.owner;
        owner.steps.get(step)?.takes(key, index).then_some(step + 1)
    }

    fn value(
        &mut self,
        j: &mut Jiter,
        peek: Peek,
        states: Vec<State>,
        probe: Option<usize>,
        depth: usize,
    ) -> Result<Option<String>, Blocked> {
        if depth > MAX_DEPTH {
            return Err(Blocked::NotJson);
        }
        if self.over_budget {
            return Err(Blocked::OverBudget);
        }
        let start = j.current_index();
        let at_end = |kind: fn(&Kind) -> bool, me: &Self| {
            states
                .iter()
                .any(|s| kind(&s.tag) && s.at_end(me.pointer(s.tag)))
        };
        let is_items = at_end(|k| *k == Kind::Items, self);
        let is_unprepend = at_end(|k| matches!(k, Kind::Unprepend(_)), self);
        match peek {
            Peek::Object => {
                let mut key = j.known_object().map_err(|_| Blocked::NotJson)?;
                let mut owner = None;
                let mut before = start;
                while let Some(k) = key {
                    let open = self.key_open(before);
                    let verdict = match self.rules.ids_at {
                        None => self.judge(k, open),
                        Some(_) => Verdict::Untouched,
                    };
                    let child = self.advance(&states, Some(k), None);
                    let child_probe = self.owner_step(probe, Some(k), None);
                    self.apply(verdict, self.key_span(before, j.current_index()));
                    let peek = j.peek().map_err(|_| Blocked::NotJson)?;
                    if let Some(found) = self.value(j, peek, child, child_probe, depth + 1)? {
                        owner = Some(found);
                    }
                    before = j.current_index();
                    key = j.next_key().map_err(|_| Blocked::NotJson)?;
                }
                Ok(owner)
            }
            Peek::Array => {
                // Everything recorded inside this array comes after these marks.
                let marks = (self.edits.len(), self.leaks.len(), self.learned.len());
                let mut items: Vec<(usize, usize, Option<String>)> = Vec::new();
                let mut next = j.known_array().map_err(|_| Blocked::NotJson)?;
                let mut owner = None;
                let mut index = 0;
                while let Some(peek) = next {
                    let item_start = j.current_index();
                    let child = self.advance(&states, None, Some(index));
                    let child_probe = if is_items {
                        Some(0)
                    } else {
                        self.owner_step(probe, None, Some(index))
                    };
                    let found = self.value(j, peek, child, child_probe, depth + 1)?;
                    if is_items {
                        items.push((item_start, j.current_index(), found));
                    } else if found.is_some() {
                        owner = found;
                    }
                    index += 1;
                    next = j.array_step().map_err(|_| Blocked::NotJson)?;
                }
                let end = j.current_index();
                if is_items {
                    self.keep_owned(end, &items, marks);
                } else if is_unprepend {
                    self.unprepend(start, end, marks.0);
                }
                Ok(owner)
            }
            Peek::String => {
                let value = j.known_str().map_err(|_| Blocked::NotJson)?;
                let holds_ids = self.rules.ids_at.is_none()
                    || states
                        .iter()
                        .any(|s| matches!(s.tag, Kind::Ids(_)) && s.at_end(self.pointer(s.tag)));
                let verdict = match holds_ids {
                    true => self.judge(value, start),
                    false => Verdict::Untouched,
                };
                let is_owner = probe.is_some_and(|step| {
                    self.rules
                        .keep
                        .as_ref()
                        .is_some_and(|keep| step == keep.owner.steps.len())
                });
                // Only an item's owner is copied; every other string is judged in place.
                let owner = is_owner.then(|| value.to_owned());
                for s in &states {
                    if let Kind::Learn(i) = s.tag {
                        if s.at_end(&self.rules.learn[i].0) {
                            self.learned.push((start, i, value.to_owned()));
                            let held = std::mem::size_of::<(usize, usize, String)>() + value.len();
                            if !self.work.take(held) {
                                self.over_budget = true;
                            }
                        }
                    }
                }
                self.apply(verdict, (start, j.current_index()));
                Ok(owner)
            }
            other => {
                j.known_skip(other).map_err(|_| Blocked::NotJson)?;
                Ok(None)
            }
        }
    }

    /// Where the key after the previous value (or `{`) opens its quote.
    fn key_open(&self, after_previous: usize) -> usize {
        let data = self.data;
        let mut open = after_previous;
        while open < data.len() && data[open] != b'"' {
            open += 1;
        }
        open
    }

    /// The span of the key just read: between the previous value (or `{`) and the `:`.
    fn key_span(&self, after_previous: usize, after_colon: usize) -> (usize, usize) {
        let data = self.data;
        let open = self.key_open(after_previous).min(after_colon);
        let mut close = after_colon;
        while close > open && data[close - 1] != b'"' {
            close -= 1;
        }
        (open, close)
    }

    /// What the guard and unwrap make of one string (a value or a key) whose JSON text
    /// starts at `at`.
    fn judge(&self, value: &str, at: usize) -> Verdict {
        let scope = self.scope;
        match scope.own(value) {
            Some(Some(plain)) if self.rules.unwrap => {
                // `plain` ends `value` (a namespaced id; for a bare root, when the tenant
                // id happens to end it), and the bytes before it were written as is.
                let strip = value.len().saturating_sub(plain.len());
                let lead = &value.as_bytes()[..strip];
                let plainly = lead
                    .iter()
                    .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
                let raw = self.data.get(at + 1..at + 1 + strip);
                if strip > 0 && plainly && value.ends_with(plain) && raw == Some(lead) {
                    Verdict::Strip(strip)
                } else {
                    Verdict::Unwrap(quote(plain))
                }
            }
            Some(_) => Verdict::Untouched,
            None if scope.guard && scope.finding(value) => Verdict::Leak,
            None => Verdict::Untouched,
        }
    }

    fn apply(&mut self, verdict: Verdict, span: (usize, usize)) {
        match verdict {
            Verdict::Untouched => {}
            Verdict::Leak => self.leaks.push(span.0),
            Verdict::Unwrap(text) => self.edits.push(Edit::replace(span.0, span.1, text)),
            Verdict::Strip(bytes) => self
                .edits
                .push(Edit::delete(span.0 + 1, span.0 + 1 + bytes)),
        }
        if !self.work.track(self.edits.len()) {
            self.over_budget = true;
        }
    }

    /// Drops the items whose owner is outside the caller's namespace, with every edit
    /// and finding inside them. Each dropped item becomes one deletion that also takes
    /// its comma, so the kept items' bytes (and edits) stay where they are.
    fn keep_owned(
        &mut self,
        end: usize,
        items: &[(usize, usize, Option<String>)],
        (edits_from, leaks_from, learned_from): (usize, usize, usize),
    ) {
        let by = self.rules.keep.as_ref().map(|k| &k.by);
        let kept = |owner: &Option<String>| {
            owner.as_deref().is_some_and(|o| match by {
                Some(KeepBy::Owned(kind)) => self.scope.owns(kind, o),
                _ => self.scope.within(o),
            })
        };
        let first_kept = items.iter().position(|(_, _, owner)| kept(owner));
        let mut dropped: Vec<(usize, usize)> = Vec::new();
        for (i, (item_start, item_end, owner)) in items.iter().enumerate() {
            if kept(owner) {
                continue;
            }
            let span = match first_kept {
                // Before the first kept item: the item and the comma after it.
                Some(first) if i < first => (*item_start, items[i + 1].0),
                // After it: the comma before the item, and the item.
                Some(_) => (items[i - 1].1, *item_end),
                None => (items[0].0, items[items.len() - 1].1),
            };
            if dropped.last() != Some(&span) {
                dropped.push(span);
            }
        }
        if dropped.is_empty() {
            return;
        }
        debug_assert!(dropped.iter().all(|&(_, to)| to <= end));
        let inside = |at: usize| {
            let i = dropped.partition_point(|&(from, _)| from <= at);
            i > 0 && at < dropped[i - 1].1
        };
        retain_from(&mut self.edits, edits_from, |e| !inside(e.at));
        retain_from(&mut self.leaks, leaks_from, |&at| !inside(at));
        retain_from(&mut self.learned, learned_from, |(at, _, _)| !inside(*at));
        self.edits
            .extend(dropped.into_iter().map(|(at, end)| Edit::delete(at, end)));
    }

    fn unprepend(&mut self, start: usize, end: usize, edits_from: usize) {
        let mut j = Jiter::new(&self.data[start..end]);
        let Ok(Some(Peek::String)) = j.next_array() else {
            return;
        };
        let first_start = start + j.current_index();
        let Ok(first) = j.known_str().map(str::to_owned) else {
            return;
        };
        if first != self.scope.root {
            return;
        }
        let first_end = start + j.current_index();
        let cut_to = match j.array_step() {
            Ok(Some(_)) => start + j.current_index(),
            _ => first_end,
        };
        retain_from(&mut self.edits, edits_from, |e| {
            e.end <= first_start || e.at >= first_end
        });
        self.edits.push(Edit::delete(first_start, cut_to));
    }
}

/// `list.retain(keep)` on `list[from..]` only: what an array holds was recorded after
/// it was entered, so dropping it never rescans the document before it (the pass stays
/// linear in the body, not in the body times the number of arrays).
fn retain_from<T>(list: &mut Vec<T>, from: usize, keep: impl FnMut(&T) -> bool) {
    let mut tail = list.split_off(from.min(list.len()));
    tail.retain(keep);
    list.append(&mut tail);
}
