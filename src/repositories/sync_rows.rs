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
use super::models::{Claim, SyncRow};
use super::sync_state::{bounded_error, db_now, last_insert_id, lease_end, lease_is_live};
use super::RepoError;
use crate::domain::SyncStatus;

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

/// Loads one row by id; each entity's repository has one (`mirrored_table!`).
pub(super) type Load<T> = fn(&mut MysqlConnection, i64) -> Result<T, RepoError>;

/// The claim of a submission, once the entity's repository has looked for its row
/// (`found`) under the record's named lock and inside one transaction: a synced row
/// is the answer; a row leased elsewhere is busy; otherwise the caller takes the
/// lease, on the row found or on a new pending one (`insert`, given the lease end),
/// and the record's job is armed (a dead one starts over).
pub(super) fn claim_found<T: SyncRow>(
    conn: &mut MysqlConnection,
    found: Option<T>,
    lease: Duration,
    insert: impl FnOnce(&mut MysqlConnection, NaiveDateTime) -> diesel::QueryResult<usize>,
    load: Load<T>,
) -> Result<Claim<T>, RepoError> {
    let now = db_now(conn)?;
    let until = lease_end(now, lease);
    let id = match found {
        Some(row) if row.synced() => return Ok(Claim::Existing(row)),
        Some(row) if lease_is_live(row.lease_until(), now) => return Ok(Claim::Busy(row)),
        Some(row) => {
            set_lease(conn, Record::new(T::ENTITY, row.record_id()), Some(until))?;
            row.record_id()
        }
        None => {
            insert(conn, until)?;
            last_insert_id(conn)?
        }
    };
    jobs::arm(conn, T::ENTITY, id)?;
    Ok(Claim::Leased(load(conn, id)?))
}

/// Takes the lease of a pending, live row for a background retry; `None` when it
/// is synced, deleted, or leased to someone else right now.
pub(super) fn take_lease<T: SyncRow>(
    conn: &mut MysqlConnection,
    id: i64,
    lease: Duration,
    load: Load<T>,
) -> Result<Option<T>, RepoError> {
    let now = db_now(conn)?;
    let taken = diesel::sql_query(format!(
        "UPDATE {} SET sync_lease_until = ? WHERE id = ? AND sync_status = ? \
         AND deleted_at IS NULL AND (sync_lease_until IS NULL OR sync_lease_until < ?)",
        T::ENTITY.table()
    ))
    .bind::<Datetime, _>(lease_end(now, lease))
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(SyncStatus::Pending.as_str())
    .bind::<Datetime, _>(now)
    .execute(conn)?;
    match taken {
        1 => load(conn, id).map(Some),
        _ => Ok(None),
    }
}

/// A finished row whose AmoCRM record another row mirrors already (a webhook or
/// reconciliation brought it in): that row is the truth, ours was a placeholder.
/// The twin comes back if it was deleted, ours goes, and its job is done.
pub(super) fn fold_into(
    conn: &mut MysqlConnection,
    record: Record,
    twin_id: i64,
) -> Result<(), RepoError> {
    diesel::sql_query(format!(
        "UPDATE {} SET deleted_at = NULL WHERE id = ?",
        record.entity.table()
    ))
    .bind::<BigInt, _>(twin_id)
    .execute(conn)?;
    diesel::sql_query(format!(
        "DELETE FROM {} WHERE id = ?",
        record.entity.table()
    ))
    .bind::<BigInt, _>(record.id)
    .execute(conn)?;
    jobs::complete(conn, record.entity, record.id)
}

/// The queries every mirrored table has, for its row type: `rows` (deleted ones
/// only when asked), `active`, `load` and `one` by id, a keyset `page`, and the
/// repository struct over `Db`.
macro_rules! mirrored_table {
    ($repository:ident, $table:ident, $row:ty) => {
        pub struct $repository {
            db: Db,
        }

        impl $repository {
            pub fn new(db: Db) -> Self {
                $repository { db }
            }
        }

        fn active() -> $table::BoxedQuery<'static, diesel::mysql::Mysql> {
            rows(false)
        }

        fn rows(include_deleted: bool) -> $table::BoxedQuery<'static, diesel::mysql::Mysql> {
            match include_deleted {
                true => $table::table.into_boxed(),
                false => $table::table
                    .filter($table::deleted_at.is_null())
                    .into_boxed(),
            }
        }

        fn load(conn: &mut MysqlConnection, id: i64) -> Result<$row, RepoError> {
            Ok($table::table
                .find(id)
                .select(<$row>::as_select())
                .first(conn)?)
        }

        /// One row; a deleted one only when `include_deleted`.
        fn one(
            conn: &mut MysqlConnection,
            id: i64,
            include_deleted: bool,
        ) -> Result<Option<$row>, RepoError> {
            Ok(rows(include_deleted)
                .filter($table::id.eq(id))
                .select(<$row>::as_select())
                .first(conn)
                .optional()?)
        }

        /// A keyset page (`window`) of the rows `filtered` keeps.
        fn page(
            conn: &mut MysqlConnection,
            window: Window,
            filtered: impl FnOnce(
                $table::BoxedQuery<'static, diesel::mysql::Mysql>,
            ) -> $table::BoxedQuery<'static, diesel::mysql::Mysql>,
        ) -> Result<Vec<$row>, RepoError> {
            let mut query = filtered(rows(window.include_deleted));
            if let Some(after) = window.after_id {
                query = query.filter($table::id.gt(after));
            }
            Ok(query
                .order($table::id.asc())
                .limit(window.limit)
                .select(<$row>::as_select())
                .load(conn)?)
        }
    };
}

pub(super) use mirrored_table;
