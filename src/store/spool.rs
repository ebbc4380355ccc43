//! Usage that could not be written before a graceful stop (the shared store was away):
//! kept in a file under `[store] path` and replayed by the next start, so a stop
//! loses no usage (SPEC 8). The batch that was being written keeps its number and the
//! field of the process that numbered it, so a write of it that did land is not
//! added twice.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{lock, Batch, Counters, StoreError, Usage};

const FILE: &str = "usage-spool.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Spooled {
    /// The batch in flight or waiting for its replay, with its number and origin.
    writing: Option<Rows>,
    /// Rows never sent, numbered as that process's next batch, so that their replay
    /// too is added once however often a start replays the file.
    pending: Option<Rows>,
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
        let mut pending = std::mem::take(&mut *lock(&self.pending));
        let writing = lock(&self.writing).take();
        let queued = lock(&self.queued).take();
        let rows = pending.rows()
            + writing.as_ref().map_or(0, |b| b.rows())
            + queued.as_ref().map_or(0, |b| b.rows());
        let spooled_as = |b: &Batch| {
            let from = b.origin.clone().unwrap_or_else(|| origin.to_owned());
            Rows::of(b, Some(from))
        };
        // A queued batch (itself from an earlier spool) takes the pending rows' place;
        // they join it only if there is none.
        let pending = match queued {
            Some(queued) => {
                let mut queued = Arc::unwrap_or_clone(queued);
                for (key, counters) in pending.tenants.drain() {
                    queued.tenants.entry(key).or_default().merge(&counters);
                }
                for (day, counters) in pending.project.drain() {
                    queued.project.entry(day).or_default().merge(&counters);
                }
                Some(queued)
            }
            None if pending.is_empty() => None,
            None => {
                pending.id = self.batches.fetch_add(1, Ordering::Relaxed);
                Some(pending)
            }
        };
        let spooled = Spooled {
            writing: writing.as_deref().map(spooled_as),
            pending: pending.as_ref().map(spooled_as),
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
        if let Some(pending) = spooled.pending {
            let batch = pending.into_batch();
            rows += batch.rows();
            *lock(&self.queued) = Some(std::sync::Arc::new(batch));
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
