//! The webhook inbox: raw deliveries stored before they are acknowledged, then
//! claimed in batches by the worker (`FOR UPDATE SKIP LOCKED` plus a lease, so
//! instances share the work and a crashed worker's rows come back).

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::mysql::MysqlConnection;
use diesel::prelude::*;

mod insert;

use self::insert::{InsertDeliveries, InsertedBlock};
use super::db::{retry_deadlocks, Db};
use super::sync_state::{bounded_error, db_now, lease_end};
use super::RepoError;
use crate::schema::webhook_inbox;

pub const INBOX_PENDING: &str = "pending";
pub const INBOX_PROCESSED: &str = "processed";
pub const INBOX_FAILED: &str = "failed";

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = webhook_inbox, check_for_backend(diesel::mysql::Mysql))]
pub struct InboxRow {
    pub id: i64,
    pub content_type: String,
    pub body: Vec<u8>,
    pub attempts: i32,
    pub received_at: NaiveDateTime,
}

/// A delivery as received, before it has an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// How a failed row continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again after this long.
    After(Duration),
    /// Give up: the row ends `failed`.
    Never,
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait InboxRepository: Send + Sync {
    /// Stores deliveries in one multi-row INSERT (one commit for all of them) and
    /// returns their ids in the order given.
    async fn store_all(&self, deliveries: Vec<NewDelivery>) -> Result<Vec<i64>, RepoError>;

    /// Leases up to `limit` due rows, oldest first, skipping rows other workers hold.
    async fn claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<InboxRow>, RepoError>;

    async fn mark_failed(&self, id: i64, error: &str, retry: Retry) -> Result<(), RepoError>;

    /// Frees every lease, so rows a crashed process held are worked on at once.
    /// Safe with several instances: applying a delivery twice changes nothing.
    async fn release_leases(&self) -> Result<u64, RepoError>;

    /// Rows not yet processed or failed.
    async fn backlog(&self) -> Result<i64, RepoError>;
}

pub struct MysqlInboxRepository {
    db: Db,
}

impl MysqlInboxRepository {
    pub fn new(db: Db) -> Self {
        MysqlInboxRepository { db }
    }
}

fn claim(
    conn: &mut MysqlConnection,
    limit: i64,
    lease: Duration,
) -> Result<Vec<InboxRow>, RepoError> {
    conn.transaction(|conn| {
        let now = db_now(conn)?;
        let ids: Vec<i64> = webhook_inbox::table
            .filter(webhook_inbox::status.eq(INBOX_PENDING))
            .filter(webhook_inbox::next_attempt_at.le(now))
            .filter(
                webhook_inbox::leased_until
                    .is_null()
                    .or(webhook_inbox::leased_until.lt(now)),
            )
            .order(webhook_inbox::id.asc())
            .limit(limit)
            .select(webhook_inbox::id)
            .for_update()
            .skip_locked()
            .load(conn)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(webhook_inbox::table.filter(webhook_inbox::id.eq_any(&ids)))
            .set(webhook_inbox::leased_until.eq(lease_end(now, lease)))
            .execute(conn)?;
        Ok(webhook_inbox::table
            .filter(webhook_inbox::id.eq_any(&ids))
            .order(webhook_inbox::id.asc())
            .select(InboxRow::as_select())
            .load(conn)?)
    })
}

/// Marks applied deliveries processed; called inside the transaction that applied
/// them (`MirrorRepository::apply_deliveries`).
pub(super) fn mark_processed(conn: &mut MysqlConnection, ids: &[i64]) -> Result<(), RepoError> {
    if ids.is_empty() {
        return Ok(());
    }
    let now = db_now(conn)?;
    diesel::update(webhook_inbox::table.filter(webhook_inbox::id.eq_any(ids)))
        .set((
            webhook_inbox::status.eq(INBOX_PROCESSED),
            webhook_inbox::attempts.eq(webhook_inbox::attempts + 1),
            webhook_inbox::processed_at.eq(now),
            webhook_inbox::leased_until.eq(None::<NaiveDateTime>),
            webhook_inbox::last_error.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(())
}

/// The ids of the rows the last multi-row INSERT on `conn` made. InnoDB allocates a
/// "simple insert" (row count known up front) one block of ids under every
/// `innodb_autoinc_lock_mode`, so they run from `LAST_INSERT_ID()` (the first row's)
/// in steps of `auto_increment_increment` (more than 1 on some clusters).
fn inserted_ids(conn: &mut MysqlConnection, count: usize) -> Result<Vec<i64>, RepoError> {
    let (first, step): (u64, u64) = InsertedBlock.get_result(conn)?;
    let first = i64::try_from(first)
        .map_err(|_| RepoError::Query(format!("insert id {first} out of range").into()))?;
    let step = i64::try_from(step.max(1)).unwrap_or(1);
    Ok((0..count as i64).map(|i| first + i * step).collect())
}

#[async_trait]
impl InboxRepository for MysqlInboxRepository {
    async fn store_all(&self, deliveries: Vec<NewDelivery>) -> Result<Vec<i64>, RepoError> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, Vec<u8>)> = deliveries
            .into_iter()
            .map(|d| (d.content_type.chars().take(128).collect(), d.body))
            .collect();
        // The worker's claim holds gap locks on the due index; an insert that meets
        // them can be picked as a deadlock victim and is simply tried again.
        self.db
            .run(move |conn| {
                retry_deadlocks(conn, |conn| {
                    InsertDeliveries { rows: &rows }.execute(conn)?;
                    inserted_ids(conn, rows.len())
                })
            })
            .await
    }

    async fn claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<InboxRow>, RepoError> {
        self.db
            .run(move |conn| retry_deadlocks(conn, |conn| claim(conn, limit, lease)))
            .await
    }

    async fn mark_failed(&self, id: i64, error: &str, retry: Retry) -> Result<(), RepoError> {
        let error = bounded_error(error);
        self.db
            .run(move |conn| {
                let now = db_now(conn)?;
                let (status, next) = match retry {
                    Retry::After(delay) => (INBOX_PENDING, lease_end(now, delay)),
                    Retry::Never => (INBOX_FAILED, now),
                };
                diesel::update(webhook_inbox::table.find(id))
                    .set((
                        webhook_inbox::status.eq(status),
                        webhook_inbox::attempts.eq(webhook_inbox::attempts + 1),
                        webhook_inbox::last_error.eq(error),
                        webhook_inbox::next_attempt_at.eq(next),
                        webhook_inbox::leased_until.eq(None::<NaiveDateTime>),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await
    }

    async fn release_leases(&self) -> Result<u64, RepoError> {
        self.db
            .run(|conn| {
                let freed = diesel::update(
                    webhook_inbox::table
                        .filter(webhook_inbox::status.eq(INBOX_PENDING))
                        .filter(webhook_inbox::leased_until.is_not_null()),
                )
                .set(webhook_inbox::leased_until.eq(None::<NaiveDateTime>))
                .execute(conn)?;
                Ok(freed as u64)
            })
            .await
    }

    async fn backlog(&self) -> Result<i64, RepoError> {
        self.db
            .run(|conn| {
                Ok(webhook_inbox::table
                    .filter(webhook_inbox::status.eq(INBOX_PENDING))
                    .count()
                    .get_result(conn)?)
            })
            .await
    }
}
