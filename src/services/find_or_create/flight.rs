//! The find-or-create protocol, written once for every entity. A flight claims the
//! record (its row and sync job stored first, pending), keeps the lease while it
//! searches AmoCRM and else creates there, then finishes the row or records the
//! failure; `land` turns what came of it into the client's answer. The entity's
//! `Rules` say only how its row is claimed and what is sent; the search, the create
//! and the finish are the entity's `EntityRules`, which the outbox rounds use too.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::NaiveDateTime;
use slog::Logger;

use super::entity::EntityRules;
use super::{Saved, SyncSettings, Synced};
use crate::amo::AmoError;
use crate::repositories::{Claim, Record, RepoError, SyncRow, SyncRowRepository};
use crate::services::ServiceError;

/// How often a waiting request looks again at a record leased elsewhere.
pub const BUSY_POLL: Duration = Duration::from_millis(200);

/// What a flight came to, shared by every caller of one key.
pub type Outcome<T> = Result<Synced<T>, ServiceError>;

/// What the protocol asks of one entity, for one submission: how its row is
/// claimed, whether this attempt searches, and what it sends; the search, the
/// create and the finish are the entity's (`EntityRules`), shared with the rounds.
#[async_trait]
pub trait Rules: Send + Sync + 'static {
    /// The local row.
    type Row: SyncRow + std::fmt::Debug;
    /// The body AmoCRM is sent (and searched by).
    type New: Clone + Send + Sync + 'static;
    /// What AmoCRM answered about the record, found or created.
    type Amo: Send;
    /// The entity's rules, over this submission's repository and AmoCRM client.
    type Entity<'a>: EntityRules<Row = Self::Row, New = Self::New, Amo = Self::Amo>
    where
        Self: 'a;

    fn entity(&self) -> Self::Entity<'_>;

    /// Finds the submission's row or stores it pending with its job, and leases it to
    /// the caller unless it is synced or leased elsewhere.
    async fn claim(&self, lease: Duration) -> Result<Claim<Self::Row>, RepoError>;

    /// Whether this attempt searches AmoCRM before it creates.
    fn searches(&self, row: &Self::Row) -> bool;

    /// What this submission sends AmoCRM for its row.
    fn new_record(&self, row: &Self::Row) -> Self::New;
}

/// How a flight's claim ended, once it stopped waiting for others.
enum Claimed<T> {
    /// This flight holds the lease and talks to AmoCRM.
    Ours(T),
    /// The record is synced already.
    Synced(T),
}

/// The protocol's own dependencies; cheap to clone into each flight.
#[derive(Clone)]
pub struct Flight {
    rows: Arc<dyn SyncRowRepository>,
    settings: SyncSettings,
    logger: Logger,
}

impl Flight {
    pub fn new(rows: Arc<dyn SyncRowRepository>, settings: SyncSettings, logger: Logger) -> Self {
        Flight {
            rows,
            settings,
            logger,
        }
    }

    /// Stores the row and its job without calling AmoCRM: the outbox worker sends it
    /// with others. A row some caller is syncing right now is answered as it stands.
    pub async fn queue<R: Rules>(&self, rules: &R) -> Result<Saved<R::Row>, ServiceError> {
        match rules.claim(self.settings.lease).await? {
            Claim::Existing(row) => Ok(Saved::Found(row)),
            Claim::Busy(row) => Ok(Saved::Accepted(row)),
            Claim::Leased(row) => {
                self.rows.release(record_of(&row)).await?;
                Ok(Saved::Accepted(row))
            }
        }
    }

    /// The whole flight: claim, then (holding the lease) search and create, then
    /// finish the row or record the failure.
    pub async fn fly<R: Rules>(self, rules: R) -> Outcome<R::Row> {
        let deadline = tokio::time::Instant::now() + self.settings.inline_budget;
        let row = match self.claim(&rules).await? {
            Claimed::Ours(row) => row,
            Claimed::Synced(record) => {
                return Ok(Synced {
                    record,
                    created: false,
                })
            }
        };
        let record = record_of(&row);
        let (entity, new) = (rules.entity(), rules.new_record(&row));
        let (lost, late) = (AtomicBool::new(false), AtomicBool::new(false));
        let round = async {
            // Not started, or not searched, by the time the request answers: the
            // outbox worker sends it with whatever else waits, not this flight alone.
            if tokio::time::Instant::now() >= deadline {
                late.store(true, Ordering::SeqCst);
                return Ok(None);
            }
            if rules.searches(&row) {
                let search = entity.search(&new);
                let Ok(found) = tokio::time::timeout_at(deadline, search).await else {
                    late.store(true, Ordering::SeqCst);
                    return Ok(None);
                };
                if let Some(found) = found? {
                    return Ok(Some((found, false)));
                }
            }
            // Someone else holds the record now: they search and create, not us.
            if lost.load(Ordering::SeqCst) {
                return Ok(None);
            }
            entity.create(&new).await.map(|made| Some((made, true)))
        };
        let (amo, created) = match self.keeping_lease(&row, &lost, round).await {
            Ok(Some(done)) => done,
            Ok(None) => return Err(self.hand_over(record, &late).await),
            Err(error) => return Err(self.fail(record, error).await),
        };
        let finished = entity.finish(&row, amo).await?;
        slog::info!(self.logger, "record synced"; "entity" => record.entity.as_str(),
            "record.id" => finished.record_id(), "amo.created" => created);
        Ok(Synced {
            record: finished,
            created,
        })
    }

