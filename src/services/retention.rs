//! Retention: processed webhook deliveries and done sync jobs are deleted once older
//! than their setting (`WEBHOOK_INBOX_RETENTION_DAYS`, `SYNC_JOBS_RETENTION_DAYS`;
//! 0 keeps them). Failed deliveries and dead jobs are kept until an operator acts.
//! Idempotency keys go once past their own expiry, whatever the settings say.
//!
//! One instance prunes at a time (a lease on the `retention` cursor), in batches of
//! at most `batch` rows with a pause after each, so the deletes never hold locks long
//! enough to stall webhook acknowledgements or the sync worker's claims.

use std::sync::Arc;
use std::time::Duration;

use slog::Logger;
use tokio::time::Instant;

use super::leased::while_leased;
use crate::lifecycle::Lifecycle;
use crate::repositories::{CursorRepository, Prunable, RepoError, RetentionRepository};
use crate::settings;

const LEASE_NAME: &str = "retention";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Days a processed delivery is kept; 0 keeps them all.
    pub inbox_days: u32,
    /// Days a done job is kept; 0 keeps them all.
    pub jobs_days: u32,
    /// Time between passes.
    pub interval: Duration,
    /// Rows per DELETE (at most 1,000).
    pub batch: u32,
    /// Least pause after each batch: room for the statements that must not wait.
    /// The pause is at least twice as long as the batch took, so the deletes use at
    /// most a third of the time, and less on a database that is already busy.
    pub pause: Duration,
    /// How long one instance holds the lease; a pass stops at half of it, so the
    /// lease never lapses under a running pass.
    pub lease: Duration,
}

/// The settings' retention section, with the pacing that is not configured.
impl From<settings::Retention> for RetentionConfig {
    fn from(section: settings::Retention) -> Self {
        RetentionConfig {
            inbox_days: section.inbox_days,
            jobs_days: section.jobs_days,
            interval: section.interval,
            batch: 1_000,
            pause: Duration::from_millis(50),
            lease: Duration::from_secs(600),
        }
    }
}

/// What one pass deleted, per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub inbox: u64,
    pub jobs: u64,
    pub keys: u64,
    /// Another instance held the lease; nothing was done.
    pub skipped: bool,
}

pub struct Retention {
    repo: Arc<dyn RetentionRepository>,
    cursors: Arc<dyn CursorRepository>,
    config: RetentionConfig,
    logger: Logger,
}

impl Retention {
    pub fn new(
        repo: Arc<dyn RetentionRepository>,
        cursors: Arc<dyn CursorRepository>,
        config: RetentionConfig,
        logger: Logger,
    ) -> Self {
        Retention {
            repo,
            cursors,
            config: RetentionConfig {
                batch: config.batch.clamp(1, 1_000),
                ..config
            },
            logger,
        }
    }

    pub async fn run(self, lifecycle: Arc<Lifecycle>) {
        while !lifecycle.is_draining() {
            match self.pass(&lifecycle).await {
                Ok(p) if p.inbox + p.jobs + p.keys > 0 => {
                    slog::info!(self.logger, "retention pruned old rows";
                    "webhook_inbox" => p.inbox, "sync_jobs" => p.jobs,
                    "idempotency_keys" => p.keys)
                }
                Ok(_) => {}
                Err(err) => {
                    slog::warn!(self.logger, "retention pass failed"; "error" => err.to_string())
                }
            }
            lifecycle.pause(self.config.interval).await;
        }
    }

    /// One pass over the three tables, under the lease.
    pub async fn pass(&self, lifecycle: &Lifecycle) -> Result<Pruned, RepoError> {
        let stop_at = Instant::now() + self.config.lease / 2;
        let outcome = async {
            let inbox = self
                .prune(
                    Prunable::ProcessedInbox,
                    self.config.inbox_days,
                    stop_at,
                    lifecycle,
                )
                .await?;
            let jobs = self
                .prune(
                    Prunable::DoneJobs,
                    self.config.jobs_days,
                    stop_at,
                    lifecycle,
                )
                .await?;
            let keys = self
                .prune(Prunable::ExpiredIdempotencyKeys, 0, stop_at, lifecycle)
                .await?;
            Ok::<_, RepoError>(Pruned {
                inbox,
                jobs,
                keys,
                skipped: false,
            })
        };
        let done = while_leased(
            &*self.cursors,
            LEASE_NAME,
            self.config.lease,
            &self.logger,
            outcome,
        );
        Ok(done.await?.unwrap_or(Pruned {
            skipped: true,
            ..Pruned::default()
        }))
    }

