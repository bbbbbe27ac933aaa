//! After a restore: the database holds a backup, behind AmoCRM. Records created or
//! changed in AmoCRM since are missing from the mirror, and the outbox may replay
//! jobs whose records amosync already created after the backup was taken.
//!
//! `scripts/restore.sh` leaves a marker with the backup's time. At start-up, before
//! the sync worker claims anything, the marker is handled (`RestoreRepository`):
//! reconciliation is rewound to the backup's time, the mirror loses its authority,
//! and every pending record searches AmoCRM before it creates. Then one
//! reconciliation round walks everything AmoCRM changed since, whatever
//! `RECONCILE_INTERVAL_SECS` says.

use std::sync::Arc;
use std::time::Duration;

use slog::Logger;
use tokio::sync::OnceCell;

use super::Reconciler;
use crate::lifecycle::Lifecycle;
use crate::repositories::{HandledRestore, RestoreRepository};

/// Reconciliation starts this much before the backup: AmoCRM's clock and the
/// database host's differ, and a change in the backup's own second may be missing.
pub const RECONCILE_MARGIN_SECS: i64 = 300;

const RETRY: Duration = Duration::from_secs(2);

pub struct AfterRestore {
    repo: Arc<dyn RestoreRepository>,
    handled: OnceCell<Option<HandledRestore>>,
    logger: Logger,
}

impl AfterRestore {
    pub fn new(repo: Arc<dyn RestoreRepository>, logger: Logger) -> Self {
        AfterRestore {
            repo,
            handled: OnceCell::new(),
            logger,
        }
    }

    /// Handles unhandled markers once per process (every caller waits for that);
    /// retries while the database fails, until the service drains.
    pub async fn handled(&self, lifecycle: &Lifecycle) -> Option<HandledRestore> {
        *self
            .handled
            .get_or_init(|| async {
                loop {
                    match self.repo.handle_markers(RECONCILE_MARGIN_SECS).await {
                        Ok(Some(h)) => {
                            slog::warn!(self.logger, "restore marker handled: reconciling from the backup's time, pending records search AmoCRM first";
                                "backup_taken_at" => h.backup_taken_at,
                                "reconcile_from" => h.reconcile_from,
                                "pending_records" => h.pending_records);
                            return Some(h);
                        }
                        Ok(None) => return None,
                        Err(err) if !lifecycle.is_draining() => {
                            slog::warn!(self.logger, "could not check for a restore marker; retrying";
                                "error" => err.to_string());
                            lifecycle.pause(RETRY).await;
                        }
                        Err(_) => return None,
                    }
                }
            })
            .await
    }

    /// After a handled marker, one reconciliation round with no page limit.
    pub async fn catch_up(self: Arc<Self>, reconciler: Reconciler, lifecycle: Arc<Lifecycle>) {
        if self.handled(&lifecycle).await.is_none() {
            return;
        }
        reconciler.round(Duration::ZERO, u32::MAX).await;
        slog::info!(self.logger, "post-restore reconciliation round finished");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repositories::{MockRestoreRepository, RepoError};
    use mockall::predicate::eq;

    fn logger() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    #[tokio::test(start_paused = true)]
    async fn markers_are_handled_once_with_the_margin_after_a_failed_try() {
        let mut repo = MockRestoreRepository::new();
        let mut seq = mockall::Sequence::new();
        repo.expect_handle_markers()
            .with(eq(RECONCILE_MARGIN_SECS))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Err(RepoError::Unavailable("booting".into())));
        let handled = HandledRestore {
            backup_taken_at: 1_000_000,
            reconcile_from: 1_000_000 - RECONCILE_MARGIN_SECS,
            pending_records: 2,
        };
        repo.expect_handle_markers()
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |_| Ok(Some(handled)));
        let after = AfterRestore::new(Arc::new(repo), logger());
        let lifecycle = Lifecycle::default();
        assert_eq!(after.handled(&lifecycle).await, Some(handled));
        // The sync worker and the catch-up both ask; the database is asked once.
        assert_eq!(after.handled(&lifecycle).await, Some(handled));
    }

    #[tokio::test]
    async fn without_a_marker_nothing_changes() {
        let mut repo = MockRestoreRepository::new();
        repo.expect_handle_markers()
            .times(1)
            .returning(|_| Ok(None));
        let after = AfterRestore::new(Arc::new(repo), logger());
        assert_eq!(after.handled(&Lifecycle::default()).await, None);
    }
}
