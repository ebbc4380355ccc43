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
    pub fn parse(text: &str) -> Result<Self, String> {
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