    /// Batches of `what` until none is left, the pass's time is up or the service
    /// drains. `days`: the table's setting, 0 keeping it whole; the keys ignore it.
    async fn prune(
        &self,
        what: Prunable,
        days: u32,
        stop_at: Instant,
        lifecycle: &Lifecycle,
    ) -> Result<u64, RepoError> {
        if days == 0 && what != Prunable::ExpiredIdempotencyKeys {
            return Ok(0);
        }
        let (mut after, mut total) = (0, 0u64);
        let outcome = loop {
            let started = Instant::now();
            let batch = match self
                .repo
                .prune_batch(what, days, after, self.config.batch)
                .await
            {
                Ok(batch) => batch,
                Err(err) => break Err(err),
            };
            crate::metrics::retention_pruned(what.table(), batch.deleted);
            total += batch.deleted as u64;
            after = batch.last_id;
            if batch.done || lifecycle.is_draining() || Instant::now() >= stop_at {
                break Ok(total);
            }
            tokio::time::sleep(self.config.pause.max(started.elapsed() * 2)).await;
        };
        // What was deleted counts even when a later batch failed.
        if total > 0 {
            self.repo.add_to_total(what.table(), total).await?;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repositories::{Batch, MockCursorRepository, MockRetentionRepository};
    use mockall::predicate::eq;

    fn logger() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    fn leased() -> MockCursorRepository {
        let mut cursors = MockCursorRepository::new();
        cursors
            .expect_lease()
            .with(eq(LEASE_NAME), eq(0), mockall::predicate::always())
            .times(1)
            .returning(|_, _, _| Ok(Some(0)));
        cursors.expect_release().times(1).returning(|_| Ok(()));
        cursors
    }

    /// The keys' step of a pass: one batch per `(deleted, done)`, in order.
    fn key_batches(repo: &mut MockRetentionRepository, batches: &[(usize, bool)]) {
        let mut seq = mockall::Sequence::new();
        for &(deleted, done) in batches {
            repo.expect_prune_batch()
                .with(
                    eq(Prunable::ExpiredIdempotencyKeys),
                    mockall::predicate::always(),
                    eq(0),
                    eq(1_000),
                )
                .times(1)
                .in_sequence(&mut seq)
                .returning(move |_, _, _, _| {
                    Ok(Batch {
                        deleted,
                        last_id: 0,
                        done,
                    })
                });
        }
    }

    /// The keys' step of a pass, with none expired.
    fn no_expired_keys(repo: &mut MockRetentionRepository) {
        key_batches(repo, &[(0, true)]);
    }

    fn config(inbox_days: u32, jobs_days: u32) -> RetentionConfig {
        RetentionConfig {
            pause: Duration::from_millis(1),
            ..RetentionConfig::from(settings::Retention {
                inbox_days,
                jobs_days,
                interval: Duration::from_secs(60),
            })
        }
    }

    #[tokio::test]
    async fn batches_walk_on_from_the_last_id_until_done_and_the_total_is_stored() {
        let mut repo = MockRetentionRepository::new();
        let mut seq = mockall::Sequence::new();
        for (after, batch) in [
            (
                0,
                Batch {
                    deleted: 1_000,
                    last_id: 1_000,
                    done: false,
                },
            ),
            (
                1_000,
                Batch {
                    deleted: 990,
                    last_id: 2_000,
                    done: false,
                },
            ),
            (
                2_000,
                Batch {
                    deleted: 10,
                    last_id: 2_010,
                    done: true,
                },
            ),
        ] {
            repo.expect_prune_batch()
                .with(eq(Prunable::ProcessedInbox), eq(7), eq(after), eq(1_000))
                .times(1)
                .in_sequence(&mut seq)
                .returning(move |_, _, _, _| Ok(batch));
        }
        repo.expect_prune_batch()
            .with(eq(Prunable::DoneJobs), eq(30), eq(0), eq(1_000))
            .times(1)
            .returning(|_, _, _, _| {
                Ok(Batch {
                    deleted: 0,
                    last_id: 0,
                    done: true,
                })
            });
        repo.expect_add_to_total()
            .with(eq("webhook_inbox"), eq(2_000))
            .times(1)
            .returning(|_, _| Ok(()));
        no_expired_keys(&mut repo);
        let retention = Retention::new(Arc::new(repo), Arc::new(leased()), config(7, 30), logger());
        let pruned = retention.pass(&Lifecycle::default()).await.expect("pass");
        assert_eq!(
            pruned,
            Pruned {
                inbox: 2_000,
                jobs: 0,
                keys: 0,
                skipped: false
            }
        );
    }

    #[tokio::test]
    async fn a_lease_held_elsewhere_means_no_delete_here() {
        let mut cursors = MockCursorRepository::new();
        cursors
            .expect_lease()
            .times(1)
            .returning(|_, _, _| Ok(None));
        cursors.expect_release().never();
        let mut repo = MockRetentionRepository::new();
        repo.expect_prune_batch().never();
        let retention = Retention::new(Arc::new(repo), Arc::new(cursors), config(7, 30), logger());
        let pruned = retention.pass(&Lifecycle::default()).await.expect("pass");
        assert!(pruned.skipped);
    }

    #[tokio::test]
    async fn zero_days_keeps_that_table_and_batches_never_exceed_1000() {
        let mut repo = MockRetentionRepository::new();
        repo.expect_prune_batch()
            .with(eq(Prunable::DoneJobs), eq(30), eq(0), eq(1_000))
            .times(1)
            .returning(|_, _, _, _| {
                Ok(Batch {
                    deleted: 3,
                    last_id: 9,
                    done: true,
                })
            });
        repo.expect_add_to_total()
            .with(eq("sync_jobs"), eq(3))
            .times(1)
            .returning(|_, _| Ok(()));
        no_expired_keys(&mut repo);
        let retention = Retention::new(
            Arc::new(repo),
            Arc::new(leased()),
            RetentionConfig {
                batch: 50_000,
                ..config(0, 30)
            },
            logger(),
        );
        let pruned = retention.pass(&Lifecycle::default()).await.expect("pass");
        assert_eq!((pruned.inbox, pruned.jobs), (0, 3));
    }

    #[tokio::test]
    async fn expired_keys_go_in_batches_even_when_both_tables_are_kept() {
        let mut repo = MockRetentionRepository::new();
        key_batches(&mut repo, &[(1_000, false), (1_000, false), (200, true)]);
        repo.expect_add_to_total()
            .with(eq("idempotency_keys"), eq(2_200))
            .times(1)
            .returning(|_, _| Ok(()));
        let retention = Retention::new(Arc::new(repo), Arc::new(leased()), config(0, 0), logger());
        let pruned = retention.pass(&Lifecycle::default()).await.expect("pass");
        assert_eq!((pruned.inbox, pruned.jobs, pruned.keys), (0, 0, 2_200));
    }

    #[tokio::test]
    async fn a_failed_batch_releases_the_lease_and_keeps_the_count_of_what_went() {
        let mut repo = MockRetentionRepository::new();
        let mut seq = mockall::Sequence::new();
        repo.expect_prune_batch()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _, _| {
                Ok(Batch {
                    deleted: 1_000,
                    last_id: 1_000,
                    done: false,
                })
            });
        repo.expect_prune_batch()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _, _| Err(RepoError::Unavailable("gone".into())));
        repo.expect_add_to_total()
            .with(eq("webhook_inbox"), eq(1_000))
            .times(1)
            .returning(|_, _| Ok(()));
        let retention = Retention::new(Arc::new(repo), Arc::new(leased()), config(7, 0), logger());
        assert!(retention.pass(&Lifecycle::default()).await.is_err());
    }
}
