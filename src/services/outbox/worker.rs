//! The sync worker: finishes what requests could not. It claims due outbox jobs
//! (`FOR UPDATE SKIP LOCKED` plus a lease, so instances never do a job twice at
//! once), takes the leases of their records, and runs one search-then-create round
//! over all of them (`rounds`), so records waiting together are created in
//! AmoCRM together. Failures are rescheduled with backoff on each record's job.
//! Several rounds run at once: without searches freely; with searches in turns
//! (`Turn`), the next claimed as the current one starts its last searches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use slog::Logger;
use tokio::sync::Semaphore;

use super::rounds::{LeadItem, LeadLink, Round, RoundReport, RoundRunner, Turn};
use crate::amo::{AmoAccess, AmoTransport};
use crate::lifecycle::Lifecycle;
use crate::repositories::{
    Contact, ContactRepository, Entity, JobRepository, LeadRepository, Record, SyncJob,
    SyncRowRepository,
};
use crate::services::{MirrorAuthority, ServiceError, SyncSettings};

#[derive(Debug, Clone, Copy)]
pub struct SyncWorkerConfig {
    /// Jobs claimed per round: a full `POST /contacts` worth.
    pub batch_size: i64,
    /// Rounds worked at the same time. While the mirror is authoritative (rounds
    /// without searches), freely: while one round writes its results (a commit per
    /// record), the next is already in AmoCRM, so a burst is not worked off one
    /// round-trip after another. Claims skip each other's jobs. While rounds search,
    /// in turns: the next round is claimed when the current one has only its last
    /// searches left to start, so the limiter has its calls before the current round
    /// ends; more searching at once would only queue in the limiter ahead of
    /// reconciliation.
    pub rounds_at_once: usize,
    pub poll: Duration,
    /// When a job's record is busy elsewhere, or a lead waits for its contact.
    pub defer: Duration,
}

impl Default for SyncWorkerConfig {
    fn default() -> Self {
        SyncWorkerConfig {
            batch_size: crate::amo::MAX_CONTACTS_PER_CREATE as i64,
            rounds_at_once: 3,
            poll: Duration::from_millis(500),
            defer: Duration::from_secs(2),
        }
    }
}

pub struct SyncWorker {
    amo: Arc<dyn AmoTransport>,
    jobs: Arc<dyn JobRepository>,
    contact_repo: Arc<dyn ContactRepository>,
    lead_repo: Arc<dyn LeadRepository>,
    rows: Arc<dyn SyncRowRepository>,
    /// Its `lease` (`SYNC_LEASE_SECS`) is a claimed job's and a claimed record's: after
    /// a crash both come back once it lapses. A round that outlives the job's lease
    /// loses nothing, since the record's lease, renewed while the round runs, keeps a
    /// second worker from taking the record.
    sync: SyncSettings,
    config: SyncWorkerConfig,
    authority: Arc<MirrorAuthority>,
    /// One permit: the turn to claim a searching round and start its searches.
    search_turns: Arc<Semaphore>,
    /// The current wait after halted rounds (zero while rounds get through).
    halt_pause: Mutex<Duration>,
    logger: Logger,
}

/// Longest wait between rounds while AmoCRM keeps failing: also how late, at most,
/// the worker notices that AmoCRM is back.
const MAX_HALT_PAUSE: Duration = Duration::from_secs(15);

/// Without searches a create costs one request however few records it carries, so
/// a round that claimed less than a batch waits this long for a burst to fill it.
const BATCH_LINGER: Duration = Duration::from_secs(1);

/// Jobs a searching round claims. Its searches go one by one anyway and its
/// creates every 50 records (`rounds`), so a full create's worth (250) would
/// only hold its first search back by 250 leases (seconds while a burst of
/// submissions keeps the pool busy) and its records' creates by its 36 s of
/// searching; rounds in turns keep the limiter busy all the same.
const SEARCHING_ROUND: i64 = 50;

/// What one call of `process_due` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Worked {
    pub claimed: usize,
    /// AmoCRM failed in a way that will fail the next calls too; the worker pauses.
    pub halted: bool,
}

/// What one job came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStep {
    /// The record joined this round (its success or failure is recorded on the job).
    Taken,
    /// Nothing left to do: the record is synced, deleted or gone.
    Settled,
    /// Put back for later without counting an attempt.
    Deferred,
}

