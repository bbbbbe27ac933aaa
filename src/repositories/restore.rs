//! Restore markers: what a database restored from a backup must undo of its own
//! confidence before amosync works on it again.

use async_trait::async_trait;
use diesel::connection::Connection;
use diesel::sql_types::{BigInt, Nullable};
use diesel::{QueryableByName, RunQueryDsl};

use super::{Db, RepoError};
use crate::domain::SyncStatus;

/// The reconciliation cursors (see `Reconciler::round`), rewound after a restore.
const RECONCILE_CURSORS: [&str; 2] = ["reconcile.contacts", "reconcile.leads"];

/// What handling the markers did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandledRestore {
    /// The oldest unhandled backup's time (unix seconds).
    pub backup_taken_at: i64,
    /// Where the reconciliation cursors now start (unix seconds).
    pub reconcile_from: i64,
    /// Pending contacts and leads that will search AmoCRM before creating.
    pub pending_records: u64,
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait RestoreRepository: Send + Sync {
    /// In one transaction, when a marker is not yet handled: rewinds the
    /// reconciliation cursors to the backup's time less `margin_secs` (freeing their
    /// leases, which belong to instances from before the restore), withdraws the
    /// mirror facts a restore made stale (`reconciled`, `webhook_active`), marks every
    /// pending contact and lead as attempted (so the sync searches AmoCRM before it
    /// creates), and marks the markers handled. `None` when there was none.
    async fn handle_markers(&self, margin_secs: i64) -> Result<Option<HandledRestore>, RepoError>;
}

pub struct MysqlRestoreRepository {
    db: Db,
}

impl MysqlRestoreRepository {
    pub fn new(db: Db) -> Self {
        MysqlRestoreRepository { db }
    }
}

#[derive(QueryableByName)]
struct Oldest {
    #[diesel(sql_type = Nullable<BigInt>)]
    taken_at: Option<i64>,
}

#[async_trait]
impl RestoreRepository for MysqlRestoreRepository {
    async fn handle_markers(&self, margin_secs: i64) -> Result<Option<HandledRestore>, RepoError> {
        self.db
            .run(move |conn| {
                conn.transaction::<_, RepoError, _>(|conn| {
                    // FOR UPDATE: instances starting together handle the markers once.
                    let oldest: Vec<Oldest> = diesel::sql_query(
                        "SELECT CAST(UNIX_TIMESTAMP(backup_taken_at) AS SIGNED) AS taken_at \
                         FROM restore_markers WHERE handled_at IS NULL \
                         ORDER BY backup_taken_at FOR UPDATE",
                    )
                    .load(conn)?;
                    let Some(taken_at) = oldest.first().and_then(|o| o.taken_at) else {
                        return Ok(None);
                    };
                    let from = taken_at - margin_secs;
                    for cursor in RECONCILE_CURSORS {
                        diesel::sql_query(
                            "INSERT INTO sync_cursors (name, position) VALUES (?, ?) \
                             ON DUPLICATE KEY UPDATE position = LEAST(position, VALUES(position)), \
                             leased_until = NULL",
                        )
                        .bind::<diesel::sql_types::Text, _>(cursor)
                        .bind::<BigInt, _>(from)
                        .execute(conn)?;
                    }
                    diesel::sql_query(
                        "DELETE FROM mirror_facts WHERE name IN ('reconciled', 'webhook_active')",
                    )
                    .execute(conn)?;
                    let mut pending = 0;
                    for table in ["contacts", "leads"] {
                        pending += diesel::sql_query(format!(
                            "UPDATE {table} SET sync_attempts = GREATEST(sync_attempts, 1) \
                             WHERE sync_status = ?"
                        ))
                        .bind::<diesel::sql_types::Text, _>(SyncStatus::Pending.as_str())
                        .execute(conn)? as u64;
                    }
                    diesel::sql_query(
                        "UPDATE restore_markers SET handled_at = NOW(6) WHERE handled_at IS NULL",
                    )
                    .execute(conn)?;
                    Ok(Some(HandledRestore {
                        backup_taken_at: taken_at,
                        reconcile_from: from,
                        pending_records: pending,
                    }))
                })
            })
            .await
    }
}
