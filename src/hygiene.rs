//! Header hygiene (SPEC 5): what a client may not pass to the upstream, and what
//! tenantgate adds. The strip set is computed once per config snapshot.

use std::collections::HashSet;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Always removed from requests: hop-by-hop headers (RFC 9110 7.6.1 and the legacy
/// ones), `host` (the upstream's authority replaces it), `expect` (tenantgate already
/// answered it), the privileged token and the method/URL override headers that let a
/// client re-route a request behind the proxy's back.
const ALWAYS_STRIPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "expect",
    "x-tenantgate-token",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// Removed from upstream responses before they reach the client.
const RESPONSE_HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Carries the privileged token (SPEC 4); never forwarded, never set by the config.
pub const PRIVILEGED_TOKEN_HEADER: &str = "x-tenantgate-token";

/// A header name the config may set upstream: not one that frames or routes the
/// request, nor the privileged token.
pub fn settable_header(name: &str) -> Result<HeaderName, String> {
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    let frames = matches!(
        header.as_str(),
        "host"
            | "connection"
            | "transfer-encoding"
            | "content-length"
            | "te"
            | "upgrade"
            | "keep-alive"
            | "trailer"
    );
    if frames || same_header_loosely(header.as_str(), PRIVILEGED_TOKEN_HEADER) {
        return Err(format!(
            "{name} cannot be set by the config (it frames or routes the request)"
        ));
    }
    Ok(header)
}
const MAX_REQUEST_ID_BYTES: usize = 128;

/// Header names compared the way a lenient component might: any case, `_` for `-`.
/// `name` as stored by `http` is already lower-case.
pub fn same_header_loosely(name: &str, other: &str) -> bool {
    name.len() == other.len()
        && name
            .bytes()
            .zip(other.bytes())
            .all(|(a, b)| fold(a) == fold(b))
}

fn fold(byte: u8) -> u8 {
    match byte {
        b'_' => b'-',
        other => other.to_ascii_lowercase(),
    }
}

/// The names the `Connection` header lists, which are hop-by-hop for this request.
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Every request header name tenantgate removes, folded (lower case, `-` for `_`).
#[derive(Clone, Default)]
pub struct StripSet {
    folded: HashSet<String>,
}

/// Sorted, so the compiled config prints the same every time.
impl std::fmt::Debug for StripSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.folded.iter().collect();
        names.sort();
        f.debug_set().entries(names).finish()
    }
}

impl StripSet {
    /// `configured` is every header name any part of the config can set (on any route,
    /// for any tenant) plus the identity header and credential headers.
    pub fn new<'a>(configured: impl IntoIterator<Item = &'a str>) -> Self {
        let folded = ALWAYS_STRIPPED
            .iter()
            .copied()
            .chain(configured)
            .map(|name| name.bytes().map(|b| fold(b) as char).collect())
            .collect();
        Self { folded }
    }

    fn strips(&self, name: &str) -> bool {
        if name.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
            let folded: String = name.bytes().map(|b| fold(b) as char).collect();
            self.folded.contains(&folded)
        } else {
            self.folded.contains(name)
        }
    }

    /// The client's headers minus everything the upstream must not see from it.
    pub fn clean(&self, incoming: HeaderMap) -> HeaderMap {
        let named_in_connection: Vec<String> = connection_tokens(&incoming)
            .map(|t| t.bytes().map(|b| fold(b) as char).collect())
            .collect();
        let mut kept = HeaderMap::with_capacity(incoming.len());
        let mut current: Option<HeaderName> = None;
        for (name, value) in incoming {
            if let Some(name) = name {
                current = Some(name);
            }
            let Some(name) = &current else { continue };
            let dropped = self.strips(name.as_str())
                || named_in_connection
                    .iter()
                    .any(|t| same_header_loosely(name.as_str(), t));
            if !dropped {
                kept.append(name.clone(), value);
            }
        }
        kept
    }
}

/// The request id a client sent, if usable, else a fresh one; it is echoed to the
/// client and forwarded upstream so one id follows the request through every log.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(&REQUEST_ID).iter();
    if let (Some(id), None) = (sent.next(), sent.next()) {
        let usable = !id.is_empty()
            && id.len() <= MAX_REQUEST_ID_BYTES
            && id.as_bytes().iter().all(|b| b.is_ascii_graphic());
        if usable {
            return id.clone();
        }
    }
    // A thread-local generator (uuid's `fast-rng`), encoded on the stack: no syscall
    // and one allocation per request.
    let mut encoded = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let fresh = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut encoded);
    HeaderValue::from_str(fresh).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// A number as a header value in one allocation: http's `From<u64>` takes two (a
/// buffer, then the shared header `freeze` adds), and the full route sets seven
/// (the rate-limit and quota headers, `Content-Length`).
pub fn decimal<N: itoa::Integer>(n: N) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    // Digits (and a leading minus) are always a valid value; the fallback is unreachable.
    HeaderValue::from_maybe_shared(Bytes::copy_from_slice(digits.as_bytes()))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Appends the client's address to `X-Forwarded-For` (keeping what earlier proxies
/// wrote) and names the scheme the client used unless an earlier hop already did.
pub fn add_forwarding(headers: &mut HeaderMap, peer: SocketAddr, scheme: &'static str) {
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    use std::fmt::Write as _;
    // Built in one buffer: the chain, then the address written straight into it.
    let mut chain = String::with_capacity(48);
    for earlier in headers.get_all(&XFF).iter().filter_map(|v| v.to_str().ok()) {
        chain.push_str(earlier);
        chain.push_str(", ");
    }
    // Writing into a String cannot fail.
    let _ = write!(chain, "{}", peer.ip());
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(XFF, value);
    }
    if !headers.contains_key(&XFP) {
        headers.insert(XFP, HeaderValue::from_static(scheme));
    }
}

/// Removes hop-by-hop headers, and those the response's `Connection` names, from an
/// upstream response.
pub fn clean_response(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in RESPONSE_HOP_BY_HOP {
        headers.remove(*name);
    }
    for name in &named {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_read_as_http_writes_them() {
        for n in [0u64, 7, 42, 1_000_000, u64::MAX] {
            assert_eq!(decimal(n), HeaderValue::from(n));
        }
        assert_eq!(decimal(-3i64), HeaderValue::from(-3i64));
    }

    #[test]
    fn strips_lookalikes_connection_named_and_configured() {
        let set = StripSet::new(["X-Tenant-Id", "Authorization"]);
        let mut h = HeaderMap::new();
        h.append("x-tenant-id", HeaderValue::from_static("a"));
        h.append("x_tenant_id", HeaderValue::from_static("b"));
        h.append("authorization", HeaderValue::from_static("c"));
        h.append(
            "connection",
            HeaderValue::from_static("x-secret, keep-alive"),
        );
        h.append("x-secret", HeaderValue::from_static("d"));
        h.append("x-http-method-override", HeaderValue::from_static("DELETE"));
        h.append("accept", HeaderValue::from_static("a/b"));
        h.append("accept", HeaderValue::from_static("c/d"));
        let kept = set.clean(h);
        let names: Vec<_> = kept.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
        assert_eq!(kept.get_all("accept").iter().count(), 2);
    }

    #[test]
    fn request_id_kept_when_sane_else_fresh() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }
}
