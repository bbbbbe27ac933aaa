//! Retention's SQL: old finished rows found by walking the primary key and deleted
//! by primary key, at most `limit` per statement.
//!
//! Each batch reads a bounded range of the primary key (`id > after ORDER BY id
//! LIMIT n`), never a scan of the whole table, and deletes only the ids it chose:
//! InnoDB then locks those rows alone, not gaps or the table's end, where webhook
//! acknowledgements and new jobs insert.

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamp};
use diesel::{QueryableByName, RunQueryDsl};

use super::{Db, RepoError};

/// What retention deletes: finished rows only; failed deliveries and dead jobs
/// stay until an operator acts on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prunable {
    /// Webhook deliveries applied (`processed`), by the time they arrived.
    ProcessedInbox,
    /// Sync jobs `done`, by the time they finished.
    DoneJobs,
    /// Idempotency keys past their own `expires_at` (no setting: 24 h after use).
    ExpiredIdempotencyKeys,
}

impl Prunable {
    pub fn table(self) -> &'static str {
        match self {
            Prunable::ProcessedInbox => "webhook_inbox",
            Prunable::DoneJobs => "sync_jobs",
            Prunable::ExpiredIdempotencyKeys => "idempotency_keys",
        }
    }

    /// `(prunable, in_range)` for a row, given the cutoff `?` days back. Rows are
    /// inserted in time order, so the first row not `in_range` ends the walk. `None`
    /// for the keys, whose primary key is the client's and not in time order: they
    /// are deleted oldest expiry first through their `expires_at` index.
    fn conditions(self) -> Option<(&'static str, &'static str)> {
        match self {
            Prunable::ProcessedInbox => Some((
                "status = 'processed' AND received_at < NOW(6) - INTERVAL ? DAY",
                "received_at < NOW(6) - INTERVAL ? DAY",
            )),
            Prunable::DoneJobs => Some((
                "status = 'done' AND updated_at < NOW(6) - INTERVAL ? DAY",
                "created_at < NOW(6) - INTERVAL ? DAY",
            )),
            Prunable::ExpiredIdempotencyKeys => None,
        }
    }
}

/// One batch's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Batch {
    pub deleted: usize,
    /// The last id examined: where the next batch starts.
    pub last_id: i64,
    /// Nothing older than the cutoff lies beyond `last_id`.
    pub done: bool,
}

/// The running total of one table, for `amosync db stats`.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct PrunedTotal {
    #[diesel(sql_type = Text)]
    pub table: String,
    #[diesel(sql_type = BigInt)]
    pub pruned: i64,
    #[diesel(sql_type = Nullable<Timestamp>)]
    pub last_pruned_at: Option<chrono::NaiveDateTime>,
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait RetentionRepository: Send + Sync {
    /// Deletes up to `limit` rows of `what` older than `days`, examining ids after
    /// `after_id` only. Expired idempotency keys ignore both: they go by their own
    /// expiry, oldest first.
    async fn prune_batch(
        &self,
        what: Prunable,
        days: u32,
        after_id: i64,
        limit: u32,
    ) -> Result<Batch, RepoError>;

    /// Adds `pruned` to the table's stored total.
    async fn add_to_total(&self, table: &'static str, pruned: u64) -> Result<(), RepoError>;
}

pub struct MysqlRetentionRepository {
    db: Db,
}

impl MysqlRetentionRepository {
    pub fn new(db: Db) -> Self {
        MysqlRetentionRepository { db }
    }
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Bool)]
    prunable: bool,
    #[diesel(sql_type = Bool)]
    in_range: bool,
}

#[async_trait]
impl RetentionRepository for MysqlRetentionRepository {
    async fn prune_batch(
        &self,
        what: Prunable,
        days: u32,
        after_id: i64,
        limit: u32,
    ) -> Result<Batch, RepoError> {
        let days = i32::try_from(days).unwrap_or(i32::MAX);
        self.db
            .run(move |conn| {
                let table = what.table();
                let Some((prunable, in_range)) = what.conditions() else {
                    // A range of the expires_at index below now: new keys expire a
                    // day ahead, far from the rows and gaps this locks.
                    let deleted = diesel::sql_query(format!(
                        "DELETE FROM {table} WHERE expires_at < NOW(6) ORDER BY expires_at LIMIT ?"
                    ))
                    .bind::<BigInt, _>(i64::from(limit))
                    .execute(conn)?;
                    return Ok(Batch {
                        deleted,
                        last_id: after_id,
                        done: deleted < limit as usize,
                    });
                };
                let candidates: Vec<Candidate> = diesel::sql_query(format!(
                    "SELECT id, ({prunable}) AS prunable, ({in_range}) AS in_range \
                     FROM {table} WHERE id > ? ORDER BY id LIMIT ?"
                ))
                .bind::<Integer, _>(days)
                .bind::<Integer, _>(days)
                .bind::<BigInt, _>(after_id)
                .bind::<BigInt, _>(i64::from(limit))
                .load(conn)?;
                let mut batch = Batch {
                    last_id: after_id,
                    done: candidates.len() < limit as usize,
                    ..Batch::default()
                };
                let mut ids = Vec::new();
                for c in &candidates {
                    if !c.in_range {
                        batch.done = true;
                        break;
                    }
                    batch.last_id = c.id;
                    if c.prunable {
                        ids.push(c.id.to_string());
                    }
                }
                if !ids.is_empty() {
                    // The condition again: a job re-queued since the SELECT is kept.
                    batch.deleted = diesel::sql_query(format!(
                        "DELETE FROM {table} WHERE id IN ({}) AND {prunable}",
                        ids.join(",")
                    ))
                    .bind::<Integer, _>(days)
                    .execute(conn)?;
                }
                Ok(batch)
            })
            .await
    }

    async fn add_to_total(&self, table: &'static str, pruned: u64) -> Result<(), RepoError> {
        let pruned = i64::try_from(pruned).unwrap_or(i64::MAX);
        self.db
            .run(move |conn| {
                diesel::sql_query(
                    "INSERT INTO retention_totals (table_name, pruned, last_pruned_at) \
                     VALUES (?, ?, NOW(6)) ON DUPLICATE KEY UPDATE \
                     pruned = pruned + VALUES(pruned), last_pruned_at = NOW(6)",
                )
                .bind::<Text, _>(table)
                .bind::<BigInt, _>(pruned)
                .execute(conn)?;
                Ok(())
            })
            .await
    }
}

/// Every table's running total.
pub async fn pruned_totals(db: &Db) -> Result<Vec<PrunedTotal>, RepoError> {
    db.run(|conn| {
        diesel::sql_query(
            "SELECT table_name AS `table`, pruned, last_pruned_at FROM retention_totals \
             ORDER BY table_name",
        )
        .load(conn)
        .map_err(RepoError::from)
    })
    .await
}
