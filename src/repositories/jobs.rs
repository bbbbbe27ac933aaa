//! The outbox of AmoCRM work: one `sync_jobs` row per local record that still has
//! to reach AmoCRM. Records and their jobs change in the same transaction (the
//! record repositories call the `arm` / `complete` / `fail` helpers here).

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::mysql::MysqlConnection;
use diesel::prelude::*;

use super::db::{retry_deadlocks, Db};
use super::sync_state::{bounded_error, db_now, lease_end};
use super::RepoError;
use crate::schema::sync_jobs;

pub const JOB_PENDING: &str = "pending";
pub const JOB_DONE: &str = "done";
pub const JOB_DEAD: &str = "dead";

/// What a job syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Contact,
    Lead,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Contact => "contact",
            Entity::Lead => "lead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = sync_jobs, check_for_backend(diesel::mysql::Mysql))]
pub struct SyncJob {
    pub id: i64,
    pub entity: String,
    pub record_id: i64,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: NaiveDateTime,
    pub leased_until: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl SyncJob {
    pub fn entity(&self) -> Option<Entity> {
        match self.entity.as_str() {
            "contact" => Some(Entity::Contact),
            "lead" => Some(Entity::Lead),
            _ => None,
        }
    }
}

/// How failed attempts are spaced and when a job is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    pub max_attempts: i32,
}

impl RetryPolicy {
    /// The longest wait between two attempts, however many failed.
    pub const CAP: Duration = Duration::from_secs(300);

    /// `base` doubled per attempt up to `CAP`; dead after `max_attempts`.
    pub fn new(base: Duration, max_attempts: i32) -> Self {
        RetryPolicy {
            base,
            cap: Self::CAP,
            max_attempts,
        }
    }

