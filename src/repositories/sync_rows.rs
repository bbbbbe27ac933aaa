//! The sync bookkeeping every mirrored record shares, written once and keyed by
//! `Entity`: a record's lease (taken, renewed, released), a failed attempt recorded
//! with its job's next try. Each entity's table has the same sync columns
//! (`sync_status`, `sync_attempts`, `sync_error`, `sync_lease_until`), so one
//! statement per step serves them all; only the table name comes from the entity.

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::mysql::MysqlConnection;
use diesel::sql_types::{BigInt, Datetime, Nullable, Text};
use diesel::{Connection, RunQueryDsl};

use super::db::{retry_deadlocks, Db};
use super::jobs::{self, Entity, RetryPolicy};
use super::models::SyncStatus;
use super::sync_state::{bounded_error, db_now, lease_end};
use super::RepoError;

/// One mirrored record: which table, which row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Record {
    pub entity: Entity,
    pub id: i64,
}

impl Record {
    pub fn new(entity: Entity, id: i64) -> Self {
        Record { entity, id }
    }
}

impl Entity {
    /// The table holding this entity's rows (a fixed name, never input).
    fn table(self) -> &'static str {
        match self {
            Entity::Contact => "contacts",
            Entity::Lead => "leads",
        }
    }
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait SyncRowRepository: Send + Sync {
    /// Keeps the row pending, records why, frees its lease and schedules the next
    /// attempt of its job (or buries the job); returns `true` when the job is dead.
    async fn record_failure(
        &self,
        record: Record,
        error: &str,
        policy: RetryPolicy,
        permanent: bool,
    ) -> Result<bool, RepoError>;

    /// Frees the row's lease without counting an attempt.
    async fn release(&self, record: Record) -> Result<(), RepoError>;

    /// Extends leases the caller still holds (each `held_until` unchanged since it
    /// took it), over one connection: each record's new lease end, or `None` for a
    /// record whose lease lapsed (someone else may be working on it).
    async fn renew_leases(
        &self,
        held: Vec<(Record, NaiveDateTime)>,
        lease: Duration,
    ) -> Result<Vec<(Record, Option<NaiveDateTime>)>, RepoError>;
}

pub struct MysqlSyncRowRepository {
    db: Db,
}

impl MysqlSyncRowRepository {
    pub fn new(db: Db) -> Self {
        MysqlSyncRowRepository { db }
    }
}

#[async_trait]
impl SyncRowRepository for MysqlSyncRowRepository {
    async fn record_failure(
        &self,
        record: Record,
        error: &str,
        policy: RetryPolicy,
        permanent: bool,
    ) -> Result<bool, RepoError> {
        let error = bounded_error(error);
        self.db
            .run(move |conn| {
                retry_deadlocks(conn, |conn| {
                    conn.transaction(|conn| {
                        diesel::sql_query(format!(
                            "UPDATE {} SET sync_error = ?, sync_lease_until = NULL, \
                             sync_attempts = sync_attempts + 1 WHERE id = ?",
                            record.entity.table()
                        ))
                        .bind::<Text, _>(&error)
                        .bind::<BigInt, _>(record.id)
                        .execute(conn)?;
                        jobs::fail(conn, record.entity, record.id, &error, &policy, permanent)
                    })
                })
            })
            .await
    }

    async fn release(&self, record: Record) -> Result<(), RepoError> {
        self.db
            .run(move |conn| set_lease(conn, record, None).map(drop))
            .await
    }

    async fn renew_leases(
        &self,
        held: Vec<(Record, NaiveDateTime)>,
        lease: Duration,
    ) -> Result<Vec<(Record, Option<NaiveDateTime>)>, RepoError> {
        self.db
            .run(move |conn| {
                let until = lease_end(db_now(conn)?, lease);
                let mut renewed = Vec::with_capacity(held.len());
                for (record, held_until) in held {
                    let rows = diesel::sql_query(format!(
                        "UPDATE {} SET sync_lease_until = ? \
                         WHERE id = ? AND sync_status = ? AND sync_lease_until = ?",
                        record.entity.table()
                    ))
                    .bind::<Datetime, _>(until)
                    .bind::<BigInt, _>(record.id)
                    .bind::<Text, _>(SyncStatus::Pending.as_str())
                    .bind::<Datetime, _>(held_until)
                    .execute(conn)?;
                    renewed.push((record, (rows == 1).then_some(until)));
                }
                Ok(renewed)
            })
            .await
    }
}

/// Sets (or with `None` frees) a row's lease; returns how many rows changed.
fn set_lease(
    conn: &mut MysqlConnection,
    record: Record,
    until: Option<NaiveDateTime>,
) -> Result<usize, RepoError> {
    Ok(diesel::sql_query(format!(
        "UPDATE {} SET sync_lease_until = ? WHERE id = ?",
        record.entity.table()
    ))
    .bind::<Nullable<Datetime>, _>(until)
    .bind::<BigInt, _>(record.id)
    .execute(conn)?)
}

/// A claim that found the record pending with no live lease: the caller takes the
/// lease and the record's job is armed again (a dead one starts over).
pub(super) fn lease_found(
    conn: &mut MysqlConnection,
    record: Record,
    until: NaiveDateTime,
) -> Result<(), RepoError> {
    set_lease(conn, record, Some(until))?;
    jobs::arm(conn, record.entity, record.id)
}

/// Takes the lease of a pending, live row for a background retry; `false` when it
/// is synced, deleted, or leased to someone else right now.
pub(super) fn take_lease(
    conn: &mut MysqlConnection,
    record: Record,
    lease: Duration,
) -> Result<bool, RepoError> {
    let now = db_now(conn)?;
    let taken = diesel::sql_query(format!(
        "UPDATE {} SET sync_lease_until = ? WHERE id = ? AND sync_status = ? \
         AND deleted_at IS NULL AND (sync_lease_until IS NULL OR sync_lease_until < ?)",
        record.entity.table()
    ))
    .bind::<Datetime, _>(lease_end(now, lease))
    .bind::<BigInt, _>(record.id)
    .bind::<Text, _>(SyncStatus::Pending.as_str())
    .bind::<Datetime, _>(now)
    .execute(conn)?;
    Ok(taken == 1)
}
