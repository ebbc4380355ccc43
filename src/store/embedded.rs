//! The embedded store: one redb file under `[store] path` (SPEC 8). redb because it is
//! pure Rust (no C toolchain in the image), transactional with crash-safe commits, and
//! its typed tables keep the schema in the code. Keys are `(day, tenant)`, so a day is
//! one range scan (loading today's quotas at start, the top-N over recent days).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use std::sync::Arc;

use super::records::{Owned, RecordsBackend};
use super::{Backend, Batch, Counters, StoreError};

const SCHEMA_VERSION: u64 = 1;

/// `schema_version` and other facts about the file.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (UTC day, tenant) -> (events, units, bytes_in, bytes_out, last_at).
const USAGE: TableDefinition<(u64, &str), Row> = TableDefinition::new("usage");
/// UTC day -> the project's totals (every call, with or without a tenant).
const PROJECT: TableDefinition<u64, Row> = TableDefinition::new("project_usage");
/// (kind, backend id) -> owning tenant: for opaque-id ownership (SPEC 4.3).
const OWNERSHIP: TableDefinition<(&str, &str), &str> = TableDefinition::new("ownership");
/// tenant -> Unix seconds it was provisioned (SPEC 4.4).
const PROVISIONED: TableDefinition<&str, u64> = TableDefinition::new("provisioned");

type Row = (u64, u64, u64, u64, u64);

fn row(c: &Counters) -> Row {
    (c.events, c.units, c.bytes_in, c.bytes_out, c.last_at)
}

fn counters(r: Row) -> Counters {
    Counters {
        events: r.0,
        units: r.1,
        bytes_in: r.2,
        bytes_out: r.3,
        last_at: r.4,
    }
}

/// One open file; clones share it (the usage store and the records are one file).
/// redb's own page cache. Its default (1 GiB) grows with the file, so a million
/// tenants' usage rows stayed resident (scripts/tenants.py); the kernel's page cache
/// serves reads past this.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Embedded {
    db: Arc<Database>,
    pub file: PathBuf,
}

impl Embedded {
    /// Opens (or creates) `dir/tenantgate.redb` and checks its schema version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let file = dir.join("tenantgate.redb");
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&file)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", file.display())))?;
        let tx = db.begin_write().map_err(StoreError::from)?;
        {
            let mut meta = tx.open_table(META).map_err(StoreError::from)?;
            let version = meta
                .get("schema_version")
                .map_err(StoreError::from)?
                .map(|v| v.value());
            match version {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)
                        .map_err(StoreError::from)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(StoreError(format!(
                        "{} has schema version {other}; this tenantgate reads {SCHEMA_VERSION}",
                        file.display()
                    )))
                }
            }
            tx.open_table(USAGE).map_err(StoreError::from)?;
            tx.open_table(PROJECT).map_err(StoreError::from)?;
            tx.open_table(OWNERSHIP).map_err(StoreError::from)?;
            tx.open_table(PROVISIONED).map_err(StoreError::from)?;
        }
        tx.commit().map_err(StoreError::from)?;
        Ok(Self {
            db: Arc::new(db),
            file,
        })
    }
}

