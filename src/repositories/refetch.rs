//! The queue of records to read back from AmoCRM (`mirror_refetch`): records whose
//! webhook event carried no change time. Rows are queued inside the mirror batch's
//! transaction (`enqueue`), claimed by the refetch worker a batch at a time, and
//! deleted once AmoCRM answered for them.

use std::time::Duration;

use async_trait::async_trait;
use diesel::mysql::MysqlConnection;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};

use super::db::{retry_deadlocks, Db};
use super::RepoError;

/// Which AmoCRM list a record is read back from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefetchEntity {
    Contacts,
    Leads,
}

impl RefetchEntity {
    pub fn as_str(self) -> &'static str {
        match self {
            RefetchEntity::Contacts => "contacts",
            RefetchEntity::Leads => "leads",
        }
    }
}

/// One queued record, as claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedRefetch {
    pub amocrm_id: i64,
    /// Claims so far, this one included.
    pub attempts: i32,
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait RefetchRepository: Send + Sync {
    /// Up to `limit` due records of `entity`, oldest first; each is hidden from
    /// other claims for `lease` (a crashed worker's rows come back after it).
    async fn claim_due(
        &self,
        entity: RefetchEntity,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<QueuedRefetch>, RepoError>;

    /// Removes records AmoCRM answered for (found or not).
    async fn done(&self, entity: RefetchEntity, ids: Vec<i64>) -> Result<(), RepoError>;

    /// Makes records due again after `delay`.
    async fn retry_after(
        &self,
        entity: RefetchEntity,
        ids: Vec<i64>,
        delay: Duration,
    ) -> Result<(), RepoError>;
}

pub struct MysqlRefetchRepository {
    db: Db,
}

impl MysqlRefetchRepository {
    pub fn new(db: Db) -> Self {
        MysqlRefetchRepository { db }
    }
}

/// Queues records (a no-op for those already queued, except that they become due
/// now). Runs in the caller's transaction.
pub(super) fn enqueue(
    conn: &mut MysqlConnection,
    records: &[(RefetchEntity, i64)],
) -> Result<usize, RepoError> {
    let mut statements = 0;
    for chunk in records.chunks(500) {
        let sql = format!(
            "INSERT INTO mirror_refetch (entity, amocrm_id) VALUES {} \
             ON DUPLICATE KEY UPDATE due_at = LEAST(due_at, NOW(6))",
            vec!["(?, ?)"; chunk.len()].join(", ")
        );
        let mut q = diesel::sql_query(sql).into_boxed();
        for (entity, id) in chunk {
            q = q.bind::<Text, _>(entity.as_str()).bind::<BigInt, _>(*id);
        }
        q.execute(conn)?;
        statements += 1;
    }
    Ok(statements)
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    amocrm_id: i64,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

fn in_list(ids: &[i64]) -> String {
    vec!["?"; ids.len()].join(", ")
}

/// `UPDATE mirror_refetch SET {set} WHERE entity = ? AND amocrm_id IN (…)`, with
/// `seconds` bound first when `set` uses it.
fn update(
    conn: &mut MysqlConnection,
    set: &str,
    seconds: Option<i64>,
    entity: RefetchEntity,
    ids: &[i64],
) -> Result<(), RepoError> {
    let sql = format!(
        "UPDATE mirror_refetch SET {set} WHERE entity = ? AND amocrm_id IN ({})",
        in_list(ids)
    );
    let mut q = diesel::sql_query(sql).into_boxed();
    if let Some(seconds) = seconds {
        q = q.bind::<BigInt, _>(seconds);
    }
    q = q.bind::<Text, _>(entity.as_str());
    for id in ids {
        q = q.bind::<BigInt, _>(*id);
    }
    q.execute(conn)?;
    Ok(())
}

#[async_trait]
impl RefetchRepository for MysqlRefetchRepository {
    async fn claim_due(
        &self,
        entity: RefetchEntity,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<QueuedRefetch>, RepoError> {
        let lease = lease.as_secs().max(1) as i64;
        self.db
            .run(move |conn| {
                retry_deadlocks(conn, |conn| {
                    conn.transaction(|conn| {
                        let rows: Vec<Row> = diesel::sql_query(
                            "SELECT amocrm_id, attempts FROM mirror_refetch \
                             WHERE entity = ? AND due_at <= NOW(6) \
                             ORDER BY due_at, amocrm_id LIMIT ? FOR UPDATE SKIP LOCKED",
                        )
                        .bind::<Text, _>(entity.as_str())
                        .bind::<BigInt, _>(limit)
                        .load(conn)?;
                        let ids: Vec<i64> = rows.iter().map(|r| r.amocrm_id).collect();
                        if !ids.is_empty() {
                            let set = "attempts = attempts + 1, \
                                       due_at = NOW(6) + INTERVAL ? SECOND";
                            update(conn, set, Some(lease), entity, &ids)?;
                        }
                        Ok(rows
                            .into_iter()
                            .map(|r| QueuedRefetch {
                                amocrm_id: r.amocrm_id,
                                attempts: r.attempts + 1,
                            })
                            .collect())
                    })
                })
            })
            .await
    }

    async fn done(&self, entity: RefetchEntity, ids: Vec<i64>) -> Result<(), RepoError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.db
            .run(move |conn| {
                let sql = format!(
                    "DELETE FROM mirror_refetch WHERE entity = ? AND amocrm_id IN ({})",
                    in_list(&ids)
                );
                let mut q = diesel::sql_query(sql)
                    .into_boxed()
                    .bind::<Text, _>(entity.as_str());
                for id in &ids {
                    q = q.bind::<BigInt, _>(*id);
                }
                q.execute(conn)?;
                Ok(())
            })
            .await
    }

    async fn retry_after(
        &self,
        entity: RefetchEntity,
        ids: Vec<i64>,
        delay: Duration,
    ) -> Result<(), RepoError> {
        if ids.is_empty() {
            return Ok(());
        }
        let seconds = delay.as_secs() as i64;
        self.db
            .run(move |conn| {
                update(
                    conn,
                    "due_at = NOW(6) + INTERVAL ? SECOND",
                    Some(seconds),
                    entity,
                    &ids,
                )
            })
            .await
    }
}
