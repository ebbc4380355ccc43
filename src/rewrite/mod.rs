//! Stage 4: the request into the caller's namespace (SPEC 4.1). Path segments, query
//! parameters, headers and JSON fields named by the route's rules are bound, set or
//! prefixed; everything else passes untouched, and bodies of routes without JSON rules
//! stream through without being buffered.

pub mod compile;
pub mod json;
pub mod query;
pub mod template;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::body::{self, ProxyBody};
use crate::budget::{Budget, Held};
use crate::namespace::{Namespace, NamespaceScheme};
use crate::path::CanonicalPath;
use crate::refusal::Refusal;
use crate::store::records;
use json::JsonRule;
use template::ValueTemplate;

/// A rewrite mode of the SPEC 4.1 table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Bind,
    Set,
    Prefix,
    /// `prefix!`: a missing value is refused, since it would mean "everyone".
    PrefixRequired,
    Prepend,
    /// `prepend:D`: a string of labels joined by `D` gets `{ns}` as its first label
    /// (`a.b` -> `{ns}.a.b`, `""` -> `{ns}`), and is `{ns}` when absent: the dotted
    /// namespace of a query string, as `prepend` is the array of a JSON body.
    PrependJoined(Arc<str>),
    /// `add:N`: a whole number gets N more (a depth that must follow a prepended
    /// label); absent or JSON `null` stays as sent.
    Add(u32),
    Deny,
    /// `owned:KIND`: an opaque backend id, forwarded as sent, that the caller must own
    /// (the pipeline checks the ids this stage collects).
    Owned(Arc<str>),
}

/// The opaque ids a request named at `owned:` locations: (kind, id).
pub type OwnedIds = Vec<(String, String)>;

/// Ids one request may name at `owned:` locations; each is checked and kept for the
/// audit line and `forget`, so their number is bounded like a body.
pub const MAX_OWNED_IDS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Path,
    Query,
    Json,
    Header,
}

impl Mode {
    pub fn parse(text: &str, location: Location) -> Result<Self, String> {
        let mode = match text {
            "bind" => Self::Bind,
            "set" => Self::Set,
            "prefix" => Self::Prefix,
            "prefix!" => Self::PrefixRequired,
            "prepend" => Self::Prepend,
            "deny" => Self::Deny,
            other => match other.split_once(':') {
                Some(("owned", kind)) => Self::Owned(records::kind(kind)?),
                Some(("prepend", delimiter)) => Self::PrependJoined(Self::delimiter(delimiter)?),
                Some(("add", n)) => Self::Add(match n.parse::<u32>() {
                    Ok(n @ 1..=1000) => n,
                    _ => return Err(format!("add:{n}: N must be a whole number from 1 to 1000")),
                }),
                _ => {
                    return Err(format!(
                        "unknown rewrite mode {other:?}; use bind, set, prefix, prefix!, prepend, prepend:DELIMITER, add:N, owned:KIND or deny"
                    ))
                }
            },
        };
        let allowed = match mode {
            Self::Prepend => location == Location::Json,
            Self::Add(_) => matches!(location, Location::Json | Location::Query),
            Self::Deny => location != Location::Path,
            _ => true,
        };
        if !allowed {
            return Err(format!(
                "{text} is not allowed in {location:?} rules (see the SPEC 4.1 table)"
            )
            .to_lowercase());
        }
        Ok(mode)
    }

    /// A delimiter of 1 to 8 visible ASCII characters, none of them alphanumeric:
    /// whether it can occur in a namespace root is the route compiler's check.
    fn delimiter(text: &str) -> Result<Arc<str>, String> {
        let fine = (1..=8).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_punctuation() && b != b'"' && b != b'\\');
        match fine {
            true => Ok(Arc::from(text)),
            false => Err(format!(
                "prepend:{text}: the delimiter must be 1 to 8 punctuation characters (not \" or \\), such as prepend:."
            )),
        }
    }

    /// True for modes that need a value to exist or create one.
    fn needs_value(&self) -> bool {
        matches!(
            self,
            Self::Bind | Self::Set | Self::Prepend | Self::PrependJoined(_) | Self::PrefixRequired
        )
    }

    /// True for modes that confine the call to the caller upstream (everything but
    /// `deny` and `add`), so the backend's own limit and offset count only its items.
    pub fn scopes(&self) -> bool {
        !matches!(self, Self::Deny | Self::Add(_))
    }
}

impl RouteRewrite {
    /// Whether any rule confines the request to the caller upstream.
    pub fn scopes(&self) -> bool {
        self.path.iter().any(|(_, m)| m.scopes())
            || self.query.iter().any(|(_, m)| m.scopes())
            || self.header.iter().any(|(_, m)| m.scopes())
            || self.json.iter().any(|r| r.mode.scopes())
            || self.set_headers.iter().any(|(_, t)| t.is_templated())
    }
}

/// A route's compiled rewrite rules.
#[derive(Debug, Clone, Default)]
pub struct RouteRewrite {
    /// (segment index, mode).
    pub path: Vec<(usize, Mode)>,
    pub query: Vec<(String, Mode)>,
    pub header: Vec<(HeaderName, Mode)>,
    pub json: Vec<JsonRule>,
    pub set_headers: Vec<(HeaderName, ValueTemplate)>,
}