    /// Waits for `flight` (this caller's share of it) within the inline budget. Past
    /// it, the stored row (`lookup`) is the answer and the flight goes on by itself.
    pub async fn land<T, F, L, G, LF>(
        &self,
        flight: F,
        lookup: L,
        load: G,
    ) -> Result<Saved<T>, ServiceError>
    where
        T: SyncRow,
        F: Future<Output = (Outcome<T>, bool)>,
        L: Future<Output = Result<Option<T>, RepoError>>,
        G: FnOnce(i64) -> LF,
        LF: Future<Output = Result<Option<T>, RepoError>>,
    {
        tokio::pin!(flight);
        let (outcome, leader) =
            match tokio::time::timeout(self.settings.inline_budget, &mut flight).await {
                Ok(done) => done,
                Err(_) => match lookup.await? {
                    Some(row) if row.synced() => return Ok(Saved::Found(row)),
                    Some(row) => return Ok(Saved::Accepted(row)),
                    None => flight.await,
                },
            };
        settle(outcome, leader, load).await
    }

    /// Claims the record. A row leased elsewhere is re-claimed every `BUSY_POLL` until
    /// it is synced, its lease lapses, or the inline budget runs out: past it nobody
    /// awaits the answer, and whoever holds the lease finishes the record; polling on
    /// would only race the outbox worker for it.
    async fn claim<R: Rules>(&self, rules: &R) -> Result<Claimed<R::Row>, ServiceError> {
        let deadline = Instant::now() + self.settings.inline_budget;
        loop {
            match rules.claim(self.settings.lease).await? {
                Claim::Existing(row) => return Ok(Claimed::Synced(row)),
                Claim::Leased(row) => return Ok(Claimed::Ours(row)),
                Claim::Busy(row) if Instant::now() >= deadline => {
                    return Err(ServiceError::SyncInProgress {
                        id: row.record_id(),
                    })
                }
                Claim::Busy(_) => tokio::time::sleep(BUSY_POLL).await,
            }
        }
    }

    /// Runs `work` (the AmoCRM round) while renewing the row's lease every third of
    /// its length, so a round that waits long on AmoCRM or the rate limiter never
    /// loses the record to another worker. `lost` turns true when a renewal finds the
    /// lease gone; `work` checks it before it creates anything.
    async fn keeping_lease<T>(
        &self,
        row: &impl SyncRow,
        lost: &AtomicBool,
        work: impl Future<Output = T>,
    ) -> T {
        let (record, lease) = (record_of(row), self.settings.lease);
        tokio::pin!(work);
        let mut held = row.lease_until();
        loop {
            let renewal = async {
                tokio::time::sleep(lease / 3).await;
                match held {
                    Some(until) => self.renew(record, until).await,
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

    async fn renew(
        &self,
        record: Record,
        until: NaiveDateTime,
    ) -> Result<Option<NaiveDateTime>, RepoError> {
        let renewed = self
            .rows
            .renew_leases(vec![(record, until)], self.settings.lease)
            .await?;
        Ok(renewed.into_iter().next().and_then(|(_, until)| until))
    }

    /// A flight that stops without finishing its record: when it gave up in time
    /// (`late`), it still holds the lease and frees it, so the outbox worker takes the
    /// record at once; when it lost the lease, someone else already has the record.
    async fn hand_over(&self, record: Record, late: &AtomicBool) -> ServiceError {
        if late.load(Ordering::SeqCst) {
            // On failure the lease lapses by itself; the record is only later, not lost.
            let _ = self.rows.release(record).await;
        }
        ServiceError::SyncInProgress { id: record.id }
    }

    async fn fail(&self, record: Record, error: AmoError) -> ServiceError {
        let (why, permanent) = (error.to_string(), error.is_rejection());
        let recorded = self
            .rows
            .record_failure(record, &why, self.settings.retry, permanent);
        keep_pending(&self.logger, record, error, recorded).await
    }
}

fn record_of<T: SyncRow>(row: &T) -> Record {
    Record::new(T::ENTITY, row.record_id())
}

/// What the single-flight answers when a flight's task panicked.
pub fn panicked<T>() -> Outcome<T> {
    Err(ServiceError::internal("a sync flight panicked"))
}

/// What a finished flight means for this caller: only the caller that started it
/// reports `Created`; a transient AmoCRM failure or a record busy elsewhere means
/// the stored pending record is the answer (its job retries it).
async fn settle<T, L, F>(
    outcome: Outcome<T>,
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
        None => Err(ServiceError::internal(format!(
            "pending record {pending_id} vanished"
        ))),
    }
}

/// An AmoCRM failure during a sync: the row stays pending with the reason recorded
/// (`recorded`: the repository's `record_failure`), and the client learns which row
/// holds its submission. The outbox worker's rounds end their failures here too.
pub async fn keep_pending(
    logger: &Logger,
    record: Record,
    error: AmoError,
    recorded: impl Future<Output = Result<bool, RepoError>>,
) -> ServiceError {
    let (entity, id) = (record.entity.as_str(), record.id);
    match recorded.await {
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
