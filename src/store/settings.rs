//! `[store]` (SPEC 8): where usage is kept and how often it is written.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::spec::units::Dur;
use crate::spec::{key, Errors};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Embedded,
    Redis,
}

/// `[store]` as the file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSpec {
    pub kind: StoreKind,
    pub path: PathBuf,
    pub flush: Dur,
}

impl Default for StoreSpec {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            path: "data/".into(),
            flush: Dur(Duration::from_secs(1)),
        }
    }
}

/// Opened at start (a change needs a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub path: PathBuf,
    pub flush: Duration,
}

pub fn compile(spec: &StoreSpec, errors: &mut Errors) -> StoreSettings {
    if spec.kind == StoreKind::Redis {
        errors.add(
            vec![key("store"), key("kind")],
            "kind = \"redis\" (shared state across replicas) is not supported yet; use \"embedded\"",
        );
    }
    StoreSettings {
        path: spec.path.clone(),
        flush: spec.flush.0,
    }
}
