//! `[identity]` (SPEC 2) and `[tenant] pattern`, compiled into [`IdentitySettings`]:
//! each mode's keys checked against the mode, and key files read (and fingerprinted
//! for the watcher) as part of the config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use regex::Regex;

use super::api_key::{ApiKeySettings, ApiKeys};
use super::cache::TokenCache;
use super::jwt::{ClaimPath, JwtKeys, JwtSettings};
use super::keys::KeySet;
use super::remote::RemoteKeys;
use super::{IdentitySettings, Proof};
use crate::hygiene::{self, PRIVILEGED_TOKEN_HEADER};
use crate::spec::units::Dur;
use crate::spec::{key, read_watched, Errors, WatchedFile};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityMode {
    #[default]
    Header,
    Jwt,
    ApiKey,
}

/// `[identity]` as the file writes it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySpec {
    pub mode: IdentityMode,
    pub header: String,
    pub trust_network: bool,
    // jwt mode
    pub jwt_header: String,
    pub claim: String,
    pub hs256_secret: Option<String>,
    /// jwt: a PEM or JWKS file; api_key: the TOML file of key digests.
    pub keys_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub jwks_refresh: Dur,
    pub jwks_min_refresh: Dur,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Dur,
    // api_key mode
    pub key_header: String,
}

impl Default for IdentitySpec {
    fn default() -> Self {
        Self {
            mode: IdentityMode::Header,
            header: "X-Tenant-Id".to_owned(),
            trust_network: false,
            jwt_header: "Authorization".to_owned(),
            claim: "sub".to_owned(),
            hs256_secret: None,
            keys_file: None,
            jwks_url: None,
            jwks_refresh: Dur(Duration::from_secs(300)),
            jwks_min_refresh: Dur(Duration::from_secs(5)),
            issuer: None,
            audience: None,
            leeway: Dur(Duration::from_secs(30)),
            key_header: "X-Api-Key".to_owned(),
        }
    }
}

/// RFC 7518 3.2: an HS256 secret at least as long as the SHA-256 output.
const MIN_HS256_SECRET: usize = 32;
/// More clock skew than this is a misconfiguration, not skew.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Compiles `[identity]` with `[tenant] pattern`; `listen` is the proxy's address,
/// which header mode must keep off the network unless told it may trust it, or unless
/// the listener only admits clients with a certificate (`client_certs`).
pub fn compile(
    spec: &IdentitySpec,
    pattern: Option<&str>,
    (listen, client_certs): (SocketAddr, bool),
    errors: &mut Errors,
) -> Option<IdentitySettings> {
    let path = |k: &str| vec![key("identity"), key(k)];
    let Ok(header) = HeaderName::from_bytes(spec.header.as_bytes()) else {
        errors.add(
            path("header"),
            format!("{:?} is not a valid header name", spec.header),
        );
        return None;
    };
    if hygiene::same_header_loosely(header.as_str(), PRIVILEGED_TOKEN_HEADER) {
        errors.add(
            path("header"),
            "the identity header cannot be X-Tenantgate-Token",
        );
    }
    let pattern = match pattern {
        None => None,
        Some(p) => match Regex::new(&format!("^(?:{p})$")) {
            Ok(re) => Some(re),
            Err(e) => {
                errors.add(
                    vec![key("tenant"), key("pattern")],
                    format!("invalid regex: {e}"),
                );
                return None;
            }
        },
    };
    not_in_this_mode(spec, errors);
    let (proof, file) = match spec.mode {
        IdentityMode::Header => (Proof::Header, None),
        IdentityMode::Jwt => {
            let (jwt, file) = compile_jwt(spec, &header, errors)?;
            (Proof::Jwt(jwt), file)
        }
        IdentityMode::ApiKey => {
            let (keys, file) = compile_api_key(spec, &header, pattern.as_ref(), errors)?;
            (Proof::ApiKey(keys), Some(file))
        }
    };
    let settings = IdentitySettings {
        header,
        pattern,
        proof,
        trust_network: spec.trust_network,
        key_file: file,
    };
    if !settings.may_serve(listen, client_certs) {
        errors.add(
            vec![key("listen"), key("addr")],
            format!(
                "header mode trusts {} from anyone who can reach {listen}; listen on a loopback address, verify a credential instead ([identity] mode = \"jwt\" or \"api_key\"), require client certificates ([listen.tls] client_ca), or set [identity] trust_network = true if only the app can reach this port",
                spec.header
            ),
        );
    }
    Some(settings)
}

