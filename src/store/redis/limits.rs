//! Stage 3's calls to Redis: one script per admission for the tenant (its usage today,
//! its soft cap and quota, then its GCRA bucket on the Redis clock), and, when the
//! project has a cap, one read of the project's usage in the same round trip.

use super::{Op, Redis};
use crate::store::{StoreError, Unwritten};

/// What the admission script is asked.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// `None` for the project's own bucket (calls without a tenant).
    pub tenant: Option<&'a str>,
    pub day: u64,
    /// The rate, when one applies: nanoseconds per token, and the burst.
    pub rate: Option<(u64, u64)>,
    pub cost: u64,
    /// Queue mode: the longest wait a reservation may take, in nanoseconds.
    pub max_wait: Option<u64>,
    /// Degrade once the tenant's units today reach this.
    pub soft: Option<u64>,
    /// Refuse once the tenant's units today reach this (the cap less what requests
    /// in flight here hold and what is pending here).
    pub room: Option<u64>,
    /// The caller's units in the batch this replica is writing: counted by the script
    /// unless that write has landed, so no unit is counted twice or missed.
    pub landing: Option<(u64, u64)>,
    /// Read the project's units today too, with what this replica has not written.
    pub project: Option<Unwritten>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Queue mode: a slot this many nanoseconds from now.
    Reserved(u64),
    /// Nothing taken; the cost fits in this many nanoseconds.
    Denied(u64),
    Degrade,
    OverQuota,
    /// No rate applied; the checks passed.
    Unrated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub verdict: Verdict,
    pub remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub full_in: u64,
    /// The caller's units today as every replica has written them, with this
    /// replica's batch in flight (but not its pending units); read, and so non-zero,
    /// only when `soft` or `room` was asked.
    pub units: u64,
    /// The project's units today, everything this replica holds included.
    pub project_units: Option<u64>,
}

const US: u64 = 1_000;

/// Nanoseconds as the script's microseconds; fractions kept, so a rate of more than
/// a million a second still has a non-zero interval.
fn micros(nanos: u64) -> String {
    format!("{:.3}", nanos as f64 / US as f64)
}

impl Redis {
    pub async fn admit(&self, ask: &Ask<'_>) -> Result<Answer, StoreError> {
        let signed = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let (interval, burst) = ask.rate.unwrap_or((0, 0));
        let (landing_batch, landing) = ask.landing.unwrap_or((0, 0));
        let field = self.batch_field();
        let mut invocation = self.scripts.gcra.key(self.keys.bucket(ask.tenant));
        invocation
            .key(match ask.tenant {
                Some(t) => self.keys.usage(t, ask.day),
                None => self.keys.project(ask.day),
            })
            .arg(micros(interval))
            .arg(burst)
            .arg(ask.cost)
            .arg(ask.max_wait.map_or_else(|| "-1".to_owned(), micros))
            .arg(signed(ask.soft))
            .arg(signed(ask.room))
            .arg(landing)
            .arg(field)
            .arg(landing_batch);
        let script = self.call(Op::Limit, |mut c| async move {
            invocation
                .invoke_async::<(i64, i64, u64, i64, u64)>(&mut c)
                .await
        });
        let project = async {
            let Some(unwritten) = ask.project else {
                return Ok(None);
            };
            let (batch, landing) = unwritten.landing.unwrap_or((0, 0));
            let key = self.keys.project(ask.day);
            let field = self.batch_field();
            // One HMGET: the units and whether this replica's batch is in them.
            let (units, done) = self
                .call(Op::Limit, |mut c| async move {
                    redis::cmd("HMGET")
                        .arg(key)
                        .arg("units")
                        .arg(field)
                        .query_async::<(Option<u64>, Option<u64>)>(&mut c)
                        .await
                })
                .await?;
            let landing = if done.unwrap_or(0) >= batch {
                0
            } else {
                landing
            };
            Ok(Some(
                units
                    .unwrap_or(0)
                    .saturating_add(landing)
                    .saturating_add(unwritten.pending),
            ))
        };
        let (script, project) = tokio::join!(script, project);
        let (verdict, us, remaining, full_in, units) = script?;
        let nanos = |us: i64| u64::try_from(us).unwrap_or(0).saturating_mul(US);
        let verdict = match verdict {
            0 => Verdict::Allowed,
            1 => Verdict::Reserved(nanos(us)),
            2 => Verdict::Denied(nanos(us)),
            3 => Verdict::Degrade,
            4 => Verdict::OverQuota,
            _ => Verdict::Unrated,
        };
        Ok(Answer {
            verdict,
            remaining,
            full_in: nanos(full_in),
            project_units: project?,
            units,
        })
    }
}