/// Stage 4's settings beside the per-route rules.
#[derive(Debug, Clone)]
pub struct RewriteSettings {
    /// `[limits] max_body`: the largest request body a rewrite may buffer.
    pub max_body: usize,
}

/// A borrowed view of the namespace for the rewriters.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub root: &'a str,
    pub tenant: Option<&'a str>,
    pub separator: &'a str,
}

impl<'a> Target<'a> {
    pub fn of(namespace: &'a Namespace, scheme: &'a NamespaceScheme) -> Self {
        Self {
            root: &namespace.root,
            tenant: namespace.tenant.as_deref(),
            separator: scheme.separator(),
        }
    }

    /// A bound value may name the caller by tenant id or by namespace root.
    pub fn is_self(&self, value: &str) -> bool {
        value == self.root || self.tenant == Some(value)
    }

    /// `value`'s labels (joined by `delimiter`) under the root as the first label.
    pub fn joined(&self, delimiter: &str, value: &str) -> String {
        match value.is_empty() {
            true => self.root.to_owned(),
            false => [self.root, value].join(delimiter),
        }
    }

    pub fn prefixed(&self, value: &str) -> String {
        let mut out = String::with_capacity(self.root.len() + self.separator.len() + value.len());
        out.push_str(self.root);
        out.push_str(self.separator);
        out.push_str(value);
        out
    }
}

/// The request after stage 4, ready for hygiene and forwarding.
pub struct Rewritten {
    pub path: CanonicalPath,
    pub query: Option<String>,
    /// Headers to set upstream after hygiene: templates rendered, rewritten values.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: ProxyBody,
    /// Set when the body was rebuilt and its length changed hands.
    pub content_length: Option<usize>,
    /// What the request named at `owned:` locations, for the ownership check.
    pub owned: OwnedIds,
}

/// The request as stage 4 receives it.
pub struct Incoming<'a> {
    pub path: CanonicalPath,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: ProxyBody,
    /// What a body this stage buffers is taken from.
    pub budget: &'a Arc<Budget>,
}

/// Rewrites a request into `target`'s namespace; without a target (routes other than
/// tenant routes) only fixed `set_headers` apply.
pub async fn request(
    settings: &RewriteSettings,
    rules: &RouteRewrite,
    target: Option<Target<'_>>,
    incoming: Incoming<'_>,
) -> Result<Rewritten, Refusal> {
    let Incoming {
        mut path,
        query,
        headers,
        body,
        budget,
    } = incoming;

    let mut out_headers = Vec::with_capacity(rules.set_headers.len() + rules.header.len());
    for (name, template) in &rules.set_headers {
        out_headers.push((name.clone(), template.render(target.as_ref())?));
    }
    let Some(target) = target else {
        return Ok(Rewritten {
            path,
            query: query.map(str::to_owned),
            headers: out_headers,
            body,
            content_length: None,
            owned: OwnedIds::new(),
        });
    };

    let mut owned = OwnedIds::new();
    for (index, mode) in &rules.path {
        let value = &mut path.segments[*index];
        if let Mode::Owned(kind) = mode {
            owned.push((kind.to_string(), value.clone()));
            continue;
        }
        *value =
            rewrite_value(mode, Some(value.as_str()), &target, "the path")?.unwrap_or_default();
    }
    let query = match query::rewrite(query, &rules.query, &target, &mut owned)? {
        Some(rewritten) => Some(rewritten),
        None => query.map(str::to_owned),
    };
    for (name, mode) in &rules.header {
        let mut sent = headers.get_all(name).iter();
        let value = match (sent.next(), sent.next()) {
            (_, Some(_)) => {
                return Err(Refusal::BadRequest(format!(
                    "the header {name} appears more than once; send it once"
                )))
            }
            (None, None) => None,
            (Some(v), None) => Some(
                std::str::from_utf8(v.as_bytes())
                    .map_err(|_| Refusal::BadRequest(format!("the header {name} is not UTF-8")))?,
            ),
        };
        if let (Mode::Owned(kind), Some(value)) = (mode, value) {
            // Forwarded as sent (the header is stripped with every rule's header).
            owned.push((kind.to_string(), value.to_owned()));
            let sent = HeaderValue::from_str(value).map_err(|_| {
                Refusal::BadRequest(format!("the header {name} is not a valid header value"))
            })?;
            out_headers.push((name.clone(), sent));
            continue;
        }
        if let Some(new) = rewrite_value(mode, value, &target, name.as_str())? {
            let new = HeaderValue::from_str(&new).map_err(|_| {
                Refusal::BadRequest(format!("the rewritten {name} is not a valid header value"))
            })?;
            out_headers.push((name.clone(), new));
        }
    }

    if rules.json.is_empty() {
        return Ok(Rewritten {
            path,
            query,
            headers: out_headers,
            body,
            content_length: None,
            owned,
        });
    }
    let mut held = budget.claim();
    let bytes = read_json_body(settings.max_body, headers, body, &mut held).await?;
    let (body, content_length) = if bytes.is_empty() {
        if rules
            .json
            .iter()
            .any(|r| r.mode.needs_value() && !r.pointer.has_wildcard())
        {
            return Err(Refusal::BadRequest(
                "this route needs a JSON body".to_owned(),
            ));
        }
        (body::empty(), None)
    } else {
        let rewritten = body::heavy(bytes.len(), || {
            json::rewrite_within(&bytes, &rules.json, &target, Some(&mut held))
        });
        let (rewritten, named) = rewritten?;
        owned.extend(named);
        if owned.len() > MAX_OWNED_IDS {
            return Err(Refusal::BadRequest(format!(
                "the request names more than {MAX_OWNED_IDS} opaque ids; send fewer at once"
            )));
        }
        match rewritten {
            Some(rewritten) => {
                let len = rewritten.len();
                (body::full(rewritten), Some(len))
            }
            None => (body::full(bytes), None),
        }
    };
    // The buffered bytes count against the budget until the upstream has taken them.
    let body = body::on_end(body, move |_| drop(held));
    Ok(Rewritten {
        path,
        query,
        headers: out_headers,
        body,
        content_length,
        owned,
    })
}