impl Backend for Embedded {
    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        {
            let mut usage = tx.open_table(USAGE).map_err(StoreError::from)?;
            for ((day, tenant), delta) in &batch.tenants {
                let key = (*day, &**tenant);
                let mut total = usage
                    .get(key)
                    .map_err(StoreError::from)?
                    .map_or_else(Counters::default, |v| counters(v.value()));
                total.merge(delta);
                usage.insert(key, row(&total)).map_err(StoreError::from)?;
            }
            let mut project = tx.open_table(PROJECT).map_err(StoreError::from)?;
            for (day, delta) in &batch.project {
                let mut total = project
                    .get(*day)
                    .map_err(StoreError::from)?
                    .map_or_else(Counters::default, |v| counters(v.value()));
                total.merge(delta);
                project
                    .insert(*day, row(&total))
                    .map_err(StoreError::from)?;
            }
        }
        tx.commit().map_err(StoreError::from)
    }

    fn day(&self, day: u64) -> Result<Vec<(String, Counters)>, StoreError> {
        Ok(self
            .totals_by_day(day, day)?
            .into_iter()
            .map(|(_, tenant, c)| (tenant, c))
            .collect())
    }

    fn project_day(&self, day: u64) -> Result<Counters, StoreError> {
        let tx = self.db.begin_read().map_err(StoreError::from)?;
        let table = tx.open_table(PROJECT).map_err(StoreError::from)?;
        Ok(table
            .get(day)
            .map_err(StoreError::from)?
            .map_or_else(Counters::default, |v| counters(v.value())))
    }

    fn user(&self, id: &str, from: u64, to: u64) -> Result<Vec<(u64, Counters)>, StoreError> {
        let tx = self.db.begin_read().map_err(StoreError::from)?;
        let table = tx.open_table(USAGE).map_err(StoreError::from)?;
        let mut out = Vec::new();
        for day in from..=to {
            if let Some(v) = table.get((day, id)).map_err(StoreError::from)? {
                out.push((day, counters(v.value())));
            }
        }
        Ok(out)
    }

    fn totals(&self, from: u64, to: u64) -> Result<Vec<(String, Counters)>, StoreError> {
        let mut totals: std::collections::HashMap<String, Counters> =
            std::collections::HashMap::new();
        for (_, tenant, c) in self.totals_by_day(from, to)? {
            totals.entry(tenant).or_default().merge(&c);
        }
        Ok(totals.into_iter().collect())
    }

    fn erase(&self, id: &str) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        let mut erased = 0;
        {
            let mut usage = tx.open_table(USAGE).map_err(StoreError::from)?;
            let days: Vec<u64> = usage
                .iter()
                .map_err(StoreError::from)?
                .filter_map(Result::ok)
                .filter(|(k, _)| k.value().1 == id)
                .map(|(k, _)| k.value().0)
                .collect();
            for day in days {
                usage.remove((day, id)).map_err(StoreError::from)?;
                erased += 1;
            }
        }
        tx.commit().map_err(StoreError::from)?;
        Ok(erased)
    }
}

impl Embedded {
    fn totals_by_day(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, String, Counters)>, StoreError> {
        let tx = self.db.begin_read().map_err(StoreError::from)?;
        let table = tx.open_table(USAGE).map_err(StoreError::from)?;
        let mut out = Vec::new();
        let end = to.saturating_add(1);
        for item in table
            .range((from, "")..(end, ""))
            .map_err(StoreError::from)?
        {
            let (key, value) = item.map_err(StoreError::from)?;
            let (day, tenant) = key.value();
            out.push((day, tenant.to_owned(), counters(value.value())));
        }
        Ok(out)
    }

    /// Rows in the usage table, for tests and the admin view.
    pub fn usage_rows(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(StoreError::from)?;
        let table = tx.open_table(USAGE).map_err(StoreError::from)?;
        table.len().map_err(StoreError::from)
    }
}

impl RecordsBackend for Embedded {
    fn owners(&self) -> Result<Vec<Owned>, StoreError> {
        let tx = self.db.begin_read().map_err(StoreError::from)?;
        let table = tx.open_table(OWNERSHIP).map_err(StoreError::from)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(StoreError::from)? {
            let (key, tenant) = item.map_err(StoreError::from)?;
            let (kind, id) = key.value();
            out.push(Owned {
                kind: kind.to_owned(),
                id: id.to_owned(),
                tenant: tenant.value().to_owned(),
            });
        }
        Ok(out)
    }

    fn own(&self, rows: &[Owned]) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        {
            let mut table = tx.open_table(OWNERSHIP).map_err(StoreError::from)?;
            for row in rows {
                table
                    .insert((row.kind.as_str(), row.id.as_str()), row.tenant.as_str())
                    .map_err(StoreError::from)?;
            }
        }
        tx.commit().map_err(StoreError::from)?;
        Ok(0)
    }

    fn disown(&self, rows: &[Owned]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        {
            let mut table = tx.open_table(OWNERSHIP).map_err(StoreError::from)?;
            for row in rows {
                table
                    .remove((row.kind.as_str(), row.id.as_str()))
                    .map_err(StoreError::from)?;
            }
        }
        tx.commit().map_err(StoreError::from)
    }

    fn provisioned(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(StoreError::from)?;
        let table = tx.open_table(PROVISIONED).map_err(StoreError::from)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(StoreError::from)? {
            let (tenant, _) = item.map_err(StoreError::from)?;
            out.push(tenant.value().to_owned());
        }
        Ok(out)
    }

    fn mark_provisioned(&self, tenant: &str, at: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        {
            let mut table = tx.open_table(PROVISIONED).map_err(StoreError::from)?;
            table.insert(tenant, at).map_err(StoreError::from)?;
        }
        tx.commit().map_err(StoreError::from)
    }

    fn unmark_provisioned(&self, tenant: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        let had = {
            let mut table = tx.open_table(PROVISIONED).map_err(StoreError::from)?;
            let had = table.remove(tenant).map_err(StoreError::from)?.is_some();
            had
        };
        tx.commit().map_err(StoreError::from)?;
        Ok(had)
    }
}
