//! Ownership and provisioning marks in Redis: one hash of `kind:id` -> owner, a set
//! of ids per owner (for offboarding), a hash of provisioned roots, and a lock per
//! root while one replica provisions it. Claims are one script, so of two replicas
//! teaching the same id to two tenants at once exactly one wins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Op, Redis};
use crate::store::records::{Owned, RecordsBackend};
use crate::store::StoreError;

fn field(kind: &str, id: &str) -> String {
    format!("{kind}:{id}")
}

/// What following the records' channel yields.
#[derive(Debug)]
pub enum Followed {
    /// (Re)subscribed: changes made before may have been missed.
    Subscribed,
    Event(Event),
}

/// A change another replica (or this one) made to the records, as published.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// (`kind:id`, owner) rows claimed.
    Own(Vec<(String, String)>),
    /// `kind:id` fields released.
    Disown(Vec<String>),
    /// A root offboarded: it must be provisioned again.
    Unprovision(String),
}

impl Redis {
    /// Follows the records' channel, sending each change, and `Subscribed` each time
    /// the subscription is (re)made. Runs until the receiver is gone; reconnects after
    /// a second.
    pub async fn follow_records(&self, to: tokio::sync::mpsc::UnboundedSender<Followed>) {
        use futures_util::StreamExt;
        let channel = self.keys.events();
        loop {
            match self.client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        if to.send(Followed::Subscribed).is_err() {
                            return;
                        }
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            match serde_json::from_slice::<Event>(message.get_payload_bytes()) {
                                Ok(event) => {
                                    if to.send(Followed::Event(event)).is_err() {
                                        return;
                                    }
                                }
                                Err(error) => {
                                    tracing::warn!(%error, "an unreadable records event was ignored")
                                }
                            }
                        }
                        tracing::warn!("the records channel closed; following it again");
                    }
                    Err(error) => {
                        tracing::debug!(%error, "the records channel could not be followed")
                    }
                },
                Err(error) => tracing::debug!(%error, "the records channel could not be followed"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The owners Redis holds for these ids, `None` for an id nobody owns.
    pub async fn owners_of(
        &self,
        ids: &[(String, String)],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let key = self.keys.owners();
        let fields: Vec<String> = ids.iter().map(|(k, i)| field(k, i)).collect();
        self.call(Op::Ownership, |mut c| async move {
            redis::cmd("HMGET")
                .arg(key)
                .arg(fields)
                .query_async::<Vec<Option<String>>>(&mut c)
                .await
        })
        .await
    }

    /// True when some replica has marked `root` provisioned.
    pub async fn is_provisioned(&self, root: &str) -> Result<bool, StoreError> {
        let key = self.keys.provisioned();
        self.call(Op::Provision, |mut c| async move {
            redis::cmd("HEXISTS")
                .arg(key)
                .arg(root)
                .query_async::<bool>(&mut c)
                .await
        })
        .await
    }

    /// Takes the lock that lets one replica provision `root`: its token, or `None`
    /// when another holds it. The lock expires after `hold`, so a replica that dies
    /// mid-run does not block the tenant for ever; the token is this acquisition's
    /// own, so a run that outlived its lock never releases another's.
    pub async fn lock_provisioning(
        &self,
        root: &str,
        hold: Duration,
    ) -> Result<Option<String>, StoreError> {
        let key = self.keys.provisioning(root);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let held = token.clone();
        let millis = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1);
        self.call(Op::Provision, |mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(held)
                .arg("NX")
                .arg("PX")
                .arg(millis)
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await
        .map(|set| set.map(|_| token))
    }

    pub async fn unlock_provisioning(&self, root: &str, token: &str) -> Result<(), StoreError> {
        let mut call = self.scripts.unlock.key(self.keys.provisioning(root));
        call.arg(token);
        self.call(Op::Provision, |mut c| async move {
            call.invoke_async::<i64>(&mut c).await
        })
        .await
        .map(drop)
    }

    async fn own_rows(&self, rows: &[Owned]) -> Result<u64, StoreError> {
        let mut call = self.scripts.own.key(self.keys.owners());
        call.key(self.keys.events())
            .arg(self.keys.owned_by_prefix());
        for row in rows {
            call.arg(field(&row.kind, &row.id)).arg(&row.tenant);
        }
        self.call(Op::Ownership, |mut c| async move {
            call.invoke_async::<u64>(&mut c).await
        })
        .await
    }

    async fn disown_rows(&self, tenant: &str, fields: &[String]) -> Result<u64, StoreError> {
        let mut call = self.scripts.disown.key(self.keys.owners());
        call.key(self.keys.owned_by(tenant))
            .key(self.keys.events())
            .arg(tenant);
        for f in fields {
            call.arg(f);
        }
        self.call(Op::Ownership, |mut c| async move {
            call.invoke_async::<u64>(&mut c).await
        })
        .await
    }

    /// Every ownership row.
    pub async fn all_owners(&self) -> Result<Vec<Owned>, StoreError> {
        let rows = self.scan_hash(self.keys.owners(), Op::Ownership).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(field, tenant)| {
                let (kind, id) = field.split_once(':')?;
                Some(Owned {
                    kind: kind.to_owned(),
                    id: id.to_owned(),
                    tenant,
                })
            })
            .collect())
    }

    /// Every provisioned root.
    pub async fn all_provisioned(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .scan_hash(self.keys.provisioned(), Op::Provision)
            .await?;
        Ok(rows.into_iter().map(|(root, _)| root).collect())
    }

    async fn scan_hash(&self, key: String, op: Op) -> Result<Vec<(String, String)>, StoreError> {
        let mut cursor = 0u64;
        let mut out = Vec::new();
        loop {
            let key = key.clone();
            let (next, page): (u64, Vec<(String, String)>) = self
                .call(op, |mut c| async move {
                    redis::cmd("HSCAN")
                        .arg(key)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            out.extend(page);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}

/// The records' [`RecordsBackend`] over Redis; blocking, as the embedded one is.
#[derive(Debug, Clone)]
pub struct RedisRecords(pub Arc<Redis>);

impl RecordsBackend for RedisRecords {
    fn owners(&self) -> Result<Vec<Owned>, StoreError> {
        self.0.block_on(self.0.all_owners())
    }

    fn own(&self, rows: &[Owned]) -> Result<u64, StoreError> {
        self.0.block_on(self.0.own_rows(rows))
    }

    fn disown(&self, rows: &[Owned]) -> Result<(), StoreError> {
        let mut by_tenant: HashMap<&str, Vec<String>> = HashMap::new();
        for row in rows {
            by_tenant
                .entry(&row.tenant)
                .or_default()
                .push(field(&row.kind, &row.id));
        }
        for (tenant, fields) in by_tenant {
            self.0.block_on(self.0.disown_rows(tenant, &fields))?;
        }
        Ok(())
    }

    fn erase_owner(&self, tenant: &str, _known: &[Owned]) -> Result<u64, StoreError> {
        // Every replica's rows, not only those this one learned.
        self.0.block_on(self.0.disown_rows(tenant, &[]))
    }

    fn provisioned(&self) -> Result<Vec<String>, StoreError> {
        self.0.block_on(self.0.all_provisioned())
    }

    fn mark_provisioned(&self, tenant: &str, at: u64) -> Result<(), StoreError> {
        let key = self.0.keys.provisioned();
        self.0
            .block_on(self.0.call(Op::Provision, |mut c| async move {
                redis::cmd("HSET")
                    .arg(key)
                    .arg(tenant)
                    .arg(at)
                    .query_async::<i64>(&mut c)
                    .await
            }))?;
        Ok(())
    }

    fn unmark_provisioned(&self, tenant: &str) -> Result<bool, StoreError> {
        let (key, events) = (self.0.keys.provisioned(), self.0.keys.events());
        let message = serde_json::json!({ "unprovision": tenant }).to_string();
        self.0
            .block_on(self.0.call(Op::Provision, |mut c| async move {
                // MULTI/EXEC: no replica may miss the offboarding of a mark it holds.
                redis::pipe()
                    .atomic()
                    .cmd("HDEL")
                    .arg(key)
                    .arg(tenant)
                    .cmd("PUBLISH")
                    .arg(events)
                    .arg(message)
                    .query_async::<(i64, i64)>(&mut c)
                    .await
            }))
            .map(|(n, _)| n > 0)
    }
}
