//! The compiled route table: tried in file order, first match wins, nothing matched
//! means refused.

use http::Method;

use super::template::{Captures, Template};
use super::Scope;
use crate::path::CanonicalPath;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    Any,
    Only(Vec<Method>),
}

impl Methods {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::Any);
        }
        let mut methods = Vec::new();
        for name in text.split('|') {
            let plausible = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
            if !plausible {
                return Err(format!(
                    "method {name:?} is not an upper-case method name (methods are case-sensitive: GET, POST, ...)"
                ));
            }
            let method = Method::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            if !methods.contains(&method) {
                methods.push(method);
            }
        }
        Ok(Self::Only(methods))
    }

    pub fn allows(&self, method: &Method) -> bool {
        match self {
            Self::Any => true,
            Self::Only(list) => list.contains(method),
        }
    }

    fn includes(&self, other: &Methods) -> bool {
        match (self, other) {
            (Self::Any, _) => true,
            (Self::Only(_), Self::Any) => false,
            (Self::Only(mine), Self::Only(theirs)) => theirs.iter().all(|m| mine.contains(m)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Label in logs and metrics; the match string unless the config names it.
    pub name: String,
    /// Its position in the table: the key of every stage's rules for it and of its
    /// metric handles.
    pub index: usize,
    /// The match string as the config wrote it.
    pub match_text: String,
    pub methods: Methods,
    pub template: Template,
    pub scope: Scope,
}

impl Route {
    /// Parses a match string, `METHOD[|METHOD...] /path/template` or `* /path`.
    pub fn parse_match(text: &str) -> Result<(Methods, Template), String> {
        let (methods, path) = text.trim().split_once(char::is_whitespace).ok_or_else(|| {
            format!("match {text:?} needs a method and a path, like \"GET /v1/memories\"")
        })?;
        Ok((Methods::parse(methods)?, Template::parse(path.trim())?))
    }
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    pub fn select(&self, method: &Method, path: &CanonicalPath) -> Option<(&Route, Captures)> {
        self.routes
            .iter()
            .filter(|route| route.methods.allows(method))
            .find_map(|route| route.template.matches(path).map(|c| (route, c)))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Pairs `(later, earlier)` of indexes where the earlier route matches every request
    /// the later one would, so the later one can never be reached.
    pub fn shadowed(&self) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for (later, route) in self.routes.iter().enumerate() {
            let earlier = self.routes[..later].iter().position(|first| {
                first.methods.includes(&route.methods) && first.template.covers(&route.template)
            });
            if let Some(earlier) = earlier {
                found.push((later, earlier));
            }
        }
        found
    }
}
