//! The upstream request as it leaves: the rewritten path under the upstream's base
//! path, the client's headers after hygiene, forwarding headers, then the configured
//! headers, most specific last so a per-tenant key wins.

use std::net::SocketAddr;

use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use super::ForwardSettings;
use crate::body::ProxyBody;
use crate::hygiene::{self, REQUEST_ID};
use crate::identity::TenantId;
use crate::path::{BadPath, CanonicalPath};
use crate::refusal::Refusal;

/// What tenantgate sends upstream: everything but the body, which travels separately
/// so that a request refused by a connect failure can be sent again.
pub struct Outgoing {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: ProxyBody,
}

/// Where the request came from and what the stages before decided about it.
pub struct Origin<'a> {
    pub peer: SocketAddr,
    pub request_id: &'a HeaderValue,
    pub tenant: Option<&'a TenantId>,
    /// The response stage reads the answer, so it is asked for uncompressed.
    pub inspects: bool,
}

/// The rewritten request (stage 4's output) in its final form.
pub struct Rewritten<'a> {
    pub path: &'a CanonicalPath,
    pub query: Option<&'a str>,
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub content_length: Option<usize>,
}

pub fn prepare(
    settings: &ForwardSettings,
    method: Method,
    client_headers: HeaderMap,
    rewritten: Rewritten<'_>,
    body: ProxyBody,
    origin: Origin<'_>,
) -> Result<Outgoing, Refusal> {
    let uri = upstream_uri(settings, rewritten.path, rewritten.query)?;
    let mut headers = settings.strip.clean(client_headers);
    // Set here, not by the pooled client, which would format it for every request;
    // `set_headers` may still replace it.
    headers.insert(HOST, settings.upstream.host.clone());
    hygiene::add_forwarding(&mut headers, origin.peer, settings.listener_scheme);
    headers.insert(REQUEST_ID, origin.request_id.clone());
    let tenant_headers = origin
        .tenant
        .and_then(|t| settings.tenant_headers.get(t.as_str()))
        .map(Vec::as_slice)
        .unwrap_or_default();
    let configured = settings
        .upstream
        .set_headers
        .iter()
        .chain(rewritten.headers)
        .chain(tenant_headers);
    for (name, value) in configured {
        headers.insert(name.clone(), value.clone());
    }
    if origin.inspects {
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }
    if let Some(len) = rewritten.content_length {
        headers.insert(CONTENT_LENGTH, hygiene::decimal(len));
    }
    Ok(Outgoing {
        method,
        uri,
        headers,
        body,
    })
}

/// The canonical path, re-encoded, under the upstream's base path, and the query.
fn upstream_uri(
    settings: &ForwardSettings,
    path: &CanonicalPath,
    query: Option<&str>,
) -> Result<Uri, Refusal> {
    let upstream = &settings.upstream;
    let mut target = upstream.base_path.clone();
    target.push_str(&path.encode());
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    Uri::builder()
        .scheme(upstream.origin.clone())
        .authority(upstream.authority.clone())
        .path_and_query(target)
        .build()
        .map_err(|_| Refusal::BadPath(BadPath::BadEscape))
}

/// A request tenantgate makes on its own (provisioning, offboarding): `path` is
/// already encoded, under the upstream's base path, with the configured upstream
/// headers and, for a body, `Content-Type: application/json`.
pub fn internal_request(
    settings: &ForwardSettings,
    method: Method,
    path: &str,
    json: Option<bytes::Bytes>,
) -> Result<Outgoing, Refusal> {
    let upstream = &settings.upstream;
    let target = format!("{}{path}", upstream.base_path);
    let uri = Uri::builder()
        .scheme(upstream.origin.clone())
        .authority(upstream.authority.clone())
        .path_and_query(target)
        .build()
        .map_err(|_| Refusal::Internal)?;
    let mut headers = HeaderMap::new();
    headers.insert(HOST, upstream.host.clone());
    for (name, value) in &upstream.set_headers {
        headers.insert(name.clone(), value.clone());
    }
    let body = match json {
        Some(json) => {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(CONTENT_LENGTH, hygiene::decimal(json.len()));
            crate::body::full(json)
        }
        None => crate::body::empty(),
    };
    Ok(Outgoing {
        method,
        uri,
        headers,
        body,
    })
}
