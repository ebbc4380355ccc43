//! The proxy under test: tenantgate started in-process on ephemeral loopback ports.

use std::net::SocketAddr;

use tenantgate::app::Services;
use tenantgate::config::{self, Overrides};
use tenantgate::server::{self, Running};

use super::client::{raw, request_bytes, RawResponse};
use super::upstream::Upstream;

/// tenantgate running in-process on 127.0.0.1:0, both listeners.
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub running: Option<Running>,
}

impl Proxy {
    /// Starts tenantgate with this config text (listen addresses are overridden to
    /// ephemeral loopback ports). `${UPSTREAM}` in the text is the upstream's URL.
    pub async fn start(config_text: &str, upstream: &Upstream) -> Self {
        let text = config_text.replace("${UPSTREAM}", &upstream.url());
        Self::start_raw(&text).await
    }

    /// As `start`, with a chosen clock and usage store.
    pub async fn start_with(config_text: &str, upstream: &Upstream, services: Services) -> Self {
        let text = config_text.replace("${UPSTREAM}", &upstream.url());
        Self::launch(&text, services).await
    }

    /// As `start`, with the store the config names (`kind = "redis"`: the shared
    /// store, as the binary opens it).
    pub async fn start_shared(config_text: &str, upstream: &Upstream) -> Self {
        let text = config_text.replace("${UPSTREAM}", &upstream.url());
        Self::start_shared_raw(&text).await
    }

    /// As `start_shared`, with the config text as it is.
    pub async fn start_shared_raw(text: &str) -> Self {
        let snapshot = config::load_str(text, "test.toml", &ephemeral(), &|_| None)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
        let running = server::start(snapshot, None).await.unwrap();
        Self {
            addr: running.proxy_addr,
            admin: running.admin_addr,
            running: Some(running),
        }
    }

    pub async fn start_raw(config_text: &str) -> Self {
        Self::launch(config_text, Services::default()).await
    }

    /// Starts tenantgate from a config file, which it then watches and reloads. The
    /// file names its own (ephemeral) listen addresses: nothing overrides them.
    pub async fn start_file(path: &std::path::Path, services: Services) -> Self {
        let overrides = Overrides::default();
        let snapshot = config::load_file(path, &overrides, &|_| None)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
        let source = Some((path.to_owned(), overrides));
        let running = server::start_with(snapshot, source, services)
            .await
            .unwrap();
        Self {
            addr: running.proxy_addr,
            admin: running.admin_addr,
            running: Some(running),
        }
    }

    async fn launch(config_text: &str, services: Services) -> Self {
        let overrides = ephemeral();
        let env = |name: &str| match name {
            "TEST_SECRET" => Some("from-env".to_owned()),
            _ => None,
        };
        let snapshot = config::load_str(config_text, "test.toml", &overrides, &env)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
        let running = server::start_with(snapshot, None, services).await.unwrap();
        Self {
            addr: running.proxy_addr,
            admin: running.admin_addr,
            running: Some(running),
        }
    }

    /// Sends raw bytes to the proxy and reads the response (the request should say
    /// `Connection: close`).
    pub async fn raw(&self, request: &[u8]) -> RawResponse {
        raw(self.addr, request).await
    }

    /// A well-formed request with these extra header lines.
    pub async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[&str],
        body: &[u8],
    ) -> RawResponse {
        raw(self.addr, &request_bytes(method, target, headers, body)).await
    }

    pub async fn send_admin(&self, method: &str, path: &str, headers: &[&str]) -> RawResponse {
        raw(self.admin, &request_bytes(method, path, headers, b"")).await
    }

    pub async fn admin_get(&self, path: &str, headers: &[&str]) -> RawResponse {
        raw(self.admin, &request_bytes("GET", path, headers, b"")).await
    }

    /// The value of one `/metrics` series (name and labels as printed), 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let body = self.admin_get("/metrics", &[]).await.body;
        String::from_utf8(body)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Polls (bounded by `within`) until `series` is no longer `from`.
    pub async fn until_metric_moves(&self, series: &str, from: f64, within: std::time::Duration) {
        let started = std::time::Instant::now();
        while self.metric(series).await == from {
            assert!(
                started.elapsed() < within,
                "{series} stayed at {from} for {within:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Both listeners on ephemeral loopback ports.
fn ephemeral() -> Overrides {
    Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Overrides::default()
    }
}
