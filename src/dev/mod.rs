//! `tenantgate dev`: the one-command playground. An unsafe in-memory memory backend on
//! a free local port, and the real proxy in front of it with the project's config, so
//! a newcomer can watch two users share a backend without seeing each other.
//!
//! A guest in the house: the proxy's stages never import this module.

pub mod backend;
pub mod walkthrough;

use std::path::Path;

use crate::config::{self, ConfigErrors, Overrides};
use crate::server::{self, Running, StartError};
use backend::Backend;

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot start the dev backend: {0}")]
    Backend(#[source] std::io::Error),
    #[error("{0} (another process has the port: try --listen 127.0.0.1:0)")]
    Start(#[from] StartError),
}

/// The backend and the proxy in front of it; the backend stops when this is dropped.
pub struct Playground {
    pub backend: Backend,
    pub proxy: Running,
}

impl Playground {
    /// The banner and walkthrough that `tenantgate dev` prints.
    pub fn banner(&self) -> String {
        let snapshot = self.proxy.app.snapshot();
        format!(
            "tenantgate dev\n\
             \x20 backend  {} (in memory, NOT multi-tenant: never expose it)\n\
             \x20 proxy    http://{} with {}\n\
             \x20 admin    http://{}\n\n\
             Paste these, one at a time:\n\n{}\n\
             Prove the isolation (the config's [[verify.scenario]] canaries, against this backend):\n\n\
             \x20 tenantgate verify --config {} --upstream {}\n",
            self.backend.url(),
            self.proxy.proxy_addr,
            snapshot.origin,
            self.proxy.admin_addr,
            walkthrough::render(
                self.proxy.proxy_addr,
                snapshot.config.identity.header.as_str()
            ),
            snapshot.origin,
            self.backend.url(),
        )
    }
}

/// Starts the backend, then the proxy with `config_path` pointed at it. Listen
/// addresses come from the file unless `overrides` name others.
pub async fn start(config_path: &Path, overrides: Overrides) -> Result<Playground, DevError> {
    let backend = backend::start().await.map_err(DevError::Backend)?;
    let overrides = Overrides {
        upstream: Some(backend.url()),
        ..overrides
    };
    let snapshot = config::load_file(config_path, &overrides, &config::process_env)?;
    // The playground keeps usage in memory: nothing of it is worth a file.
    let services = crate::app::Services::default();
    let source = Some((config_path.to_owned(), overrides));
    let proxy = server::start_with(snapshot, source, services).await?;
    Ok(Playground { backend, proxy })
}
