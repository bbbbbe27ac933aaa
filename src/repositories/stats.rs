//! Queue gauges for `/metrics`: a handful of index-backed counts in one round trip.

use diesel::sql_types::{BigInt, Nullable};
use diesel::{QueryableByName, RunQueryDsl};

use super::{Db, RepoError};
use crate::metrics::QueueStats;

/// `QUEUE_STATS`' one row, read into the plain `QueueStats` the gauges take.
#[derive(QueryableByName)]
struct QueueRow {
    #[diesel(sql_type = BigInt)]
    jobs_pending: i64,
    #[diesel(sql_type = BigInt)]
    jobs_in_flight: i64,
    #[diesel(sql_type = BigInt)]
    jobs_dead: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    oldest_pending_job_secs: Option<i64>,
    #[diesel(sql_type = BigInt)]
    inbox_pending: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    inbox_lag_secs: Option<i64>,
}

// Every filter starts with `status`, the leading column of both tables' due index, so
// done and processed rows (the bulk) are never scanned.
const QUEUE_STATS: &str = "SELECT \
    (SELECT COUNT(*) FROM sync_jobs WHERE status = 'pending') AS jobs_pending, \
    (SELECT COUNT(*) FROM sync_jobs WHERE status = 'pending' AND leased_until > NOW(6)) AS jobs_in_flight, \
    (SELECT COUNT(*) FROM sync_jobs WHERE status = 'dead') AS jobs_dead, \
    (SELECT CAST(TIMESTAMPDIFF(SECOND, MIN(created_at), NOW(6)) AS SIGNED) \
        FROM sync_jobs WHERE status = 'pending') AS oldest_pending_job_secs, \
    (SELECT COUNT(*) FROM webhook_inbox WHERE status = 'pending') AS inbox_pending, \
    (SELECT CAST(TIMESTAMPDIFF(SECOND, MIN(received_at), NOW(6)) AS SIGNED) \
        FROM webhook_inbox WHERE status = 'pending') AS inbox_lag_secs";

pub async fn queue_stats(db: &Db) -> Result<QueueStats, RepoError> {
    db.run(|conn| {
        let row: QueueRow = diesel::sql_query(QUEUE_STATS).get_result(conn)?;
        Ok(QueueStats {
            jobs_pending: row.jobs_pending,
            jobs_in_flight: row.jobs_in_flight,
            jobs_dead: row.jobs_dead,
            oldest_pending_job_secs: row.oldest_pending_job_secs,
            inbox_pending: row.inbox_pending,
            inbox_lag_secs: row.inbox_lag_secs,
        })
    })
    .await
}

/// Records the mirror holds with an AmoCRM id, deleted ones included: what a full
/// import compares before and after to tell new records from ones already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub struct MirrorCounts {
    #[diesel(sql_type = BigInt)]
    pub contacts: i64,
    #[diesel(sql_type = BigInt)]
    pub leads: i64,
}

const MIRROR_COUNTS: &str = "SELECT \
    (SELECT COUNT(amocrm_id) FROM contacts) AS contacts, \
    (SELECT COUNT(amocrm_id) FROM leads) AS leads";

pub async fn mirror_counts(db: &Db) -> Result<MirrorCounts, RepoError> {
    db.run(|conn| {
        diesel::sql_query(MIRROR_COUNTS)
            .get_result(conn)
            .map_err(RepoError::from)
    })
    .await
}