/// Keys of one mode set in another are mistakes (a forgotten `mode`), not defaults.
fn not_in_this_mode(spec: &IdentitySpec, errors: &mut Errors) {
    let defaults = IdentitySpec::default();
    let jwt_only = [
        ("jwt_header", spec.jwt_header != defaults.jwt_header),
        ("claim", spec.claim != defaults.claim),
        ("hs256_secret", spec.hs256_secret.is_some()),
        ("jwks_url", spec.jwks_url.is_some()),
        ("jwks_refresh", spec.jwks_refresh != defaults.jwks_refresh),
        (
            "jwks_min_refresh",
            spec.jwks_min_refresh != defaults.jwks_min_refresh,
        ),
        ("issuer", spec.issuer.is_some()),
        ("audience", spec.audience.is_some()),
        ("leeway", spec.leeway != defaults.leeway),
    ];
    let key_only = [("key_header", spec.key_header != defaults.key_header)];
    let (mode, wrong): (&str, Vec<&str>) = match spec.mode {
        IdentityMode::Header => {
            let mut set: Vec<&str> = jwt_only
                .iter()
                .chain(&key_only)
                .filter(|k| k.1)
                .map(|k| k.0)
                .collect();
            if spec.keys_file.is_some() {
                set.push("keys_file");
            }
            ("header", set)
        }
        IdentityMode::Jwt => (
            "jwt",
            key_only.iter().filter(|k| k.1).map(|k| k.0).collect(),
        ),
        IdentityMode::ApiKey => (
            "api_key",
            jwt_only.iter().filter(|k| k.1).map(|k| k.0).collect(),
        ),
    };
    for name in wrong {
        errors.add(
            vec![key("identity"), key(name)],
            format!(
                "{name} is not used in mode = \"{mode}\"; set the mode it belongs to, or remove it"
            ),
        );
    }
}

fn credential_header(
    name: &str,
    at: &str,
    tenant_header: &HeaderName,
    errors: &mut Errors,
) -> Option<HeaderName> {
    let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
        errors.add(
            vec![key("identity"), key(at)],
            format!("{name:?} is not a valid header name"),
        );
        return None;
    };
    if hygiene::same_header_loosely(header.as_str(), tenant_header.as_str())
        || hygiene::same_header_loosely(header.as_str(), PRIVILEGED_TOKEN_HEADER)
    {
        errors.add(
            vec![key("identity"), key(at)],
            "the credential needs a header of its own, not the tenant header or X-Tenantgate-Token",
        );
        return None;
    }
    Some(header)
}

fn compile_jwt(
    spec: &IdentitySpec,
    tenant_header: &HeaderName,
    errors: &mut Errors,
) -> Option<(JwtSettings, Option<WatchedFile>)> {
    let path = |k: &str| vec![key("identity"), key(k)];
    let header = credential_header(&spec.jwt_header, "jwt_header", tenant_header, errors);
    let claim = ClaimPath::parse(&spec.claim)
        .map_err(|e| errors.add(path("claim"), e))
        .ok();
    let sources = [
        spec.hs256_secret.is_some(),
        spec.keys_file.is_some(),
        spec.jwks_url.is_some(),
    ];
    let (keys, file) = match sources {
        [true, false, false] => {
            let secret = spec.hs256_secret.as_deref().unwrap_or_default();
            if !secret.is_empty() && secret.len() < MIN_HS256_SECRET {
                // RFC 7518 3.2: an HS256 key is at least as long as the hash.
                errors.add(
                    path("hs256_secret"),
                    format!("the HS256 secret is {} bytes; use at least {MIN_HS256_SECRET} (openssl rand -base64 32)", secret.len()),
                );
                return None;
            }
            match KeySet::hs256(secret.as_bytes()) {
                Ok(set) => (JwtKeys::Secret(Arc::new(set)), None),
                Err(e) => {
                    errors.add(path("hs256_secret"), format!("{e}; is its ${{VAR}} set?"));
                    return None;
                }
            }
        }
        [false, true, false] => {
            let file_path = spec.keys_file.clone().unwrap_or_default();
            let (bytes, file) = read_key_file(&file_path, errors)?;
            match KeySet::parse(&bytes) {
                Ok(set) => (
                    JwtKeys::File {
                        path: file_path,
                        set: Arc::new(set),
                    },
                    Some(file),
                ),
                Err(e) => {
                    errors.add(path("keys_file"), format!("{}: {e}", file_path.display()));
                    return None;
                }
            }
        }
        [false, false, true] => {
            let url = spec.jwks_url.as_deref().unwrap_or_default();
            let remote = remote_keys(url, spec, errors)?;
            (JwtKeys::Remote(Arc::new(remote)), None)
        }
        _ => {
            errors.add(
                path("mode"),
                "jwt mode needs exactly one key source: hs256_secret, keys_file or jwks_url",
            );
            return None;
        }
    };
    if spec.leeway.0 > MAX_LEEWAY {
        errors.add(
            path("leeway"),
            format!("leeway above {MAX_LEEWAY:?} would accept tokens long expired; clocks in a cluster agree within seconds"),
        );
        return None;
    }
    let jwt = JwtSettings {
        header: header?,
        claim: claim?,
        keys,
        issuer: spec.issuer.clone(),
        audience: spec.audience.clone(),
        leeway_secs: spec.leeway.0.as_secs(),
        cache: TokenCache::default(),
    };
    Some((jwt, file))
}

