//! tenantgate: a sidecar reverse proxy that makes a single-tenant AI memory backend
//! multi-tenant. Start reading at [`pipeline`]: it lists the stages of a request's
//! journey in order; every other module is one of those stages or serves them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod answer;
pub mod app;
pub mod audit;
pub mod body;
pub mod budget;
pub mod clock;
pub mod config;
pub mod dev;
pub mod forward;
pub mod gcra;
pub mod hygiene;
pub mod identity;
pub mod json;
pub mod limits;
pub mod listen;
pub mod meter;
pub mod metrics;
pub mod namespace;
pub mod offboard;
pub mod ownership;
pub mod path;
pub mod pipeline;
pub mod provision;
pub mod refusal;
pub mod respond;
pub mod rewrite;
pub mod route;
pub mod scenario;
pub mod secret;
pub mod server;
pub mod spec;
pub mod store;
pub mod tenants;
pub mod verify;

/// The error type that crosses hyper's body and service boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