/// The tables the worker reads and writes: its jobs and the records they sync.
pub struct OutboxStores {
    pub jobs: Arc<dyn JobRepository>,
    pub contacts: Arc<dyn ContactRepository>,
    pub leads: Arc<dyn LeadRepository>,
    pub rows: Arc<dyn SyncRowRepository>,
}

impl SyncWorker {
    pub fn new(
        amo: Arc<dyn AmoTransport>,
        stores: OutboxStores,
        sync: SyncSettings,
        config: SyncWorkerConfig,
        authority: Arc<MirrorAuthority>,
        logger: Logger,
    ) -> Self {
        let OutboxStores {
            jobs,
            contacts,
            leads,
            rows,
        } = stores;
        SyncWorker {
            amo,
            jobs,
            contact_repo: contacts,
            lead_repo: leads,
            rows,
            sync,
            config,
            authority,
            search_turns: Arc::new(Semaphore::new(1)),
            halt_pause: Mutex::new(Duration::ZERO),
            logger,
        }
    }

    /// Works jobs until the service drains. Draining, the rounds in hand send no new
    /// search: what was searched is finished, the rest is put back for other instances.
    pub async fn run(self, lifecycle: Arc<Lifecycle>) {
        let loops = (0..self.config.rounds_at_once.max(1)).map(|_| self.work(&lifecycle));
        futures::future::join_all(loops).await;
        slog::info!(self.logger, "sync worker stopped");
    }