fn remote_keys(url: &str, spec: &IdentitySpec, errors: &mut Errors) -> Option<RemoteKeys> {
    let at = vec![key("identity"), key("jwks_url")];
    let uri = match url.parse::<http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => uri,
        Ok(uri) if uri.scheme_str() == Some("https") => {
            errors.add(at, "jwks_url over https is not supported by this version; use the provider's in-cluster http address, or mount its JWKS as keys_file");
            return None;
        }
        _ => {
            errors.add(at, format!("{url:?} is not an http:// URL"));
            return None;
        }
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        errors.add(
            at,
            "jwks_url must not carry credentials (user:password@); it is logged",
        );
        return None;
    }
    if spec.jwks_refresh.0 < spec.jwks_min_refresh.0
        || spec.jwks_min_refresh.0 < Duration::from_secs(1)
    {
        errors.add(
            vec![key("identity"), key("jwks_min_refresh")],
            "jwks_min_refresh must be at least 1s and at most jwks_refresh, so unknown kids cannot make tenantgate hammer the provider",
        );
        return None;
    }
    Some(RemoteKeys::new(
        uri,
        spec.jwks_refresh.0,
        spec.jwks_min_refresh.0,
    ))
}

fn compile_api_key(
    spec: &IdentitySpec,
    tenant_header: &HeaderName,
    pattern: Option<&Regex>,
    errors: &mut Errors,
) -> Option<(ApiKeySettings, WatchedFile)> {
    let at = vec![key("identity"), key("keys_file")];
    let header = credential_header(&spec.key_header, "key_header", tenant_header, errors);
    let Some(file_path) = spec.keys_file.clone() else {
        errors.add(
            vec![key("identity"), key("mode")],
            "api_key mode needs keys_file: a TOML file of [keys] \"<sha256 hex>\" = \"tenant\"",
        );
        return None;
    };
    let (bytes, file) = read_key_file(&file_path, errors)?;
    let text = String::from_utf8_lossy(&bytes);
    let keys = match ApiKeys::parse(&text, pattern) {
        Ok(keys) => keys,
        Err(e) => {
            errors.add(at, format!("{}: {e}", file_path.display()));
            return None;
        }
    };
    let settings = ApiKeySettings {
        header: header?,
        path: file_path,
        keys: Arc::new(keys),
    };
    Some((settings, file))
}

