//! Services own the rules: find-or-create against the mirror and AmoCRM. They
//! depend on the repository traits and `AmoTransport`, never on actix.

mod authority;
mod batcher;
mod batches;
mod contacts;
mod group_commit;
mod idempotency;
mod intake;
mod jobs;
mod leads;
mod lease_keeper;
mod rate_share;
mod reconcile;
mod refetch;
mod restore;
mod retention;
mod single_flight;
mod subscription;
mod sync;
mod sync_round;
mod webhooks;

pub use authority::{MirrorAuthority, MirrorState};
pub use contacts::{ContactInput, ContactService};
pub use group_commit::GroupCommit;
pub use idempotency::IdempotencyService;
pub use intake::Intake;
pub use jobs::JobService;
pub use leads::{LeadContact, LeadInput, LeadService};
pub use rate_share::RateShare;
pub use reconcile::{Imported, Reconciler, Upkeep, Walk};
pub use refetch::{RefetchConfig, Refetcher};
pub use restore::{AfterRestore, RECONCILE_MARGIN_SECS};
pub use retention::{Pruned, Retention, RetentionConfig};
pub use subscription::{Subscribed, WebhookSubscription, MIRROR_EVENTS};
pub use sync::{SyncWorker, SyncWorkerConfig};
pub use webhooks::{to_batch, ExpectedAccount, WebhookReceiver, WebhookWorker, WorkerConfig};

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slog::Logger;

use crate::amo::AmoError;
use crate::domain::FieldError;
use crate::repositories::{Claim, RepoError, RetryPolicy};

/// How long a claim on a pending record is exclusive, unless configured. Longer than
/// any single AmoCRM round (searches page through results, each call has its own
/// timeout); after a crash, the record waits this long before anyone retries it.
pub const SYNC_LEASE: Duration = Duration::from_secs(90);

/// How often a waiting request looks again at a record leased elsewhere.
pub const BUSY_POLL: Duration = Duration::from_millis(200);

/// A record and whether this request created it in AmoCRM.
#[derive(Debug, Clone, PartialEq)]
pub struct Synced<T> {
    pub record: T,
    pub created: bool,
}

/// How a find-or-create ended, as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Saved<T> {
    /// Created in AmoCRM by this request.
    Created(T),
    /// Already in the mirror or in AmoCRM.
    Found(T),
    /// Stored locally and queued: AmoCRM did not confirm it within the inline budget
    /// (slow, rate-limited, failing). The sync worker finishes it.
    Accepted(T),
}

impl<T> Saved<T> {
    pub fn record(&self) -> &T {
        match self {
            Saved::Created(r) | Saved::Found(r) | Saved::Accepted(r) => r,
        }
    }

    pub fn into_record(self) -> T {
        match self {
            Saved::Created(r) | Saved::Found(r) | Saved::Accepted(r) => r,
        }
    }
}

/// How hard a request tries AmoCRM itself before handing over to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// How long a request waits for AmoCRM before answering 202 (`SYNC_INLINE_BUDGET_MS`).
    pub inline_budget: Duration,
    pub retry: RetryPolicy,
    /// How long a record's claim is exclusive (`SYNC_LEASE_SECS`).
    pub lease: Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            inline_budget: Duration::from_millis(1500),
            retry: RetryPolicy::default(),
            lease: SYNC_LEASE,
        }
    }
}

/// What a finished flight means for this caller: only the caller that started it
/// reports `Created`; a transient AmoCRM failure or a record busy elsewhere means
/// the stored pending record is the answer (its job retries it).
async fn settle<T, L, F>(
    outcome: Result<Synced<T>, ServiceError>,
    leader: bool,
    load: L,
) -> Result<Saved<T>, ServiceError>
where
    L: FnOnce(i64) -> F,
    F: Future<Output = Result<Option<T>, RepoError>>,
{
    let pending_id = match outcome {
        Ok(synced) if synced.created && leader => return Ok(Saved::Created(synced.record)),
        Ok(synced) => return Ok(Saved::Found(synced.record)),
        Err(ServiceError::Amo {
            error,
            pending_id: Some(id),
        }) if !error.is_rejection() => id,
        Err(ServiceError::SyncInProgress { id }) => id,
        Err(other) => return Err(other),
    };
    match load(pending_id).await? {
        Some(record) => Ok(Saved::Accepted(record)),
        None => Err(ServiceError::Internal(
            format!("pending record {pending_id} vanished").into(),
        )),
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// Input that passed parsing but breaks a rule (e.g. an unknown `contact_id`).
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    /// AmoCRM failed or refused; `pending_id` is the local row kept as pending.
    #[error("AmoCRM call failed: {error}")]
    Amo {
        error: AmoError,
        pending_id: Option<i64>,
    },
    /// Another instance holds the lease on this record and did not finish in time.
    #[error("record {id} is being synced elsewhere")]
    SyncInProgress { id: i64 },
    /// The database could not be reached or kept failing; the text says why (for logs).
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(Arc<str>),
    /// A webhook delivery that is not one (bad content type or body).
    #[error("{0}")]
    Payload(crate::webhooks::PayloadError),
    /// A webhook delivery from another AmoCRM account than the configured one.
    #[error("delivery from another AmoCRM account")]
    WrongAccount,
    /// A feature that needs configuration the service does not have.
    #[error("not configured: {0}")]
    NotConfigured(String),
    #[error("internal error: {0}")]
    Internal(Arc<str>),
}

impl ServiceError {
    /// An AmoCRM failure with no local record involved.
    pub fn amo(error: AmoError) -> Self {
        ServiceError::Amo {
            error,
            pending_id: None,
        }
    }
}

impl From<RepoError> for ServiceError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::Unavailable(why) => ServiceError::DatabaseUnavailable(why.into()),
            RepoError::Conflict(why) | RepoError::Query(why) => ServiceError::Internal(why.into()),
        }
    }
}

