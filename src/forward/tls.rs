//! https upstreams: rustls with the webpki roots, plus a private CA from `ca_file`, and
//! a client certificate for mTLS from `client_cert`/`client_key`. The files are read
//! as part of the config, so the watcher swaps them with it; the pool's connector reads
//! the current settings at every new connection, so pooled connections keep theirs.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

use crate::spec::{key, read_watched, Errors, KeyPath, WatchedFile};
use crate::BoxError;

/// The TLS side of `[upstream]`.
#[derive(Clone)]
pub struct UpstreamTls {
    pub config: Arc<ClientConfig>,
    /// Certificates `ca_file` added to the webpki roots.
    pub extra_roots: usize,
    pub client_cert: bool,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("extra_roots", &self.extra_roots)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

/// The files `[upstream]` names for TLS.
pub struct TlsFiles<'a> {
    pub ca_file: Option<&'a Path>,
    pub client_cert: Option<&'a Path>,
    pub client_key: Option<&'a Path>,
}

/// Builds the client side of TLS; every file read is pushed onto `watched`.
pub fn compile(
    files: &TlsFiles<'_>,
    base: &[crate::spec::Seg],
    watched: &mut Vec<WatchedFile>,
    errors: &mut Errors,
) -> Option<UpstreamTls> {
    let at = |k: &str| -> KeyPath {
        let mut path = base.to_vec();
        path.push(key(k));
        path
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let extra_roots = match files.ca_file {
        Some(path) => add_roots(&mut roots, path, at("ca_file"), watched, errors)?,
        None => 0,
    };
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match (files.client_cert, files.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert_path), Some(key_path)) => {
            let chain = read_certificates(cert_path, at("client_cert"), watched, errors)?;
            let key = read_private_key(key_path, at("client_key"), watched, errors)?;
            match builder.with_client_auth_cert(chain, key) {
                Ok(config) => config,
                Err(e) => {
                    errors.add(
                        at("client_key"),
                        format!("the client certificate and key do not make a pair: {e}"),
                    );
                    return None;
                }
            }
        }
        _ => {
            errors.add(
                at("client_cert"),
                "mTLS needs both client_cert and client_key",
            );
            return None;
        }
    };
    Some(UpstreamTls {
        config: Arc::new(config),
        extra_roots,
        client_cert: files.client_cert.is_some(),
    })
}

/// The PEM certificates of a file the config names (at least one), read and watched.
pub fn read_certificates(
    path: &Path,
    at: KeyPath,
    watched: &mut Vec<WatchedFile>,
    errors: &mut Errors,
) -> Option<Vec<CertificateDer<'static>>> {
    let (bytes, file) = read_watched(path, at.clone(), errors)?;
    watched.push(file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if certs.is_empty() {
        errors.add(at, format!("{}: no PEM certificate in it", path.display()));
        return None;
    }
    Some(certs)
}

/// The PEM private key (PKCS#8, PKCS#1 or SEC1) of a file the config names, read and
/// watched.
pub fn read_private_key(
    path: &Path,
    at: KeyPath,
    watched: &mut Vec<WatchedFile>,
    errors: &mut Errors,
) -> Option<PrivateKeyDer<'static>> {
    let (bytes, file) = read_watched(path, at.clone(), errors)?;
    watched.push(file);
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Some(key),
        Err(_) => {
            errors.add(at, format!("{}: no PEM private key in it", path.display()));
            None
        }
    }
}

/// Adds the CA certificates of `path` to `roots`; how many.
pub fn add_roots(
    roots: &mut rustls::RootCertStore,
    path: &Path,
    at: KeyPath,
    watched: &mut Vec<WatchedFile>,
    errors: &mut Errors,
) -> Option<usize> {
    let certs = read_certificates(path, at.clone(), watched, errors)?;
    let count = certs.len();
    for cert in certs {
        if let Err(e) = roots.add(cert) {
            errors.add(at, format!("{}: {e}", path.display()));
            return None;
        }
    }
    Some(count)
}

/// The pool's connector: plain TCP for `http://`, rustls for `https://` with the TLS
/// settings of the config installed when the connection is made.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    tls: Arc<ArcSwap<ClientConfig>>,
    /// TCP and TLS handshake together: an upstream that accepts and then stalls the
    /// handshake is a connect failure like one that never answers.
    connect_timeout: std::time::Duration,
}

impl Connector {
    pub fn new(
        http: HttpConnector,
        tls: Arc<ArcSwap<ClientConfig>>,
        connect_timeout: std::time::Duration,
    ) -> Self {
        Self {
            http,
            tls,
            connect_timeout,
        }
    }
}

/// A client config for a config without https settings (an http upstream).
pub fn default_config() -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Connecting = Pin<
    Box<
        dyn std::future::Future<Output = Result<MaybeHttpsStream<TokioIo<TcpStream>>, BoxError>>
            + Send,
    >,
>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let mut https = HttpsConnector::from((self.http.clone(), self.tls.load_full()));
        let limit = self.connect_timeout;
        Box::pin(async move {
            match tokio::time::timeout(limit, tower_service::Service::call(&mut https, uri)).await {
                Ok(connected) => connected,
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no TLS connection within connect_timeout ({limit:?})"),
                )) as BoxError),
            }
        })
    }
}

/// For `check`: what the upstream's TLS trusts and presents.
pub fn describe(tls: &UpstreamTls) -> String {
    let extra = match tls.extra_roots {
        0 => String::new(),
        n => format!(" + {n} from ca_file"),
    };
    let mtls = if tls.client_cert {
        ", client certificate (mTLS)"
    } else {
        ""
    };
    format!("webpki roots{extra}{mtls}")
}
