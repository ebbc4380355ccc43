//! Path templates (SPEC 4): literal segments, `{name}` for one segment, and a final
//! `{*rest}` for zero or more segments.

use crate::path::CanonicalPath;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    rest: Option<String>,
    trailing_slash: bool,
}

/// Values a matched path gave a template's named segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    pub params: Vec<(String, String)>,
    /// The segments `{*rest}` took, still decoded.
    pub rest: Vec<String>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let canonical = CanonicalPath::parse(text)
            .map_err(|e| format!("path template {text:?} is not a canonical path: {e}"))?;
        let mut segments = Vec::new();
        let mut rest = None;
        let count = canonical.segments.len();
        for (i, raw) in canonical.segments.into_iter().enumerate() {
            let Some(inner) = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
                if raw.contains(['{', '}']) {
                    return Err(format!("segment {raw:?} mixes braces with text; a parameter is a whole segment like {{id}}"));
                }
                segments.push(Segment::Literal(raw));
                continue;
            };
            let (name, is_rest) = match inner.strip_prefix('*') {
                Some(name) => (name, true),
                None => (inner, false),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "parameter {raw:?} needs a name of letters, digits and _"
                ));
            }
            let taken = segments
                .iter()
                .any(|s| matches!(s, Segment::Param(p) if p == name));
            if taken {
                return Err(format!("parameter {{{name}}} appears twice"));
            }
            if is_rest {
                if i + 1 != count || canonical.trailing_slash {
                    return Err(format!("{{*{name}}} must be the last segment"));
                }
                rest = Some(name.to_owned());
            } else {
                segments.push(Segment::Param(name.to_owned()));
            }
        }
        Ok(Self {
            segments,
            rest,
            trailing_slash: canonical.trailing_slash,
        })
    }

    pub fn matches(&self, path: &CanonicalPath) -> Option<Captures> {
        let fixed = self.segments.len();
        match &self.rest {
            None if path.segments.len() != fixed || path.trailing_slash != self.trailing_slash => {
                return None
            }
            Some(_) if path.segments.len() < fixed => return None,
            _ => {}
        }
        let mut captures = Captures::default();
        for (template, value) in self.segments.iter().zip(&path.segments) {
            match template {
                Segment::Literal(literal) if literal != value => return None,
                Segment::Literal(_) => {}
                Segment::Param(name) => captures.params.push((name.clone(), value.clone())),
            }
        }
        if self.rest.is_some() {
            captures.rest = path.segments[fixed..].to_vec();
        }
        Some(captures)
    }

    /// True when every path this template's `other` matches is matched by `self` too,
    /// which is how `check` finds routes that an earlier route shadows.
    pub fn covers(&self, other: &Template) -> bool {
        let pairs = self.segments.iter().zip(&other.segments);
        let prefix_covered = pairs.clone().all(|pair| match pair {
            (Segment::Param(_), _) => true,
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            (Segment::Literal(_), Segment::Param(_)) => false,
        });
        if !prefix_covered {
            return false;
        }
        match (&self.rest, &other.rest) {
            (Some(_), _) => other.segments.len() >= self.segments.len(),
            (None, Some(_)) => false,
            (None, None) => {
                other.segments.len() == self.segments.len()
                    && other.trailing_slash == self.trailing_slash
            }
        }
    }

    /// The segment index of `{name}`, for rewriting it.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.segments
            .iter()
            .position(|s| matches!(s, Segment::Param(p) if p == name))
    }

    pub fn rest_name(&self) -> Option<&str> {
        self.rest.as_deref()
    }

    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> CanonicalPath {
        CanonicalPath::parse(raw).unwrap()
    }

    #[test]
    fn matches_params_and_rest() {
        let t = Template::parse("/v1/sessions/{session_id}/memories").unwrap();
        let c = t.matches(&path("/v1/sessions/s%201/memories")).unwrap();
        assert_eq!(c.params, [("session_id".to_owned(), "s 1".to_owned())]);
        assert!(t.matches(&path("/v1/sessions/s1/memories/")).is_none());
        assert!(t.matches(&path("/v1/Sessions/s1/memories")).is_none());
        assert!(t.matches(&path("/v1/sessions/memories")).is_none());

        let r = Template::parse("/files/{*rest}").unwrap();
        assert_eq!(
            r.matches(&path("/files")).unwrap().rest,
            Vec::<String>::new()
        );
        assert_eq!(r.matches(&path("/files/a/b")).unwrap().rest, ["a", "b"]);
        assert!(r.matches(&path("/other/a")).is_none());
    }

    #[test]
    fn refuses_bad_templates() {
        assert!(Template::parse("/a/{*rest}/b").is_err());
        assert!(Template::parse("/a/{id}/{id}").is_err());
        assert!(Template::parse("/a/x{id}").is_err());
        assert!(Template::parse("/a/../b").is_err());
        assert!(Template::parse("/a/{}").is_err());
    }

    #[test]
    fn covers_finds_shadowing() {
        let any = Template::parse("/v1/{*rest}").unwrap();
        let param = Template::parse("/v1/{id}").unwrap();
        let literal = Template::parse("/v1/health").unwrap();
        assert!(any.covers(&param) && any.covers(&literal) && param.covers(&literal));
        assert!(!literal.covers(&param) && !param.covers(&any));
        assert!(!param.covers(&Template::parse("/v1/{id}/").unwrap()));
    }
}
