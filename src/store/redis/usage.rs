//! Usage in Redis: a hash of counters per (tenant, UTC day), a sorted set per day of
//! the tenants by units (for the day's rows and the top-N), and a hash per day of the
//! project's totals. A flushed batch is added by one script per tenant row and one
//! per day, each skipped when the row already holds this replica's batch (or a later
//! one): a batch replayed after a lost reply adds nothing twice, and a batch cut off
//! half-way is completed by its replay.

use std::collections::{BTreeMap, HashMap};

use futures_util::stream::{self, StreamExt};

use super::{Op, Redis};
use crate::store::{Backend, Batch, Counters, StoreError};

/// Script calls of one flush in flight at once.
const IN_FLIGHT: usize = 64;

fn counters(fields: &HashMap<String, u64>) -> Counters {
    let field = |name: &str| fields.get(name).copied().unwrap_or(0);
    Counters {
        events: field("events"),
        units: field("units"),
        bytes_in: field("bytes_in"),
        bytes_out: field("bytes_out"),
        last_at: field("last_at"),
    }
}

impl Redis {
    async fn write_batch(&self, batch: &Batch) -> Result<(), StoreError> {
        // A batch spooled by an earlier process is replayed under that process's field.
        let field = batch.origin.as_deref().unwrap_or(self.batch_field());
        let rows = batch.tenants.iter().map(|((day, tenant), c)| {
            let mut call = self.scripts.usage_row.key(self.keys.usage(tenant, *day));
            call.key(self.keys.days(tenant))
                .arg(day)
                .arg(c.events)
                .arg(c.units)
                .arg(c.bytes_in)
                .arg(c.bytes_out)
                .arg(c.last_at)
                .arg(field)
                .arg(batch.id);
            call
        });
        let mut by_day: BTreeMap<u64, Vec<(&str, u64)>> = BTreeMap::new();
        for ((day, tenant), c) in &batch.tenants {
            by_day.entry(*day).or_default().push((tenant, c.units));
        }
        for day in batch.project.keys() {
            by_day.entry(*day).or_default();
        }
        let days = by_day.into_iter().map(|(day, tenants)| {
            let project = batch.project.get(&day).copied().unwrap_or_default();
            let mut call = self.scripts.usage_day.key(self.keys.day_index(day));
            call.key(self.keys.project(day))
                .arg(field)
                .arg(batch.id)
                .arg(project.events)
                .arg(project.units)
                .arg(project.bytes_in)
                .arg(project.bytes_out)
                .arg(project.last_at);
            for (tenant, units) in tenants {
                call.arg(tenant).arg(units);
            }
            call
        });
        let calls: Vec<_> = rows.chain(days).collect();
        // Every call runs to its end, even after one failed: a call cut short would
        // leave the breaker's probe unanswered.
        let outcomes: Vec<Result<i64, StoreError>> = stream::iter(calls.iter().map(|call| {
            self.call(Op::Usage, move |mut c| async move {
                call.invoke_async::<i64>(&mut c).await
            })
        }))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
        outcomes.into_iter().try_for_each(|o| o.map(drop))
    }

    async fn read_rows(&self, keys: Vec<String>) -> Result<Vec<HashMap<String, u64>>, StoreError> {
        stream::iter(keys.into_iter().map(|key| {
            self.call(Op::Usage, |mut c| async move {
                redis::cmd("HGETALL")
                    .arg(key)
                    .query_async::<HashMap<String, u64>>(&mut c)
                    .await
            })
        }))
        .buffered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
    }

    async fn tenants_on(&self, day: u64) -> Result<Vec<String>, StoreError> {
        let key = self.keys.day_index(day);
        self.call(Op::Usage, |mut c| async move {
            redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query_async::<Vec<String>>(&mut c)
                .await
        })
        .await
    }

    async fn rows_of_days(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, String, Counters)>, StoreError> {
        let mut wanted = Vec::new();
        for day in from..=to {
            for tenant in self.tenants_on(day).await? {
                wanted.push((day, tenant));
            }
        }
        let keys = wanted
            .iter()
            .map(|(day, tenant)| self.keys.usage(tenant, *day))
            .collect();
        let rows = self.read_rows(keys).await?;
        Ok(wanted
            .into_iter()
            .zip(rows)
            .map(|((day, tenant), fields)| (day, tenant, counters(&fields)))
            .collect())
    }

    async fn erase_usage(&self, id: &str) -> Result<u64, StoreError> {
        let days_key = self.keys.days(id);
        let days: Vec<u64> = self
            .call(Op::Usage, |mut c| {
                let key = days_key.clone();
                async move {
                    redis::cmd("SMEMBERS")
                        .arg(key)
                        .query_async::<Vec<u64>>(&mut c)
                        .await
                }
            })
            .await?;
        for day in &days {
            let (row, index) = (self.keys.usage(id, *day), self.keys.day_index(*day));
            self.call(Op::Usage, |mut c| async move {
                redis::cmd("DEL").arg(row).query_async::<i64>(&mut c).await
            })
            .await?;
            self.call(Op::Usage, |mut c| async move {
                redis::cmd("ZREM")
                    .arg(index)
                    .arg(id)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await?;
        }
        // The days, and the rate bucket: an offboarded tenant starts afresh.
        let bucket = self.keys.bucket(Some(id));
        self.call(Op::Usage, |mut c| async move {
            redis::cmd("DEL")
                .arg(days_key)
                .arg(bucket)
                .query_async::<i64>(&mut c)
                .await
        })
        .await?;
        Ok(days.len() as u64)
    }
}

/// The usage [`Backend`] over Redis. Its methods block: they run off the async
/// workers, as the embedded store's do.
#[derive(Debug, Clone)]
pub struct RedisUsage(pub std::sync::Arc<Redis>);

impl Backend for RedisUsage {
    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        self.0.block_on(self.0.write_batch(batch))
    }

    fn day(&self, day: u64) -> Result<Vec<(String, Counters)>, StoreError> {
        let rows = self.0.block_on(self.0.rows_of_days(day, day))?;
        Ok(rows.into_iter().map(|(_, t, c)| (t, c)).collect())
    }

    fn project_day(&self, day: u64) -> Result<Counters, StoreError> {
        let key = self.0.keys.project(day);
        let rows = self.0.block_on(self.0.read_rows(vec![key]))?;
        Ok(rows.first().map(counters).unwrap_or_default())
    }

    fn user(&self, id: &str, from: u64, to: u64) -> Result<Vec<(u64, Counters)>, StoreError> {
        let days: Vec<u64> = (from..=to).collect();
        let keys = days.iter().map(|day| self.0.keys.usage(id, *day)).collect();
        let rows = self.0.block_on(self.0.read_rows(keys))?;
        Ok(days
            .into_iter()
            .zip(rows)
            .filter(|(_, fields)| !fields.is_empty())
            .map(|(day, fields)| (day, counters(&fields)))
            .collect())
    }

    fn totals(&self, from: u64, to: u64) -> Result<Vec<(String, Counters)>, StoreError> {
        let mut totals: HashMap<String, Counters> = HashMap::new();
        for (_, tenant, c) in self.0.block_on(self.0.rows_of_days(from, to))? {
            totals.entry(tenant).or_default().merge(&c);
        }
        Ok(totals.into_iter().collect())
    }

    fn erase(&self, id: &str) -> Result<u64, StoreError> {
        self.0.block_on(self.0.erase_usage(id))
    }

    fn tenants_on(&self, day: u64) -> Result<Vec<String>, StoreError> {
        self.0.block_on(self.0.tenants_on(day))
    }
}