/// An AmoCRM failure during a sync: the row stays pending with the reason recorded
/// (by `record_failure`), and the client learns which row holds its submission.
async fn keep_pending(
    logger: &Logger,
    entity: &'static str,
    id: i64,
    error: AmoError,
    record_failure: impl Future<Output = Result<bool, RepoError>>,
) -> ServiceError {
    match record_failure.await {
        Ok(false) => slog::warn!(logger, "AmoCRM call failed, record kept pending for a retry";
            "entity" => entity, "record.id" => id, "amo.error" => error.kind(), "error" => error.to_string()),
        Ok(true) => slog::error!(logger, "AmoCRM call failed for good, sync job is dead";
            "entity" => entity, "record.id" => id, "amo.error" => error.kind(), "error" => error.to_string()),
        Err(db_error) => slog::error!(logger, "could not record the sync failure";
            "entity" => entity, "record.id" => id, "error" => db_error.to_string()),
    }
    ServiceError::Amo {
        error,
        pending_id: Some(id),
    }
}

/// A flight that stops without finishing its record: when it gave up in time (`late`),
/// it still holds the lease and frees it, so the sync worker takes the record at once;
/// when it lost the lease, someone else already has the record.
async fn hand_over(
    release: impl Future<Output = Result<(), RepoError>>,
    id: i64,
    late: &std::sync::atomic::AtomicBool,
) -> ServiceError {
    if late.load(std::sync::atomic::Ordering::SeqCst) {
        // On failure the lease lapses by itself; the record is only later, not lost.
        let _ = release.await;
    }
    ServiceError::SyncInProgress { id }
}

/// Claims the record and, when this caller gets the lease, runs `push` (the AmoCRM
/// round) on the row. A row leased elsewhere is re-claimed every `BUSY_POLL` until
/// it is synced, its lease lapses, or `busy_wait` runs out. The wait is the request's
/// inline budget: past it nobody awaits the answer, and whoever holds the lease
/// finishes the record; polling on would only race the sync worker for it.
async fn claim_then_push<T, C, P>(
    mut claim: impl FnMut() -> C,
    push: impl FnOnce(T) -> P,
    id_of: fn(&T) -> i64,
    busy_wait: Duration,
) -> Result<Synced<T>, ServiceError>
where
    C: Future<Output = Result<Claim<T>, RepoError>>,
    P: Future<Output = Result<Synced<T>, ServiceError>>,
{
    let deadline = Instant::now() + busy_wait;
    loop {
        match claim().await? {
            Claim::Existing(record) => {
                return Ok(Synced {
                    record,
                    created: false,
                })
            }
            Claim::Leased(row) => return push(row).await,
            Claim::Busy(row) if Instant::now() >= deadline => {
                return Err(ServiceError::SyncInProgress { id: id_of(&row) })
            }
            Claim::Busy(_) => tokio::time::sleep(BUSY_POLL).await,
        }
    }
}

/// Runs `work` (an AmoCRM round) while renewing the record's lease every third of its
/// length, so a round that waits long on AmoCRM or the rate limiter never loses the
/// record to another worker. `lost` turns true when a renewal finds the lease gone;
/// `work` checks it before it creates anything.
async fn keeping_lease<'a, T>(
    held: Option<chrono::NaiveDateTime>,
    lease: Duration,
    renew: impl Fn(
        chrono::NaiveDateTime,
    )
        -> futures::future::BoxFuture<'a, Result<Option<chrono::NaiveDateTime>, RepoError>>,
    lost: &std::sync::atomic::AtomicBool,
    work: impl Future<Output = T>,
) -> T {
    use std::sync::atomic::Ordering;
    tokio::pin!(work);
    let mut held = held;
    loop {
        let renewal = async {
            tokio::time::sleep(lease / 3).await;
            match held {
                Some(until) => renew(until).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            out = &mut work => return out,
            renewed = renewal => match renewed {
                Ok(Some(until)) => held = Some(until),
                // Gone, or the database is unreachable: either way, stop claiming it.
                Ok(None) | Err(_) => {
                    lost.store(true, Ordering::SeqCst);
                    held = None;
                }
            },
        }
    }
}