    async fn work(&self, lifecycle: &Lifecycle) {
        let mut pause = self.config.poll;
        while !lifecycle.is_draining() {
            // Held through this loop's pauses too: while rounds search, an idle queue
            // is polled by one loop, and after a halted round nobody claims more.
            let searching = self.authority.search_amocrm().await;
            let turn = Turn::take(&self.search_turns, searching).await;
            if lifecycle.is_draining() {
                break;
            }
            if let AmoAccess::Refused { .. } = self.amo.access() {
                // Jobs stay queued (no attempts burnt). The probe goes out only once per
                // probe interval (the transport holds the rest back), so looping is cheap.
                match self.amo.probe().await {
                    Err(_) => lifecycle.pause(self.config.poll).await,
                    // Access is back: what failed meanwhile goes out together, now.
                    Ok(()) => {
                        if let Err(error) = self.jobs.expedite_retries().await {
                            slog::warn!(self.logger, "could not expedite retries"; "error" => error.to_string());
                        }
                    }
                }
                continue;
            }
            match self.process_due(lifecycle, &turn).await {
                Ok(Worked { claimed: 0, .. }) => lifecycle.pause(self.config.poll).await,
                Ok(Worked { halted: true, .. }) => {
                    let wait = *self
                        .halt_pause
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    lifecycle.pause(wait).await;
                }
                Ok(_) => pause = self.config.poll,
                Err(err) => {
                    slog::warn!(self.logger, "sync worker could not reach the database"; "error" => err.to_string());
                    lifecycle.pause(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Works one batch of due jobs as one round, which passes `turn` on when it
    /// starts its last searches.
    pub async fn process_due(
        &self,
        lifecycle: &Lifecycle,
        turn: &Turn,
    ) -> Result<Worked, ServiceError> {
        let search = self.authority.search_amocrm().await;
        let size = match search {
            true => self.config.batch_size.min(SEARCHING_ROUND),
            false => self.config.batch_size,
        };
        let mut jobs = self.jobs.claim_due(size, self.sync.lease).await?;
        let short = (jobs.len() as i64) < size;
        if !jobs.is_empty() && short && !search {
            lifecycle.pause(BATCH_LINGER).await;
            let more = size - jobs.len() as i64;
            jobs.extend(self.jobs.claim_due(more, self.sync.lease).await?);
        }
        let mut round = Round::default();
        let mut job_of = HashMap::new();
        // Leads first: a lead whose contact is not in AmoCRM yet takes the contact
        // along (one `leads/complex` item); the contact's own job then finds it synced.
        let mut ordered: Vec<&SyncJob> = jobs.iter().collect();
        ordered.sort_by_key(|job| match job.entity() {
            Some(Entity::Lead) => 0,
            Some(Entity::Contact) => 1,
            None => 2,
        });
        let (contacts, others): (Vec<&SyncJob>, Vec<&SyncJob>) = ordered
            .into_iter()
            .partition(|job| matches!(job.entity(), Some(Entity::Contact)));
        for job in others {
            let step = self.take(job, &mut round, &mut job_of).await;
            self.log_taken(job, &step);
        }
        // A contact's lease is one query of its own: all of them at once, not one
        // after another each waiting for a pooled connection (a burst of submissions
        // keeps the pool busy), or the round's first search waits for its last lease.
        let taken = futures::future::join_all(contacts.iter().map(|job| self.take_contact(job)));
        for (job, taken) in contacts.iter().zip(taken.await) {
            let step = taken.map(|(step, row)| {
                if let Some(row) = row {
                    job_of.insert(Record::new(Entity::Contact, row.id), job.id);
                    round.contacts.push(row);
                }
                step
            });
            self.log_taken(job, &step);
        }
        if !round.is_empty() {
            let runner = RoundRunner {
                amo: &*self.amo,
                contacts: &*self.contact_repo,
                leads: &*self.lead_repo,
                rows: &*self.rows,
                settings: self.sync,
                authority: &self.authority,
                lifecycle: Some(lifecycle),
                turn: Some(turn),
                logger: &self.logger,
            };
            let report = runner.run(round).await;
            self.after_round(report.halted).await;
            self.put_back(&report, &job_of).await;
            return Ok(Worked {
                claimed: jobs.len(),
                halted: report.halted,
            });
        }
        Ok(Worked {
            claimed: jobs.len(),
            halted: false,
        })
    }

    /// Records a halted round did not reach: their leases are freed and their jobs
    /// come back after the worker's pause, without counting an attempt.
    async fn put_back(&self, report: &RoundReport, job_of: &HashMap<Record, i64>) {
        let delay = self.next_pause(report.halted);
        for record in &report.skipped {
            let released = self.rows.release(*record).await;
            let deferred = match job_of.get(record) {
                Some(job) => self.jobs.defer(*job, delay).await,
                None => Ok(()),
            };
            if let Err(error) = released.and(deferred) {
                slog::warn!(self.logger, "could not put a skipped record back; its lease lapses";
                    "record.id" => record.id, "error" => error.to_string());
            }
        }
    }

    /// How long the worker waits after this round: nothing after a round that got
    /// through; after halted rounds, twice as long each time, up to `MAX_HALT_PAUSE`.
    fn next_pause(&self, halted: bool) -> Duration {
        let mut pause = self
            .halt_pause
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *pause = if halted {
            (*pause * 2).clamp(Duration::from_secs(1), MAX_HALT_PAUSE)
        } else {
            Duration::ZERO
        };
        *pause
    }

    /// After a round that got through: when AmoCRM had been failing, every job still
    /// backing off is due now, so the next round sends them all together.
    async fn after_round(&self, halted: bool) {
        let was_halted = !self
            .halt_pause
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_zero();
        if halted || !was_halted {
            return;
        }
        match self.jobs.expedite_retries().await {
            Ok(moved) => {
                slog::info!(self.logger, "AmoCRM answers again; retries are due now"; "jobs" => moved)
            }
            Err(error) => {
                slog::warn!(self.logger, "could not expedite retries"; "error" => error.to_string())
            }
        }
    }

    async fn take(
        &self,
        job: &SyncJob,
        round: &mut Round,
        job_of: &mut HashMap<Record, i64>,
    ) -> Result<JobStep, ServiceError> {
        match job.entity() {
            Some(Entity::Contact) => {
                let (step, row) = self.take_contact(job).await?;
                if let Some(row) = row {
                    job_of.insert(Record::new(Entity::Contact, row.id), job.id);
                    round.contacts.push(row);
                }
                Ok(step)
            }
            Some(Entity::Lead) => {
                job_of.insert(Record::new(Entity::Lead, job.record_id), job.id);
                self.take_lead(job, round).await
            }
            None => {
                slog::error!(self.logger, "sync job of an unknown entity"; "job.id" => job.id, "job.entity" => &job.entity);
                self.jobs.defer(job.id, Duration::from_secs(3600)).await?;
                Ok(JobStep::Deferred)
            }
        }
    }

    fn log_taken(&self, job: &SyncJob, step: &Result<JobStep, ServiceError>) {
        match step {
            Ok(step) => slog::debug!(self.logger, "sync job taken";
                "job.id" => job.id, "job.entity" => &job.entity, "record.id" => job.record_id, "step" => format!("{step:?}")),
            // The job's lease runs out and it comes back; nothing is lost.
            Err(err) => slog::warn!(self.logger, "sync job failed before reaching AmoCRM";
                "job.id" => job.id, "error" => err.to_string()),
        }
    }

    /// Leases a contact job's record: the row when it joins the round.
    async fn take_contact(
        &self,
        job: &SyncJob,
    ) -> Result<(JobStep, Option<Contact>), ServiceError> {
        let lease = self.sync.lease;
        match self.contact_repo.lease(job.record_id, lease).await? {
            Some(row) => Ok((JobStep::Taken, Some(row))),
            None => {
                let row = self.contact_repo.get(job.record_id, true).await?;
                let done = row.is_none_or(|r| r.is_synced() || r.deleted_at.is_some());
                let step = self.settle_or_defer(job, Entity::Contact, done).await?;
                Ok((step, None))
            }
        }
    }

    async fn take_lead(&self, job: &SyncJob, round: &mut Round) -> Result<JobStep, ServiceError> {
        let lease = self.sync.lease;
        let Some(row) = self.lead_repo.lease(job.record_id, lease).await? else {
            let row = self.lead_repo.get(job.record_id, true).await?;
            let done = row.is_none_or(|r| r.is_synced() || r.deleted_at.is_some());
            return self.settle_or_defer(job, Entity::Lead, done).await;
        };
        let contact = match (row.contact_id, row.contact_amocrm_id) {
            (_, Some(amocrm_id)) => LeadLink::Known(Some(amocrm_id)),
            (None, None) => LeadLink::Known(None),
            (Some(contact_id), None) => match self.contact_repo.get(contact_id, true).await? {
                Some(contact) if contact.is_synced() => LeadLink::Known(contact.amocrm_id),
                _ => match self.contact_repo.lease(contact_id, lease).await? {
                    Some(contact) => LeadLink::Pending(contact),
                    // Its contact is being synced elsewhere right now: after it, then.
                    None => {
                        self.rows.release(Record::new(Entity::Lead, row.id)).await?;
                        self.jobs.defer(job.id, self.config.defer).await?;
                        return Ok(JobStep::Deferred);
                    }
                },
            },
        };
        round.leads.push(LeadItem { row, contact });
        Ok(JobStep::Taken)
    }

    async fn settle_or_defer(
        &self,
        job: &SyncJob,
        entity: Entity,
        done: bool,
    ) -> Result<JobStep, ServiceError> {
        if done {
            self.jobs.complete(entity, job.record_id).await?;
            Ok(JobStep::Settled)
        } else {
            self.jobs.defer(job.id, self.config.defer).await?;
            Ok(JobStep::Deferred)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amo::MockAmoTransport;
    use crate::repositories::{
        MockContactRepository, MockJobRepository, MockLeadRepository, MockSyncRowRepository,
    };
    use crate::settings::DedupMode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Claims a worker with three rounds at once makes in `window` on an empty queue.
    async fn claims_in(mode: DedupMode, window: Duration) -> usize {
        let claims = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&claims);
        let mut jobs = MockJobRepository::new();
        jobs.expect_claim_due().returning(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        });
        let mut amo = MockAmoTransport::new();
        amo.expect_access().returning(|| AmoAccess::Ok);
        let config = SyncWorkerConfig {
            rounds_at_once: 3,
            poll: Duration::from_millis(20),
            ..SyncWorkerConfig::default()
        };
        let worker = SyncWorker::new(
            Arc::new(amo),
            OutboxStores {
                jobs: Arc::new(jobs),
                contacts: Arc::new(MockContactRepository::new()),
                leads: Arc::new(MockLeadRepository::new()),
                rows: Arc::new(MockSyncRowRepository::new()),
            },
            SyncSettings::default(),
            config,
            Arc::new(MirrorAuthority::fixed(mode)),
            Logger::root(slog::Discard, slog::o!()),
        );
        Lifecycle::run_for(window, |lifecycle| worker.run(lifecycle)).await;
        claims.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn while_rounds_search_an_idle_queue_is_polled_by_one_loop_at_a_time() {
        let window = Duration::from_millis(300);
        let searching = claims_in(DedupMode::Remote, window).await;
        let trusted = claims_in(DedupMode::Mirror, window).await;
        // While rounds search, the loop holding the turn keeps it through its pause:
        // one claim every 20 ms; while they do not, three.
        assert!(searching >= 5, "{searching} claims in 300 ms");
        assert!(
            trusted >= 2 * searching,
            "{trusted} claims without searches, {searching} with"
        );
    }
}
