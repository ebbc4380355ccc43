//! A [`Backend`] in memory: the tests' and the playground's store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{lock, Backend, Batch, Counters, StoreError};

#[derive(Debug, Default)]
pub struct MemoryBackend {
    rows: Mutex<BTreeMap<(u64, String), Counters>>,
    project: Mutex<BTreeMap<u64, Counters>>,
}

impl Backend for MemoryBackend {
    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut rows = lock(&self.rows);
        for ((day, tenant), counters) in &batch.tenants {
            rows.entry((*day, tenant.to_string()))
                .or_default()
                .merge(counters);
        }
        let mut project = lock(&self.project);
        for (day, counters) in &batch.project {
            project.entry(*day).or_default().merge(counters);
        }
        Ok(())
    }

    fn day(&self, day: u64) -> Result<Vec<(String, Counters)>, StoreError> {
        Ok(lock(&self.rows)
            .range((day, String::new())..(day + 1, String::new()))
            .map(|((_, t), c)| (t.clone(), *c))
            .collect())
    }

    fn project_day(&self, day: u64) -> Result<Counters, StoreError> {
        Ok(lock(&self.project).get(&day).copied().unwrap_or_default())
    }

    fn user(&self, id: &str, from: u64, to: u64) -> Result<Vec<(u64, Counters)>, StoreError> {
        let rows = lock(&self.rows);
        Ok((from..=to)
            .filter_map(|day| Some((day, *rows.get(&(day, id.to_owned()))?)))
            .collect())
    }

    fn totals(&self, from: u64, to: u64) -> Result<Vec<(String, Counters)>, StoreError> {
        let mut totals: BTreeMap<String, Counters> = BTreeMap::new();
        for ((_, tenant), counters) in
            lock(&self.rows).range((from, String::new())..(to.saturating_add(1), String::new()))
        {
            totals.entry(tenant.clone()).or_default().merge(counters);
        }
        Ok(totals.into_iter().collect())
    }

    fn erase(&self, id: &str) -> Result<u64, StoreError> {
        let mut rows = lock(&self.rows);
        let before = rows.len();
        rows.retain(|(_, tenant), _| tenant != id);
        Ok((before - rows.len()) as u64)
    }
}
