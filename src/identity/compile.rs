//! `[identity]` (SPEC 2) and `[tenant] pattern`, compiled into [`IdentitySettings`].

use std::net::SocketAddr;

use http::HeaderName;
use regex::Regex;

use super::IdentitySettings;
use crate::hygiene::{self, PRIVILEGED_TOKEN_HEADER};
use crate::spec::{key, Errors};

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
}

impl Default for IdentitySpec {
    fn default() -> Self {
        Self {
            mode: IdentityMode::Header,
            header: "X-Tenant-Id".to_owned(),
            trust_network: false,
        }
    }
}

/// Compiles `[identity]` with `[tenant] pattern`; `listen` is the proxy's address,
/// which header mode must keep off the network unless told it may trust it.
pub fn compile(
    spec: &IdentitySpec,
    pattern: Option<&str>,
    listen: SocketAddr,
    errors: &mut Errors,
) -> Option<IdentitySettings> {
    let path = |k: &str| vec![key("identity"), key(k)];
    if spec.mode != IdentityMode::Header {
        errors.add(path("mode"), "only mode = \"header\" is supported by this version; jwt and api_key are not built yet");
    }
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
    if spec.mode == IdentityMode::Header && !spec.trust_network && !listen.ip().is_loopback() {
        errors.add(
            vec![key("listen"), key("addr")],
            format!(
                "header mode trusts {} from anyone who can reach {listen}; listen on a loopback address, or set [identity] trust_network = true if only the app can reach this port",
                spec.header
            ),
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
    Some(IdentitySettings { header, pattern })
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
            compile(&t.identity, pattern, listen, errors)
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
                "2:8: only mode = \"header\" is supported by this version; jwt and api_key are not built yet",
                "3:10: the identity header cannot be X-Tenantgate-Token",
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
}
