//! `[listen.tls]`: HTTPS on the proxy listener with rustls, ALPN `h2` and `http/1.1`,
//! and optionally client certificates verified against `client_ca` (for meshes that
//! want mTLS to the sidecar). The files are read with the config and watched with it;
//! each new connection takes the server settings installed at that moment, so a renewed
//! certificate never drops a connection already open.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::spec::{at, read_watched, Errors, Seg, WatchedFile};

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

fn certificates(bytes: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .unwrap_or_default()
}

pub fn compile(spec: &TlsSpec, base: &[Seg], errors: &mut Errors) -> Option<ServerTls> {
    let path = |k: &str| at(base, &[k]);
    let mut watched = Vec::new();
    let (cert_bytes, cert_file) = read_watched(&spec.cert, path("cert"), errors)?;
    let (key_bytes, key_file) = read_watched(&spec.key, path("key"), errors)?;
    watched.extend([cert_file, key_file]);
    let chain = certificates(&cert_bytes);
    if chain.is_empty() {
        errors.add(
            path("cert"),
            format!("{}: no PEM certificate in it", spec.cert.display()),
        );
        return None;
    }
    let Ok(key) = PrivateKeyDer::from_pem_slice(&key_bytes) else {
        errors.add(
            path("key"),
            format!("{}: no PEM private key in it", spec.key.display()),
        );
        return None;
    };
    let builder = ServerConfig::builder();
    let builder = match &spec.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let (ca_bytes, ca_file) = read_watched(ca_path, path("client_ca"), errors)?;
            watched.push(ca_file);
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(&ca_bytes) {
                if let Err(e) = roots.add(cert) {
                    errors.add(path("client_ca"), format!("{}: {e}", ca_path.display()));
                    return None;
                }
            }
            if roots.is_empty() {
                errors.add(
                    path("client_ca"),
                    format!("{}: no PEM certificate in it", ca_path.display()),
                );
                return None;
            }
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