fn read_key_file(path: &Path, errors: &mut Errors) -> Option<(Vec<u8>, WatchedFile)> {
    read_watched(path, vec![key("identity"), key("keys_file")], errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::compile_str;

    /// `[identity]` and `[tenant]` tables as the file writes them.
    #[derive(serde::Deserialize)]
    struct Tables {
        #[serde(default)]
        identity: IdentitySpec,
        tenant: Option<Tenant>,
        listen: Option<Listen>,
    }

    #[derive(serde::Deserialize)]
    struct Listen {
        addr: SocketAddr,
    }

    #[derive(serde::Deserialize)]
    struct Tenant {
        pattern: String,
    }

    fn compiled(toml: &str) -> Result<IdentitySettings, Vec<String>> {
        compile_str(toml, |t: &Tables, errors| {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let listen = t.listen.as_ref().map_or(loopback, |l| l.addr);
            let pattern = t.tenant.as_ref().map(|t| t.pattern.as_str());
            compile(&t.identity, pattern, (listen, false), errors)
        })
    }

    #[test]
    fn compiles_the_header_and_anchors_the_pattern() {
        let identity =
            compiled("[identity]\nheader = \"X-User\"\n[tenant]\npattern = \"[a-z]+\"\n").unwrap();
        assert_eq!(identity.header.as_str(), "x-user");
        let pattern = identity.pattern.as_ref().unwrap();
        assert!(pattern.is_match("alice") && !pattern.is_match("alice!"));
        assert!(identity.is_lookalike("X_USER"));
    }

    #[test]
    fn refuses_each_bad_value_at_its_key() {
        assert_eq!(
            compiled("[identity]\nmode = \"jwt\"\nheader = \"X-Tenantgate-Token\"\n").unwrap_err(),
            [
                "3:10: the identity header cannot be X-Tenantgate-Token",
                "2:8: jwt mode needs exactly one key source: hs256_secret, keys_file or jwks_url",
            ]
        );
        assert_eq!(
            compiled("[identity]\nheader = \"bad header\"\n").unwrap_err(),
            ["2:10: \"bad header\" is not a valid header name"]
        );
        assert_eq!(
            compiled("[tenant]\npattern = \"(\"\n").unwrap_err()[0]
                .split(": ")
                .next(),
            Some("2:11")
        );
        let open = compiled("[listen]\naddr = \"0.0.0.0:8080\"\n").unwrap_err();
        assert!(
            open[0].starts_with(
                "2:8: header mode trusts X-Tenant-Id from anyone who can reach 0.0.0.0:8080"
            ),
            "{open:?}"
        );
    }

    #[test]
    fn each_mode_takes_only_its_own_keys() {
        assert_eq!(
            compiled("[identity]\nissuer = \"x\"\nkey_header = \"X-Key\"\n").unwrap_err(),
            [
                "2:10: issuer is not used in mode = \"header\"; set the mode it belongs to, or remove it",
                "3:14: key_header is not used in mode = \"header\"; set the mode it belongs to, or remove it",
            ]
        );
        assert_eq!(
            compiled("[identity]\nmode = \"jwt\"\nhs256_secret = \"0123456789abcdef0123456789abcdef\"\njwks_url = \"http://idp/certs\"\n").unwrap_err(),
            ["2:8: jwt mode needs exactly one key source: hs256_secret, keys_file or jwks_url"]
        );
        assert_eq!(
            compiled("[identity]\nmode = \"jwt\"\njwks_url = \"https://idp/certs\"\n").unwrap_err()[0]
                .split(": ").nth(1),
            Some("jwks_url over https is not supported by this version; use the provider's in-cluster http address, or mount its JWKS as keys_file")
        );
        assert_eq!(
            compiled("[identity]\nmode = \"jwt\"\nhs256_secret = \"0123456789abcdef0123456789abcdef\"\njwt_header = \"X-Tenant-Id\"\n").unwrap_err(),
            ["4:14: the credential needs a header of its own, not the tenant header or X-Tenantgate-Token"]
        );
        let open = compiled(
            "[identity]\nmode = \"jwt\"\nhs256_secret = \"0123456789abcdef0123456789abcdef\"\n[listen]\naddr = \"0.0.0.0:8080\"\n",
        );
        assert!(
            open.is_ok(),
            "a verified mode may listen on the network: {open:?}"
        );
        assert!(compiled("[identity]\nmode = \"api_key\"\n").unwrap_err()[0]
            .contains("needs keys_file"));
        let first = |toml: &str| compiled(toml).unwrap_err().remove(0);
        assert!(
            first("[identity]\nmode = \"jwt\"\nhs256_secret = \"short\"\n")
                .contains("the HS256 secret is 5 bytes; use at least 32")
        );
        assert!(first("[identity]\nmode = \"jwt\"\nhs256_secret = \"0123456789abcdef0123456789abcdef\"\nleeway = \"1h\"\n")
            .contains("would accept tokens long expired"));
        assert!(
            first("[identity]\nmode = \"jwt\"\njwks_url = \"http://u:p@idp/certs\"\n")
                .contains("must not carry credentials")
        );
        assert!(first("[identity]\nmode = \"jwt\"\njwks_url = \"http://idp/certs\"\njwks_min_refresh = \"10ms\"\n")
            .contains("at least 1s"));
    }
}
