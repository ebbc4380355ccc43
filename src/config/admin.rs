//! `[admin]` (SPEC 9): the admin listener's address and token. Compiled here, not in
//! `admin/`: the admin listener reads the running App, which holds the config.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::listen::tls::{self, ServerTls, TlsSpec};
use crate::secret::Secret;
use crate::spec::{key, Errors};

/// `[admin]` as the file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSpec {
    pub addr: SocketAddr,
    pub token: Option<String>,
    /// `[admin.tls]`: HTTPS on the admin listener, set apart from the proxy's.
    pub tls: Option<TlsSpec>,
}

impl Default for AdminSpec {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: None,
            tls: None,
        }
    }
}

#[derive(Debug)]
pub struct AdminSettings {
    pub addr: SocketAddr,
    pub token: Option<Secret>,
    pub tls: Option<ServerTls>,
}

/// Compiles `[admin]`; `listen` is the proxy's address, which the admin listener may
/// not share.
pub fn compile(
    spec: &AdminSpec,
    listen: SocketAddr,
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) -> AdminSettings {
    let token = match &spec.token {
        Some(t) if t.is_empty() => {
            errors.add(vec![key("admin"), key("token")], "[admin] token is empty");
            None
        }
        Some(t) => Some(Secret::new(t)),
        None => {
            warnings.push(
                "[admin] token is not set: /admin/* and /usage/* answer 401 to everyone".to_owned(),
            );
            None
        }
    };
    if spec.addr == listen && listen.port() != 0 {
        errors.add(
            vec![key("admin"), key("addr")],
            "the admin listener needs its own address, not [listen] addr",
        );
    }
    let tls = spec
        .tls
        .as_ref()
        .and_then(|t| tls::compile(t, &[key("admin"), key("tls")], errors));
    AdminSettings {
        addr: spec.addr,
        token,
        tls,
    }
}
