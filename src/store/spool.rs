//! Usage that could not be written before a graceful stop (the shared store was away):
//! kept in a file under `[store] path` and replayed by the next start, so a stop
//! loses no usage (SPEC 8). The batch that was being written keeps its number and the
//! field of the process that numbered it, so a write of it that did land is not
//! added twice.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{lock, Batch, Counters, StoreError, Usage};

const FILE: &str = "usage-spool.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Spooled {
    /// The batch in flight or waiting for its replay, with its number and origin.
    writing: Option<Rows>,
    /// Rows never sent.
    pending: Rows,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Rows {
    id: u64,
    origin: Option<String>,
    tenants: Vec<(u64, String, Counters)>,
    project: Vec<(u64, Counters)>,
}

impl Rows {
    fn of(batch: &Batch, origin: Option<String>) -> Self {
        Self {
            id: batch.id,
            origin,
            tenants: batch
                .tenants
                .iter()
                .map(|((day, tenant), c)| (*day, tenant.to_string(), *c))
                .collect(),
            project: batch.project.iter().map(|(day, c)| (*day, *c)).collect(),
        }
    }

    fn into_batch(self) -> Batch {
        Batch {
            id: self.id,
            origin: self.origin,
            tenants: self
                .tenants
                .into_iter()
                .map(|(day, tenant, c)| ((day, tenant.into_boxed_str()), c))
                .collect(),
            project: self.project.into_iter().collect(),
        }
    }
}

pub fn file(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

impl Usage {
    /// Writes what is unwritten to `dir`, emptying memory of it; `origin` is this
    /// process's field in the shared store. How many rows. Blocking.
    pub fn spool_to(&self, dir: &Path, origin: &str) -> Result<usize, StoreError> {
        let _in_order = lock(&self.flushing);
        let pending = std::mem::take(&mut *lock(&self.pending));
        let writing = lock(&self.writing).take();
        let rows = pending.rows() + writing.as_ref().map_or(0, |b| b.rows());
        let spooled = Spooled {
            writing: writing.map(|b| {
                let origin = b.origin.clone().unwrap_or_else(|| origin.to_owned());
                Rows::of(&b, Some(origin))
            }),
            pending: Rows::of(&pending, None),
        };
        let text = serde_json::to_vec(&spooled).map_err(StoreError::from)?;
        std::fs::create_dir_all(dir).map_err(StoreError::from)?;
        let (path, partial) = (file(dir), dir.join(format!("{FILE}.partial")));
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        Ok(rows)
    }

    /// Takes back what an earlier stop spooled in `dir`: its batch in flight is
    /// replayed first, its other rows join this process's. The file stays until they
    /// are written. How many rows. Blocking.
    pub fn unspool_from(&self, dir: &Path) -> Result<usize, StoreError> {
        let path = file(dir);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError(format!("{}: {e}", path.display()))),
        };
        let spooled: Spooled = serde_json::from_slice(&text)
            .map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        let _in_order = lock(&self.flushing);
        let mut rows = 0;
        if let Some(writing) = spooled.writing {
            let batch = writing.into_batch();
            rows += batch.rows();
            *lock(&self.writing) = Some(std::sync::Arc::new(batch));
        }
        let pending = spooled.pending.into_batch();
        rows += pending.rows();
        let mut into = lock(&self.pending);
        for (key, counters) in pending.tenants {
            into.tenants.entry(key).or_default().merge(&counters);
        }
        for (day, counters) in pending.project {
            into.project.entry(day).or_default().merge(&counters);
        }
        *lock(&self.spooled) = Some(path);
        Ok(rows)
    }

    /// Called after a flush that left nothing unwritten: the spool's rows are stored.
    pub(super) fn spool_written(&self) {
        if let Some(path) = lock(&self.spooled).take() {
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(%error, file = %path.display(), "the replayed usage spool could not be removed");
            }
        }
    }
}
