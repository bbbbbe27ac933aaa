//! Repositories own all SQL. Each is a trait (mocked in service tests) with a
//! MySQL implementation whose queries run through `Db::run`. The sync bookkeeping
//! all mirrored records share (leases, failed attempts) is written once, keyed by
//! `Entity` (`sync_rows`); each entity's repository keeps only its own lookups,
//! claim and finish.

mod catalogue;
mod contacts;
mod cursors;
mod db;
mod duplicates;
mod facts;
mod idempotency;
mod inbox;
mod jobs;
mod leads;
mod mirror;
mod models;
mod refetch;
mod restore;
mod retention;
mod senders;
mod stats;
mod sync_rows;
mod sync_state;
mod tables;
mod tokens;

pub use catalogue::{CatalogueAge, CatalogueRepository, MysqlCatalogueRepository};
pub use contacts::{ContactFilter, ContactRepository, MysqlContactRepository};
pub use cursors::{CursorRepository, MysqlCursorRepository};
pub use db::{retry_deadlocks, with_named_lock, Db, MIGRATIONS};
pub use duplicates::{
    DuplicatePair, DuplicateRepository, MysqlDuplicateRepository, RecordedDuplicate,
};
pub use facts::{FactAges, MirrorFact, MirrorFactRepository, MysqlMirrorFactRepository};
pub use idempotency::{
    IdempotencyRepository, KeyState, MysqlIdempotencyRepository, StoredResponse,
};
pub use inbox::{InboxRepository, InboxRow, MysqlInboxRepository, NewDelivery, Retry};
pub use jobs::{
    Entity, JobRepository, MysqlJobRepository, RetryPolicy, SyncJob, JOB_DEAD, JOB_DONE,
    JOB_PENDING,
};
pub use leads::{LeadFilter, LeadRepository, MysqlLeadRepository};
pub use mirror::{
    CompanyChange, ContactChange, LeadChange, MirrorBatch, MirrorRepository, MysqlMirrorRepository,
    Removal,
};
pub use models::{Claim, Contact, Lead, NewContact, NewLead, SyncRow, Window};
pub use refetch::{MysqlRefetchRepository, QueuedRefetch, RefetchEntity, RefetchRepository};
pub use restore::{HandledRestore, MysqlRestoreRepository, RestoreRepository};
pub use retention::{
    pruned_totals, Batch, MysqlRetentionRepository, Prunable, PrunedTotal, RetentionRepository,
};
pub use senders::{MysqlSenderRepository, SenderRepository};
pub use stats::{mirror_counts, queue_stats, MirrorCounts};
pub use sync_rows::{MysqlSyncRowRepository, Record, SyncRowRepository};
pub use tables::table_sizes;
pub use tokens::{MysqlTokenStore, Resealed, TokenStoreError};

#[cfg(test)]
pub use catalogue::MockCatalogueRepository;
#[cfg(test)]
pub use contacts::MockContactRepository;
#[cfg(test)]
pub use cursors::MockCursorRepository;
#[cfg(test)]
pub use duplicates::MockDuplicateRepository;
#[cfg(test)]
pub use facts::MockMirrorFactRepository;
#[cfg(test)]
pub use idempotency::MockIdempotencyRepository;
#[cfg(test)]
pub use inbox::MockInboxRepository;
#[cfg(test)]
pub use jobs::MockJobRepository;
#[cfg(test)]
pub use leads::MockLeadRepository;
#[cfg(test)]
pub use mirror::MockMirrorRepository;
#[cfg(test)]
pub use refetch::MockRefetchRepository;
#[cfg(test)]
pub use restore::MockRestoreRepository;
#[cfg(test)]
pub use retention::MockRetentionRepository;
#[cfg(test)]
pub use senders::MockSenderRepository;
#[cfg(test)]
pub use sync_rows::MockSyncRowRepository;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::cause::Cause;

/// Each variant keeps what went wrong as its `source()`: the driver's or pool's
/// error itself, or a description where the repository found the fault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RepoError {
    /// The database cannot be reached, the pool is exhausted or a lock timed out:
    /// worth retrying, and a 503 for the client.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// A unique key already holds this value.
    #[error("unique constraint violated: {0}")]
    Conflict(#[source] Cause),
    /// Any other failure of a query: a bug or a schema mismatch.
    #[error("query failed: {0}")]
    Query(#[source] Cause),
}

impl From<DieselError> for RepoError {
    fn from(err: DieselError) -> Self {
        let kind = match &err {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                RepoError::Conflict
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                RepoError::Unavailable
            }
            DieselError::DatabaseError(_, info) if is_transient_mysql_message(info.message()) => {
                RepoError::Unavailable
            }
            _ => RepoError::Query,
        };
        kind(Cause::new(err))
    }
}

/// A batched query whose batch failed in the batcher itself: a dropped call is the
/// runtime going away (worth retrying), the rest are bugs.
impl From<crate::concurrency::BatchFailure> for RepoError {
    fn from(failure: crate::concurrency::BatchFailure) -> Self {
        match failure {
            crate::concurrency::BatchFailure::Dropped => {
                RepoError::Unavailable(Cause::new(failure))
            }
            _ => RepoError::Query(Cause::new(failure)),
        }
    }
}

impl RepoError {
    /// The server answered and refused the account or the database (wrong user or
    /// password, no grant, no such database): waiting will not change that.
    pub fn is_access_refused(&self) -> bool {
        let RepoError::Unavailable(cause) = self else {
            return false;
        };
        let message = crate::cause::chain(cause);
        ["Access denied", "Unknown database"]
            .iter()
            .any(|needle| message.contains(needle))
    }
}

/// The server closed or lost this connection: it is of no further use.
fn is_connection_lost(message: &str) -> bool {
    ["gone away", "Lost connection", "server shutdown"]
        .iter()
        .any(|needle| message.contains(needle))
}

/// MySQL reports lost connections, deadlocks and lock waits only as text in
/// Diesel's `Unknown` kind; this is the one place that reads those messages.
fn is_transient_mysql_message(message: &str) -> bool {
    const TRANSIENT: [&str; 6] = [
        "gone away",
        "Lost connection",
        "Can't connect",
        "Deadlock found",
        "Lock wait timeout",
        "server shutdown",
    ];
    TRANSIENT.iter().any(|needle| message.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::RepoError;

    #[test]
    fn a_refused_account_or_database_is_told_from_a_server_still_booting() {
        for refused in [
            "timed out waiting for connection: Access denied for user 'amo'@'localhost' (using password: YES)",
            "Unknown database 'amosync'",
        ] {
            assert!(RepoError::Unavailable(refused.into()).is_access_refused(), "{refused}");
        }
        for passing in [
            "timed out waiting for connection: Can't connect to server on '127.0.0.1' (111)",
            "Lost connection to server during query",
        ] {
            assert!(
                !RepoError::Unavailable(passing.into()).is_access_refused(),
                "{passing}"
            );
        }
        assert!(!RepoError::Query("Access denied".into()).is_access_refused());
    }
}