    /// Exponential backoff with full jitter between half and all of the step, so
    /// jobs that failed together do not all come back in the same second.
    pub fn delay_after(&self, attempts: i32) -> Duration {
        let step = self
            .base
            .saturating_mul(1 << attempts.clamp(0, 16))
            .min(self.cap);
        step.mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// Inserts the record's job, or re-arms it (a dead job that a client resubmits
/// starts over).
pub(super) fn arm(
    conn: &mut MysqlConnection,
    entity: Entity,
    record_id: i64,
) -> Result<(), RepoError> {
    diesel::sql_query(
        "INSERT INTO sync_jobs (entity, record_id) VALUES (?, ?) \
         ON DUPLICATE KEY UPDATE attempts = IF(status = 'pending', attempts, 0), \
         status = 'pending', next_attempt_at = NOW(6)",
    )
    .bind::<diesel::sql_types::Text, _>(entity.as_str())
    .bind::<diesel::sql_types::BigInt, _>(record_id)
    .execute(conn)?;
    Ok(())
}

pub(super) fn complete(
    conn: &mut MysqlConnection,
    entity: Entity,
    record_id: i64,
) -> Result<(), RepoError> {
    diesel::update(
        sync_jobs::table
            .filter(sync_jobs::entity.eq(entity.as_str()))
            .filter(sync_jobs::record_id.eq(record_id)),
    )
    .set((
        sync_jobs::status.eq(JOB_DONE),
        sync_jobs::leased_until.eq(None::<NaiveDateTime>),
        sync_jobs::last_error.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(())
}

/// Counts a failed attempt: the job comes back after a backoff, or is dead when
/// `permanent` (AmoCRM refused the content) or out of attempts. Returns `true` when dead.
pub(super) fn fail(
    conn: &mut MysqlConnection,
    entity: Entity,
    record_id: i64,
    error: &str,
    policy: &RetryPolicy,
    permanent: bool,
) -> Result<bool, RepoError> {
    let now = db_now(conn)?;
    let job = sync_jobs::table
        .filter(sync_jobs::entity.eq(entity.as_str()))
        .filter(sync_jobs::record_id.eq(record_id))
        .select(SyncJob::as_select())
        .first(conn)
        .optional()?;
    let attempts = job.as_ref().map(|j| j.attempts).unwrap_or(0) + 1;
    let dead = permanent || attempts >= policy.max_attempts;
    let next = lease_end(
        now,
        if dead {
            Duration::ZERO
        } else {
            policy.delay_after(attempts - 1)
        },
    );
    if job.is_none() {
        arm(conn, entity, record_id)?;
    }
    diesel::update(
        sync_jobs::table
            .filter(sync_jobs::entity.eq(entity.as_str()))
            .filter(sync_jobs::record_id.eq(record_id)),
    )
    .set((
        sync_jobs::status.eq(if dead { JOB_DEAD } else { JOB_PENDING }),
        sync_jobs::attempts.eq(attempts),
        sync_jobs::last_error.eq(bounded_error(error)),
        sync_jobs::next_attempt_at.eq(next),
        sync_jobs::leased_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(dead)
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait JobRepository: Send + Sync {
    /// Leases up to `limit` due jobs (contacts, then leads), skipping jobs other
    /// workers hold.
    async fn claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<SyncJob>, RepoError>;

    /// Puts a job back without counting an attempt (its record is busy elsewhere).
    async fn defer(&self, id: i64, delay: Duration) -> Result<(), RepoError>;

    async fn complete(&self, entity: Entity, record_id: i64) -> Result<(), RepoError>;

    /// Makes every pending job that is backing off after failed attempts due now;
    /// returns how many. For when AmoCRM works again: waiting longer helps nobody,
    /// and jobs that come due together are sent together.
    async fn expedite_retries(&self) -> Result<usize, RepoError>;

    async fn list(
        &self,
        status: Option<String>,
        after_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SyncJob>, RepoError>;

    /// Re-queues a dead (or pending) job now with a fresh attempt count.
    async fn retry(&self, id: i64) -> Result<Option<SyncJob>, RepoError>;

    /// Re-queues every dead job; returns how many.
    async fn retry_dead(&self) -> Result<usize, RepoError>;
}

pub struct MysqlJobRepository {
    db: Db,
}

impl MysqlJobRepository {
    pub fn new(db: Db) -> Self {
        MysqlJobRepository { db }
    }
}

fn claim(
    conn: &mut MysqlConnection,
    limit: i64,
    lease: Duration,
) -> Result<Vec<SyncJob>, RepoError> {
    conn.transaction(|conn| {
        let now = db_now(conn)?;
        let ids: Vec<i64> = sync_jobs::table
            .filter(sync_jobs::status.eq(JOB_PENDING))
            .filter(sync_jobs::next_attempt_at.le(now))
            .filter(
                sync_jobs::leased_until
                    .is_null()
                    .or(sync_jobs::leased_until.lt(now)),
            )
            .order((sync_jobs::entity.asc(), sync_jobs::id.asc()))
            .limit(limit)
            .select(sync_jobs::id)
            .for_update()
            .skip_locked()
            .load(conn)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(sync_jobs::table.filter(sync_jobs::id.eq_any(&ids)))
            .set(sync_jobs::leased_until.eq(lease_end(now, lease)))
            .execute(conn)?;
        Ok(sync_jobs::table
            .filter(sync_jobs::id.eq_any(&ids))
            .order((sync_jobs::entity.asc(), sync_jobs::id.asc()))
            .select(SyncJob::as_select())
            .load(conn)?)
    })
}

#[async_trait]
impl JobRepository for MysqlJobRepository {
    async fn claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<SyncJob>, RepoError> {
        self.db
            .run(move |conn| retry_deadlocks(conn, |conn| claim(conn, limit, lease)))
            .await
    }

    async fn defer(&self, id: i64, delay: Duration) -> Result<(), RepoError> {
        self.db
            .run(move |conn| {
                let now = db_now(conn)?;
                diesel::update(sync_jobs::table.find(id))
                    .set((
                        sync_jobs::next_attempt_at.eq(lease_end(now, delay)),
                        sync_jobs::leased_until.eq(None::<NaiveDateTime>),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await
    }

    async fn complete(&self, entity: Entity, record_id: i64) -> Result<(), RepoError> {
        self.db
            .run(move |conn| complete(conn, entity, record_id))
            .await
    }

    async fn expedite_retries(&self) -> Result<usize, RepoError> {
        self.db
            .run(move |conn| {
                let now = db_now(conn)?;
                let moved = diesel::update(
                    sync_jobs::table
                        .filter(sync_jobs::status.eq(JOB_PENDING))
                        .filter(sync_jobs::attempts.gt(0))
                        .filter(sync_jobs::next_attempt_at.gt(now)),
                )
                .set(sync_jobs::next_attempt_at.eq(now))
                .execute(conn)?;
                Ok(moved)
            })
            .await
    }

    async fn list(
        &self,
        status: Option<String>,
        after_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SyncJob>, RepoError> {
        self.db
            .run(move |conn| {
                let mut query = sync_jobs::table.into_boxed();
                if let Some(status) = status {
                    query = query.filter(sync_jobs::status.eq(status));
                }
                if let Some(after) = after_id {
                    query = query.filter(sync_jobs::id.gt(after));
                }
                Ok(query
                    .order(sync_jobs::id.asc())
                    .limit(limit)
                    .select(SyncJob::as_select())
                    .load(conn)?)
            })
            .await
    }

    async fn retry(&self, id: i64) -> Result<Option<SyncJob>, RepoError> {
        self.db
            .run(move |conn| {
                let now = db_now(conn)?;
                diesel::update(
                    sync_jobs::table
                        .find(id)
                        .filter(sync_jobs::status.ne(JOB_DONE)),
                )
                .set((
                    sync_jobs::status.eq(JOB_PENDING),
                    sync_jobs::attempts.eq(0),
                    sync_jobs::next_attempt_at.eq(now),
                    sync_jobs::leased_until.eq(None::<NaiveDateTime>),
                ))
                .execute(conn)?;
                Ok(sync_jobs::table
                    .find(id)
                    .select(SyncJob::as_select())
                    .first(conn)
                    .optional()?)
            })
            .await
    }

    async fn retry_dead(&self) -> Result<usize, RepoError> {
        self.db
            .run(|conn| {
                let now = db_now(conn)?;
                Ok(
                    diesel::update(sync_jobs::table.filter(sync_jobs::status.eq(JOB_DEAD)))
                        .set((
                            sync_jobs::status.eq(JOB_PENDING),
                            sync_jobs::attempts.eq(0),
                            sync_jobs::next_attempt_at.eq(now),
                        ))
                        .execute(conn)?,
                )
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let policy = RetryPolicy::new(Duration::from_secs(2), 10);
        for attempts in 0..20 {
            let step = Duration::from_secs(2)
                .saturating_mul(1 << attempts.min(16))
                .min(Duration::from_secs(300));
            let delay = policy.delay_after(attempts);
            assert!(
                delay >= step / 2 && delay <= step,
                "attempt {attempts}: {delay:?} vs {step:?}"
            );
        }
    }
}
