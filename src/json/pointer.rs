//! JSON pointers (RFC 6901) with two wildcards: `*` is every element of an array or
//! member of an object at that level, `**` is any depth (zero or more levels).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Any,
    AnyDepth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    pub steps: Vec<Step>,
    pub text: String,
}

impl Pointer {
    /// `""` is the whole document (RFC 6901).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self {
                steps: Vec::new(),
                text: String::new(),
            });
        }
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| format!("JSON pointer {text:?} must start with /"))?;
        let mut steps = Vec::new();
        for raw in rest.split('/') {
            steps.push(match raw {
                "*" => Step::Any,
                "**" => Step::AnyDepth,
                _ => {
                    let mut key = String::with_capacity(raw.len());
                    let mut chars = raw.chars();
                    while let Some(c) = chars.next() {
                        match (c, c == '~') {
                            (_, false) => key.push(c),
                            (_, true) => match chars.next() {
                                Some('0') => key.push('~'),
                                Some('1') => key.push('/'),
                                _ => {
                                    return Err(format!(
                                        "JSON pointer {text:?}: ~ must be followed by 0 or 1"
                                    ))
                                }
                            },
                        }
                    }
                    Step::Key(key)
                }
            });
        }
        if steps.last() == Some(&Step::AnyDepth) {
            return Err(format!(
                "JSON pointer {text:?} cannot end with **; name the field it reaches"
            ));
        }
        Ok(Self {
            steps,
            text: text.to_owned(),
        })
    }

    pub fn has_wildcard(&self) -> bool {
        self.steps.iter().any(|s| !matches!(s, Step::Key(_)))
    }
}

impl Step {
    /// Whether this step takes the child named `key` (an object member) or at `index`
    /// (an array element). `**` spans levels and is handled by [`Cursor::descend`].
    pub fn takes(&self, key: Option<&str>, index: Option<usize>) -> bool {
        match self {
            Step::Key(k) => key == Some(k.as_str()) || index.is_some_and(|i| k.parse() == Ok(i)),
            Step::Any => true,
            Step::AnyDepth => false,
        }
    }
}

/// Where a walk through a JSON document stands in one of several pointers: `tag` says
/// which pointer, `steps[step..]` are still to match. Shared by the request rewriter
/// and the response pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor<T> {
    pub tag: T,
    pub step: usize,
}

impl<T: Copy + PartialEq> Cursor<T> {
    pub fn start(tag: T) -> Self {
        Self { tag, step: 0 }
    }

    /// The cursors a child reaches from `cursors` at its parent. A `**` matches one
    /// more level (its cursor stays) or none (the step after it takes the child).
    pub fn descend<'p>(
        cursors: &[Self],
        pointer: impl Fn(T) -> &'p Pointer,
        key: Option<&str>,
        index: Option<usize>,
    ) -> Vec<Self> {
        let mut next: Vec<Self> = Vec::new();
        let mut push = |c: Self| {
            if !next.contains(&c) {
                next.push(c);
            }
        };
        for c in cursors {
            let steps = &pointer(c.tag).steps;
            let mut at = c.step;
            while steps.get(at) == Some(&Step::AnyDepth) {
                push(Cursor {
                    tag: c.tag,
                    step: at,
                });
                at += 1;
            }
            if steps.get(at).is_some_and(|s| s.takes(key, index)) {
                push(Cursor {
                    tag: c.tag,
                    step: at + 1,
                });
            }
        }
        next
    }

    /// True when [`Cursor::descend`] into an array element gives the same cursors for
    /// every index: no cursor's next step is a key that reads as an index.
    pub fn index_free<'p>(cursors: &[Self], pointer: impl Fn(T) -> &'p Pointer) -> bool {
        cursors.iter().all(|c| {
            let steps = &pointer(c.tag).steps;
            let next = steps[c.step.min(steps.len())..]
                .iter()
                .find(|s| **s != Step::AnyDepth);
            !matches!(next, Some(Step::Key(k)) if k.parse::<usize>().is_ok())
        })
    }

    /// True when the whole pointer has matched: the cursor stands on its target.
    pub fn at_end(&self, pointer: &Pointer) -> bool {
        self.step == pointer.steps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escapes_and_wildcards() {
        let p = Pointer::parse("/a~1b/*/**/c~0").unwrap();
        assert_eq!(
            p.steps,
            [
                Step::Key("a/b".into()),
                Step::Any,
                Step::AnyDepth,
                Step::Key("c~".into())
            ]
        );
        assert!(p.has_wildcard());
        assert!(!Pointer::parse("/user_id").unwrap().has_wildcard());
        assert!(Pointer::parse("user_id").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("/a/**").is_err());
    }
}
