//! `[upstream]` and the credentials the config adds to forwarded requests (SPEC 5):
//! the backend's address, its timeouts and pool, headers for every route, and each
//! tenant's `upstream_headers`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::tls::{self, TlsFiles, UpstreamTls};
use crate::hygiene::{self, StripSet};
use crate::spec::units::Dur;
use crate::spec::{at, key, Errors, KeyPath, WatchedFile};

pub type HeaderList = Vec<(HeaderName, HeaderValue)>;

/// `[upstream]` as the file writes it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    pub url: String,
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: Dur,
    #[serde(default = "defaults::timeout")]
    pub timeout: Dur,
    #[serde(default = "defaults::body_timeout")]
    pub body_timeout: Dur,
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    #[serde(default = "defaults::pool_idle_timeout")]
    pub pool_idle_timeout: Dur,
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
    /// Client headers never forwarded, beyond the ones tenantgate strips itself (a
    /// client's own `Authorization` in front of a backend that prefers it to the key
    /// tenantgate sets, say); removed in any letter case and with `_` for `-`.
    #[serde(default)]
    pub remove_headers: Vec<String>,
    /// https: extra roots (a private CA), and a client certificate for mTLS.
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

mod defaults {
    use super::{Dur, Duration};
    pub fn connect_timeout() -> Dur {
        Dur(Duration::from_secs(2))
    }
    pub fn timeout() -> Dur {
        Dur(Duration::from_secs(30))
    }
    pub fn body_timeout() -> Dur {
        Dur(Duration::from_secs(60))
    }
    pub fn retries() -> u32 {
        1
    }
    pub fn pool_idle_timeout() -> Dur {
        Dur(Duration::from_secs(90))
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `scheme://authority` of the backend.
    pub origin: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// The `Host` every upstream request carries: the authority's host, and its port
    /// unless it is the scheme's default (what the pooled client would otherwise
    /// format anew for every request).
    pub host: HeaderValue,
    /// A path prefix from the URL (no trailing slash), prepended to every forwarded path.
    pub base_path: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub body_timeout: Duration,
    pub retries: u32,
    pub pool_idle_timeout: Duration,
    pub set_headers: HeaderList,
    /// The https settings; `None` for an http upstream.
    pub tls: Option<UpstreamTls>,
    /// The TLS files read for `tls`, for the watcher.
    pub watched: Vec<WatchedFile>,
}

/// Everything stage 5 needs besides the request.
#[derive(Debug)]
pub struct ForwardSettings {
    pub upstream: UpstreamSettings,
    /// `[tenants.ID] upstream_headers`, by tenant id.
    pub tenant_headers: BTreeMap<String, HeaderList>,
    /// Client headers removed before forwarding, fixed per snapshot.
    pub strip: StripSet,
    /// How clients reach the proxy listener, for `X-Forwarded-Proto`.
    pub listener_scheme: &'static str,
}

/// What stage 5 compiles from: `[upstream]`, each tenant's credentials, and the header
/// names that must never pass from the client (identity, token, every configured one).
pub struct ForwardSpec<'a> {
    pub upstream: &'a UpstreamSpec,
    pub tenant_headers: Vec<(&'a str, &'a BTreeMap<String, String>)>,
    pub strip: Vec<&'a str>,
    /// The proxy listener serves HTTPS.
    pub listener_tls: bool,
}

pub fn compile(spec: &ForwardSpec<'_>, errors: &mut Errors) -> Option<ForwardSettings> {
    let upstream = upstream(spec.upstream, &vec![key("upstream")], errors);
    let mut tenant_headers = BTreeMap::new();
    for &(id, map) in &spec.tenant_headers {
        let path = at(&[], &["tenants", id, "upstream_headers"]);
        tenant_headers.insert(id.to_owned(), credentials(map, &path, errors));
    }
    Some(ForwardSettings {
        upstream: upstream?,
        tenant_headers,
        strip: StripSet::new(spec.strip.iter().copied()),
        listener_scheme: if spec.listener_tls { "https" } else { "http" },
    })
}

