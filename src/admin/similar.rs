//! Near-duplicate tenant ids: the same user arriving as `Acme` and `acme`, `acme ` and
//! `acme`, or `acme` and `acmf`. Found through hashes sorted into runs, never by
//! comparing all pairs, so a million ids take seconds, not days.

use std::collections::HashMap;

/// Why two ids look like one user, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Likeness {
    /// Equal after lowercasing.
    CaseFold,
    /// Equal after trimming whitespace.
    Trim,
    /// One inserted, deleted or replaced character apart.
    OneEdit,
}

/// Ids of at most this many characters are exempt from `OneEdit`: `a` and `b` are
/// one edit apart and mean nothing. So are edits of digits only (see [`one_edit`]).
const SHORT: usize = 2;
/// A run of more candidates than this is skipped, so a crafted set of ids cannot make
/// the check quadratic.
const MAX_RUN: usize = 64;

/// For each id, the others it resembles and how: each pair on both sides, the
/// strongest likeness only, sorted by index.
pub fn near_duplicates(ids: &[&str]) -> Vec<Vec<(usize, Likeness)>> {
    let mut pairs: HashMap<(u32, u32), Likeness> = HashMap::new();
    let mut note = |a: u32, b: u32, how: Likeness| {
        if a != b {
            let key = (a.min(b), a.max(b));
            let entry = pairs.entry(key).or_insert(how);
            *entry = (*entry).min(how);
        }
    };
    let index = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);

    let folded: Vec<(u64, u32)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (fnv(id.chars().flat_map(char::to_lowercase)), index(i)))
        .collect();
    for_runs(folded, |a, b| {
        let (x, y) = (ids[a as usize], ids[b as usize]);
        if x.to_lowercase() == y.to_lowercase() {
            note(a, b, Likeness::CaseFold);
        }
    });

    let trimmed: Vec<(u64, u32)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (fnv(id.trim().chars()), index(i)))
        .collect();
    for_runs(trimmed, |a, b| {
        if ids[a as usize].trim() == ids[b as usize].trim() {
            note(a, b, Likeness::Trim);
        }
    });

    // Deletion neighbourhood: two ids one edit apart share a string that is one of
    // them with a character removed, or one of them whole.
    let mut neighbours: Vec<(u64, u32)> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if id.chars().count() <= SHORT {
            continue;
        }
        neighbours.push((fnv(id.chars()), index(i)));
        for (at, c) in id.char_indices() {
            let without = id[..at].chars().chain(id[at + c.len_utf8()..].chars());
            neighbours.push((fnv(without), index(i)));
        }
    }
    for_runs(neighbours, |a, b| {
        if one_edit(ids[a as usize], ids[b as usize]) {
            note(a, b, Likeness::OneEdit);
        }
    });

    let mut out = vec![Vec::new(); ids.len()];
    for ((a, b), how) in pairs {
        out[a as usize].push((b as usize, how));
        out[b as usize].push((a as usize, how));
    }
    for list in &mut out {
        list.sort_unstable();
    }
    out
}

/// Sorts `(hash, id)` and calls `check` for each pair of distinct ids in a run of
/// equal hashes (runs longer than [`MAX_RUN`] are skipped).
fn for_runs(mut keyed: Vec<(u64, u32)>, mut check: impl FnMut(u32, u32)) {
    keyed.sort_unstable();
    keyed.dedup();
    let mut start = 0;
    while start < keyed.len() {
        let hash = keyed[start].0;
        let end = keyed[start..]
            .iter()
            .position(|(h, _)| *h != hash)
            .map_or(keyed.len(), |n| start + n);
        let run = &keyed[start..end];
        if run.len() > 1 && run.len() <= MAX_RUN {
            for (n, (_, a)) in run.iter().enumerate() {
                for (_, b) in &run[n + 1..] {
                    check(*a, *b);
                }
            }
        }
        start = end;
    }
}

/// FNV-1a over the UTF-8 of `chars`: the same characters hash the same however the
/// string was assembled.
fn fnv(chars: impl Iterator<Item = char>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = [0u8; 4];
    for c in chars {
        for byte in c.encode_utf8(&mut buf).bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Levenshtein distance exactly 1, over characters, where the edit is not only
/// digits: `user-123` and `user-124` are two users numbered in sequence, not a typo.
fn one_edit(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return one_edit_in(a.as_bytes(), b.as_bytes(), |c: &u8| c.is_ascii_digit());
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    one_edit_in(&a, &b, |c: &char| c.is_ascii_digit())
}

fn one_edit_in<T: PartialEq>(a: &[T], b: &[T], is_digit: impl Fn(&T) -> bool) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.len() <= SHORT || long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() {
        prefix < short.len()
            && short[prefix + 1..] == long[prefix + 1..]
            && !(is_digit(&short[prefix]) && is_digit(&long[prefix]))
    } else {
        short[prefix..] == long[prefix + 1..] && !is_digit(&long[prefix])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(ids: &[&str]) -> Vec<(usize, usize, Likeness)> {
        let mut out = Vec::new();
        for (a, list) in near_duplicates(ids).into_iter().enumerate() {
            for (b, how) in list {
                if a < b {
                    out.push((a, b, how));
                }
            }
        }
        out
    }

    #[test]
    fn finds_the_three_kinds() {
        let ids = [
            "Acme", "acme", "acme ", "acmf", "bob", "ab", "ac", "héllo", "hello",
        ];
        assert_eq!(
            pairs(&ids),
            vec![
                (0, 1, Likeness::CaseFold),
                (1, 2, Likeness::Trim),
                (1, 3, Likeness::OneEdit),
                (7, 8, Likeness::OneEdit),
            ]
        );
    }

    #[test]
    fn one_edit_is_exact() {
        assert!(one_edit("acme", "acm"));
        assert!(one_edit("acme", "acmee"));
        assert!(one_edit("acme", "xcme"));
        assert!(!one_edit("acme", "acme"));
        assert!(!one_edit("acme", "caem"));
        assert!(!one_edit("ab", "ac"), "short ids are exempt");
        assert!(
            !one_edit("user-123", "user-124"),
            "sequence numbers are exempt"
        );
        assert!(!one_edit("user-12", "user-123"));
        assert!(one_edit("user-1", "user-l"));
        assert!(one_edit("héllo", "hello"));
    }

    #[test]
    fn agrees_with_comparing_every_pair() {
        let alphabet = ["a", "b", "A", " "];
        let mut ids: Vec<String> = Vec::new();
        for n in 0..400u32 {
            let len = 1 + n % 5;
            ids.push(
                (0..len)
                    .map(|k| alphabet[((n * 7 + k * 3) % 4) as usize])
                    .collect(),
            );
        }
        ids.sort();
        ids.dedup();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let got = pairs(&refs);
        let mut want = Vec::new();
        for a in 0..refs.len() {
            for b in a + 1..refs.len() {
                let (x, y) = (refs[a], refs[b]);
                let how = if x.to_lowercase() == y.to_lowercase() {
                    Some(Likeness::CaseFold)
                } else if x.trim() == y.trim() {
                    Some(Likeness::Trim)
                } else if one_edit(x, y) {
                    Some(Likeness::OneEdit)
                } else {
                    None
                };
                if let Some(how) = how {
                    want.push((a, b, how));
                }
            }
        }
        // Runs capped at MAX_RUN may hide pairs in this dense set; every pair found
        // must be right, and (with no run over the cap here) none missing.
        assert_eq!(got, want);
    }
}
