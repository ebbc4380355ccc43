//! `tenantgate dev`: the one-command playground. An unsafe in-memory memory backend on
//! a free local port, and the real proxy in front of it with the project's config, so
//! a newcomer can watch two users share a backend without seeing each other.
//!
//! A guest in the house: the proxy's stages never import this module.

pub mod backend;
pub mod walkthrough;

use std::path::{Path, PathBuf};

use crate::config::{self, ConfigErrors, Overrides};
use crate::server::{self, Running, StartError};
use backend::Backend;

/// The playground config, built in so `tenantgate dev` works from any directory, an
/// installed binary or the container image included.
pub const PLAYGROUND: &str = include_str!("../../config/tenantgate.toml");

/// Where the playground's config comes from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Builtin,
}

impl Source {
    /// The named file; else the project's `config/tenantgate.toml` when run inside a
    /// checkout; else the built-in playground config.
    pub fn choose(named: Option<PathBuf>) -> Self {
        let default = Path::new("config/tenantgate.toml");
        match named {
            Some(path) => Self::File(path),
            None if default.is_file() => Self::File(default.to_owned()),
            None => Self::Builtin,
        }
    }
}

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
    /// The admin token this run made up, when the config names none.
    pub admin_token: Option<String>,
}

impl Playground {
    /// The banner and walkthrough that `tenantgate dev` prints.
    pub fn banner(&self) -> String {
        let snapshot = self.proxy.app.snapshot();
        let origin = if snapshot.origin == BUILTIN_ORIGIN {
            "the playground config built into this binary (no config/tenantgate.toml here)"
                .to_owned()
        } else {
            snapshot.origin.clone()
        };
        let (token, whose) = match &self.admin_token {
            Some(token) => (token.as_str(), "made up for this run"),
            None => ("\"$TENANTGATE_ADMIN_TOKEN\"", "your config's [admin] token"),
        };
        let admin = walkthrough::Admin {
            addr: self.proxy.admin_addr,
            token,
        };
        format!(
            "tenantgate dev\n\
             \x20 backend  {} (in memory, NOT multi-tenant: never expose it)\n\
             \x20 proxy    http://{} with {origin}\n\
             \x20 admin    http://{} (token {token}, {whose})\n\n\
             Paste these, one at a time:\n\n{}\n\
             Prove the isolation (the config's [[verify.scenario]] canaries, inside this proxy):\n\n\
             \x20 tenantgate verify --admin http://{} --admin-token {token}\n",
            self.backend.url(),
            self.proxy.proxy_addr,
            self.proxy.admin_addr,
            walkthrough::render(
                self.proxy.proxy_addr,
                snapshot.config.identity.header.as_str(),
                &admin,
            ),
            self.proxy.admin_addr,
        )
    }
}

const BUILTIN_ORIGIN: &str = "<built-in playground config>";

/// Starts the backend, then the proxy with the config pointed at it. Listen
/// addresses come from the config unless `overrides` name others. Without an
/// `[admin] token` in the config, the admin API gets one made up for this run.
pub async fn start(source: Source, overrides: Overrides) -> Result<Playground, DevError> {
    let backend = backend::start().await.map_err(DevError::Backend)?;
    let mut overrides = Overrides {
        upstream: Some(backend.url()),
        ..overrides
    };
    let load = |overrides: &Overrides| match &source {
        Source::File(path) => config::load_file(path, overrides, &config::process_env),
        Source::Builtin => {
            config::load_str(PLAYGROUND, BUILTIN_ORIGIN, overrides, &config::process_env)
        }
    };
    let mut snapshot = load(&overrides)?;
    let mut admin_token = None;
    if snapshot.config.admin.token.is_none() {
        let token = format!("tgdev-{}", uuid::Uuid::new_v4().simple());
        overrides.admin_token = Some(token.clone());
        snapshot = load(&overrides)?;
        admin_token = Some(token);
    }
    // The playground keeps usage in memory: nothing of it is worth a file.
    let services = crate::app::Services::default();
    let reload_from = match source {
        Source::File(path) => Some((path, overrides)),
        Source::Builtin => None,
    };
    let proxy = server::start_with(snapshot, reload_from, services).await?;
    Ok(Playground {
        backend,
        proxy,
        admin_token,
    })
}