pub fn upstream(
    spec: &UpstreamSpec,
    base: &KeyPath,
    errors: &mut Errors,
) -> Option<UpstreamSettings> {
    let path = |k: &str| at(base, &[k]);
    let uri: Uri = match spec.url.parse() {
        Ok(u) => u,
        Err(e) => {
            errors.add(
                path("url"),
                format!("invalid upstream url {:?}: {e}", spec.url),
            );
            return None;
        }
    };
    let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
        errors.add(
            path("url"),
            "the upstream url needs a scheme and a host, like http://127.0.0.1:8000",
        );
        return None;
    };
    let files = TlsFiles {
        ca_file: given(&spec.ca_file),
        client_cert: given(&spec.client_cert),
        client_key: given(&spec.client_key),
    };
    let mut watched = Vec::new();
    let tls = if scheme == http::uri::Scheme::HTTPS {
        Some(tls::compile(&files, base, &mut watched, errors)?)
    } else if scheme == http::uri::Scheme::HTTP {
        for (k, set) in [
            ("ca_file", files.ca_file.is_some()),
            ("client_cert", files.client_cert.is_some()),
            ("client_key", files.client_key.is_some()),
        ] {
            if set {
                errors.add(
                    path(k),
                    format!("{k} is for https:// upstreams; this one is http://"),
                );
            }
        }
        None
    } else {
        errors.add(path("url"), "the upstream url must be http:// or https://");
        None
    };
    if uri.query().is_some() {
        errors.add(path("url"), "the upstream url cannot carry a query string");
    }
    for (k, d) in [
        ("connect_timeout", spec.connect_timeout),
        ("timeout", spec.timeout),
        ("body_timeout", spec.body_timeout),
    ] {
        if d.0.is_zero() {
            errors.add(path(k), format!("{k} must be more than 0s"));
        }
    }
    let set_headers = credentials(&spec.set_headers, &path("set_headers"), errors);
    for (i, name) in spec.remove_headers.iter().enumerate() {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.add(
                [
                    base.clone(),
                    vec![key("remove_headers"), crate::spec::Seg::Index(i)],
                ]
                .concat(),
                format!("{name:?} is not a header name"),
            );
        }
    }
    let Some(host) = host_header(&scheme, &authority) else {
        errors.add(
            path("url"),
            "the upstream url's host cannot be a Host header",
        );
        return None;
    };
    Some(UpstreamSettings {
        origin: scheme,
        authority,
        host,
        base_path: uri.path().trim_end_matches('/').to_owned(),
        connect_timeout: spec.connect_timeout.0,
        timeout: spec.timeout.0,
        body_timeout: spec.body_timeout.0,
        retries: spec.retries,
        pool_idle_timeout: spec.pool_idle_timeout.0,
        set_headers,
        tls,
        watched,
    })
}

/// A file `[upstream]` names: SPEC 5 writes the unset ones as "", the same as leaving
/// them out.
/// As hyper-util's pooled client writes `Host` when a request has none: the host,
/// then `:port` unless the port is the scheme's default (no user info, ever).
fn host_header(
    scheme: &http::uri::Scheme,
    authority: &http::uri::Authority,
) -> Option<HeaderValue> {
    let default_port = if *scheme == http::uri::Scheme::HTTPS {
        443
    } else {
        80
    };
    let host = match authority.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    HeaderValue::from_str(&host).ok()
}

fn given(path: &Option<PathBuf>) -> Option<&std::path::Path> {
    path.as_deref().filter(|p| !p.as_os_str().is_empty())
}

/// Headers shared by every route (or every route of one tenant): fixed values only.
fn credentials(map: &BTreeMap<String, String>, base: &KeyPath, errors: &mut Errors) -> HeaderList {
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let path = at(base, &[name]);
        let header = match hygiene::settable_header(name) {
            Ok(header) => header,
            Err(e) => {
                errors.add(path, e);
                continue;
            }
        };
        if value.contains("{ns}") || value.contains("{tenant}") {
            errors.add(path, "templates ({ns}, {tenant}) belong in a tenant route's set_headers, not in credentials shared by every route");
            continue;
        }
        match HeaderValue::from_str(value) {
            Ok(v) => out.push((header, v)),
            Err(_) => errors.add(
                path,
                format!("the value for {name} is not a valid header value (visible ASCII only)"),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::compile_str;

    fn compiled(toml: &str) -> Result<UpstreamSettings, Vec<String>> {
        compile_str(toml, |spec: &UpstreamSpec, errors| {
            upstream(spec, &Vec::new(), errors)
        })
    }

    #[test]
    fn compiles_the_address_base_path_and_credentials() {
        let up = compiled(
            "url = \"http://127.0.0.1:8000/api/\"\nset_headers = { Authorization = \"Bearer k\" }\n",
        )
        .unwrap();
        assert_eq!(up.authority.as_str(), "127.0.0.1:8000");
        assert_eq!(up.base_path, "/api");
        assert_eq!(up.timeout, Duration::from_secs(30));
        assert_eq!(up.set_headers[0].0.as_str(), "authorization");
    }

    #[test]
    fn host_is_the_authority_without_a_default_port_or_user_info() {
        for (url, host) in [
            ("http://127.0.0.1:8000", "127.0.0.1:8000"),
            ("http://backend:80/api", "backend"),
            ("http://backend", "backend"),
            ("https://api.example.com:443", "api.example.com"),
            ("https://api.example.com:8443", "api.example.com:8443"),
            ("http://user:pw@backend:9000", "backend:9000"),
            ("http://[::1]:8080", "[::1]:8080"),
        ] {
            let up = compiled(&format!("url = \"{url}\"\n")).unwrap();
            assert_eq!(up.host, host, "{url}");
        }
    }

    #[test]
    fn refuses_each_bad_value_at_its_key() {
        let errors = compiled(
            "url = \"ftp://backend/?a=1\"\ntimeout = \"0s\"\n[set_headers]\nHost = \"x\"\nX-Key = \"{ns}\"\nX-Bad = \"a\\nb\"\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "1:7: the upstream url must be http:// or https://",
                "1:7: the upstream url cannot carry a query string",
                "2:11: timeout must be more than 0s",
                "4:8: Host cannot be set by the config (it frames or routes the request)",
                "6:9: the value for X-Bad is not a valid header value (visible ASCII only)",
                "5:9: templates ({ns}, {tenant}) belong in a tenant route's set_headers, not in credentials shared by every route",
            ]
        );
        assert_eq!(
            compiled("url = \"127.0.0.1\"").unwrap_err(),
            ["1:7: the upstream url needs a scheme and a host, like http://127.0.0.1:8000"]
        );
    }
}
