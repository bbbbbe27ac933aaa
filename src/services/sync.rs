//! The sync worker: finishes what requests could not. It claims due outbox jobs
//! (`FOR UPDATE SKIP LOCKED` plus a lease, so instances never do a job twice at
//! once), takes the record's lease, and runs the same search-then-create round as
//! a request would. Failures are rescheduled with backoff by the services.

use std::sync::Arc;
use std::time::Duration;

use slog::Logger;

use super::{ContactService, LeadService, ServiceError};
use crate::amo::{AmoAccess, AmoTransport};
use crate::lifecycle::Lifecycle;
use crate::repositories::{ContactRepository, Entity, JobRepository, LeadRepository, SyncJob};

#[derive(Debug, Clone, Copy)]
pub struct SyncWorkerConfig {
    pub batch_size: i64,
    /// Longer than one AmoCRM round for the whole batch.
    pub lease: Duration,
    pub poll: Duration,
    /// When a job's record is busy elsewhere, or a lead waits for its contact.
    pub defer: Duration,
    /// How long the worker's claim on a record is exclusive.
    pub record_lease: Duration,
}

impl Default for SyncWorkerConfig {
    fn default() -> Self {
        SyncWorkerConfig {
            batch_size: 20,
            lease: Duration::from_secs(300),
            poll: Duration::from_millis(500),
            defer: Duration::from_secs(2),
            record_lease: super::SYNC_LEASE,
        }
    }
}

pub struct SyncWorker {
    amo: Arc<dyn AmoTransport>,
    jobs: Arc<dyn JobRepository>,
    contact_repo: Arc<dyn ContactRepository>,
    lead_repo: Arc<dyn LeadRepository>,
    contacts: Arc<ContactService>,
    leads: Arc<LeadService>,
    config: SyncWorkerConfig,
    logger: Logger,
}

/// What one job came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStep {
    /// An AmoCRM round ran (its success or failure is recorded on the job).
    Attempted,
    /// Nothing left to do: the record is synced, deleted or gone.
    Settled,
    /// Put back for later without counting an attempt.
    Deferred,
}

impl SyncWorker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        amo: Arc<dyn AmoTransport>,
        jobs: Arc<dyn JobRepository>,
        contact_repo: Arc<dyn ContactRepository>,
        lead_repo: Arc<dyn LeadRepository>,
        contacts: Arc<ContactService>,
        leads: Arc<LeadService>,
        config: SyncWorkerConfig,
        logger: Logger,
    ) -> Self {
        SyncWorker {
            amo,
            jobs,
            contact_repo,
            lead_repo,
            contacts,
            leads,
            config,
            logger,
        }
    }

    /// Works jobs until the service drains; the batch in hand is finished first, and
    /// jobs not reached keep their lease until it lapses, then another worker takes them.
    pub async fn run(self, lifecycle: Arc<Lifecycle>) {
        let mut pause = self.config.poll;
        while !lifecycle.is_draining() {
            if let AmoAccess::Refused { .. } = self.amo.access() {
                // Jobs stay queued (no attempts burnt). The probe goes out only once per
                // probe interval (the transport holds the rest back), so looping is cheap.
                if self.amo.probe().await.is_err() {
                    lifecycle.pause(self.config.poll).await;
                }
                continue;
            }
            match self.process_due().await {
                Ok(0) => lifecycle.pause(self.config.poll).await,
                Ok(_) => pause = self.config.poll,
                Err(err) => {
                    slog::warn!(self.logger, "sync worker could not reach the database"; "error" => err.to_string());
                    lifecycle.pause(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        slog::info!(self.logger, "sync worker stopped");
    }

    /// Works one batch of due jobs; returns how many it claimed.
    pub async fn process_due(&self) -> Result<usize, ServiceError> {
        let jobs = self
            .jobs
            .claim_due(self.config.batch_size, self.config.lease)
            .await?;
        for job in &jobs {
            match self.work(job).await {
                Ok(step) => slog::debug!(self.logger, "sync job worked";
                    "job.id" => job.id, "job.entity" => &job.entity, "record.id" => job.record_id, "step" => format!("{step:?}")),
                // The job's lease runs out and it comes back; nothing is lost.
                Err(err) => slog::warn!(self.logger, "sync job failed before reaching AmoCRM";
                    "job.id" => job.id, "error" => err.to_string()),
            }
        }
        Ok(jobs.len())
    }

    async fn work(&self, job: &SyncJob) -> Result<JobStep, ServiceError> {
        match job.entity() {
            Some(Entity::Contact) => match self
                .contact_repo
                .lease(job.record_id, self.config.record_lease)
                .await?
            {
                Some(row) => {
                    // Errors are already recorded on the row and its job.
                    let _ = self.contacts.push_pending(row).await;
                    Ok(JobStep::Attempted)
                }
                None => {
                    let row = self.contact_repo.get(job.record_id, true).await?;
                    let done = row.is_none_or(|r| r.is_synced() || r.deleted_at.is_some());
                    self.settle_or_defer(job, Entity::Contact, done).await
                }
            },
            Some(Entity::Lead) => self.work_lead(job).await,
            None => {
                slog::error!(self.logger, "sync job of an unknown entity"; "job.id" => job.id, "job.entity" => &job.entity);
                self.jobs.defer(job.id, Duration::from_secs(3600)).await?;
                Ok(JobStep::Deferred)
            }
        }
    }

    async fn work_lead(&self, job: &SyncJob) -> Result<JobStep, ServiceError> {
        let Some(row) = self
            .lead_repo
            .lease(job.record_id, self.config.record_lease)
            .await?
        else {
            let row = self.lead_repo.get(job.record_id, true).await?;
            let done = row.is_none_or(|r| r.is_synced() || r.deleted_at.is_some());
            return self.settle_or_defer(job, Entity::Lead, done).await;
        };
        let contact_amocrm_id = match (row.contact_id, row.contact_amocrm_id) {
            (_, Some(amocrm_id)) => Some(amocrm_id),
            (None, None) => None,
            (Some(contact_id), None) => match self.contact_repo.get(contact_id, true).await? {
                Some(contact) if contact.is_synced() => contact.amocrm_id,
                // The contact has not reached AmoCRM yet: its own job goes first.
                _ => {
                    self.lead_repo.release(row.id).await?;
                    self.jobs.defer(job.id, self.config.defer).await?;
                    return Ok(JobStep::Deferred);
                }
            },
        };
        let _ = self.leads.push_pending(row, contact_amocrm_id).await;
        Ok(JobStep::Attempted)
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
