//! `[listen.tls]`: HTTPS on the proxy listener with rustls, ALPN `h2` and `http/1.1`,
//! and optionally client certificates verified against `client_ca` (for meshes that
//! want mTLS to the sidecar). The files are read with the config and watched with it;
//! each new connection takes the server settings installed at that moment, so a renewed
//! certificate never drops a connection already open.

use std::path::PathBuf;
use std::sync::Arc;

use crate::forward::tls::{add_roots, read_certificates, read_private_key};
use crate::spec::{at, Errors, Seg, WatchedFile};
use rustls::ServerConfig;

/// `[listen.tls]` as the file writes it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: when set, clients must present a certificate signed by one of these.
    pub client_ca: Option<PathBuf>,
}

/// The compiled server side of TLS.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub client_certs: bool,
    /// The files read for it, for the watcher.
    pub watched: Vec<WatchedFile>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_certs", &self.client_certs)
            .finish_non_exhaustive()
    }
}

pub fn compile(spec: &TlsSpec, base: &[Seg], errors: &mut Errors) -> Option<ServerTls> {
    let path = |k: &str| at(base, &[k]);
    let mut watched = Vec::new();
    let chain = read_certificates(&spec.cert, path("cert"), &mut watched, errors)?;
    let key = read_private_key(&spec.key, path("key"), &mut watched, errors)?;
    let builder = ServerConfig::builder();
    let builder = match &spec.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let mut roots = rustls::RootCertStore::empty();
            add_roots(&mut roots, ca_path, path("client_ca"), &mut watched, errors)?;
            match rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build() {
                Ok(verifier) => builder.with_client_cert_verifier(verifier),
                Err(e) => {
                    errors.add(path("client_ca"), e.to_string());
                    return None;
                }
            }
        }
    };
    let mut config = match builder.with_single_cert(chain, key) {
        Ok(config) => config,
        Err(e) => {
            errors.add(
                path("key"),
                format!("the certificate and key do not make a pair: {e}"),
            );
            return None;
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Some(ServerTls {
        config: Arc::new(config),
        client_certs: spec.client_ca.is_some(),
        watched,
    })
}