/// Applies a mode to a single value (a path segment, a query parameter or a header):
/// `None` means "leave it absent".
fn rewrite_value(
    mode: &Mode,
    value: Option<&str>,
    target: &Target,
    what: &str,
) -> Result<Option<String>, Refusal> {
    Ok(match (mode, value) {
        (Mode::Bind | Mode::Set | Mode::PrependJoined(_), None) => Some(target.root.to_owned()),
        (Mode::PrependJoined(delimiter), Some(v)) => Some(target.joined(delimiter, v)),
        (Mode::Add(n), Some(v)) => Some(added(v, *n, &what)?),
        (Mode::Bind, Some(v)) if !target.is_self(v) => return Err(Refusal::TenantMismatch),
        (Mode::Bind | Mode::Set, Some(_)) => Some(target.root.to_owned()),
        (Mode::Prefix | Mode::PrefixRequired, Some(v)) => Some(target.prefixed(v)),
        (Mode::PrefixRequired, None) => {
            return Err(Refusal::BadRequest(format!(
                "{what} must carry an id; without it the call would reach every user's data"
            )))
        }
        (Mode::Deny, Some(_)) => {
            return Err(Refusal::BadRequest(format!(
                "{what} may not be sent on this route"
            )))
        }
        (Mode::Prefix | Mode::Deny | Mode::Prepend | Mode::Add(_) | Mode::Owned(_), None)
        | (Mode::Prepend, Some(_)) => None,
        (Mode::Owned(_), Some(v)) => Some(v.to_owned()),
    })
}

/// `add:N` on a whole number's text: digits only (no sign, fraction or exponent), so
/// the backend reads the same number that was checked.
pub fn added(text: &str, n: u32, what: &dyn std::fmt::Display) -> Result<String, Refusal> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .and_then(|v| v.checked_add(u64::from(n)))
        .map(|v| v.to_string())
        .ok_or_else(|| {
            Refusal::BadRequest(format!(
                "{what} must be a whole number: digits only, below 2^64 once {n} is added"
            ))
        })
}

/// Buffers a body that JSON rules must read: JSON media type, no content coding, at
/// most `[limits] max_body`, checked before a byte past the limit is read.
async fn read_json_body(
    max: usize,
    headers: &HeaderMap,
    body: ProxyBody,
    held: &mut Held,
) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(Refusal::BodyTooLarge);
    }
    // Every coding in every Content-Encoding field: a second field naming gzip is as
    // much a coding as the first.
    let coded = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity"));
    if coded {
        return Err(Refusal::UnsupportedMediaType(
            "send the body without Content-Encoding; it must be rewritten",
        ));
    }
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::json::is_media_type);
    if !is_json && declared != Some(0) {
        let body_present = declared.is_some() || !http_body::Body::is_end_stream(&body);
        if body_present {
            return Err(Refusal::UnsupportedMediaType(
                "send the body as application/json; it must be rewritten",
            ));
        }
    }
    let bytes = collect_client_body(body, max, held).await?;

    if !bytes.is_empty() && !is_json {
        return Err(Refusal::UnsupportedMediaType(
            "send the body as application/json; it must be rewritten",
        ));
    }
    Ok(bytes)
}

/// Reads a client's whole body within `max` and the buffer budget: 413, 503
/// `overloaded`, or 400 for a body that breaks off.
pub async fn collect_client_body(
    body: ProxyBody,
    max: usize,
    held: &mut Held,
) -> Result<Bytes, Refusal> {
    body::collect_within(body, max, held).await.map_err(|e| {
        if body::is_too_large(&e) {
            Refusal::BodyTooLarge
        } else if body::is_over_budget(&e) {
            Refusal::Overloaded
        } else {
            Refusal::BadRequest("the request body could not be read".to_owned())
        }
    })
}
