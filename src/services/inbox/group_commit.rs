//! Group commit for the webhook inbox: deliveries that arrive while a commit is
//! under way wait for the next one and are written together, in one multi-row
//! INSERT. Each caller still hears back only after its own row is durable; what
//! changes is that a burst costs one commit per batch instead of one per delivery.

use std::sync::Arc;

use crate::concurrency::{BatchLimits, Batcher};
use crate::repositories::{InboxRepository, NewDelivery, RepoError};

/// Bounds of one batch: enough rows to make a commit cheap per row, few enough
/// bytes to stay far below MySQL's default `max_allowed_packet` (16 MiB); two
/// batches commit at once, so one collects while the other waits for the disk.
/// Small batches come in powers of two, the row counts whose INSERT a connection
/// keeps prepared (see `repositories/inbox/insert.rs`).
const GROUP_COMMIT: BatchLimits = BatchLimits {
    max_items: 500,
    max_weight: 4 * 1024 * 1024,
    runners: 2,
    power_of_two_below: 32,
};

/// The handle request handlers store deliveries through.
#[derive(Clone)]
pub struct GroupCommit(Batcher<NewDelivery, i64, RepoError>);

impl GroupCommit {
    /// The handle; commits run on the runtimes of the calls that start them.
    pub fn new(inbox: Arc<dyn InboxRepository>) -> GroupCommit {
        GroupCommit(Batcher::new(
            GROUP_COMMIT,
            |delivery: &NewDelivery| delivery.body.len(),
            move |deliveries| {
                let inbox = Arc::clone(&inbox);
                async move { inbox.store_all(deliveries).await }
            },
        ))
    }

    /// Stores one delivery; returns its id once the batch holding it is committed.
    pub async fn store(&self, delivery: NewDelivery) -> Result<i64, RepoError> {
        self.0.submit(delivery).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repositories::MockInboxRepository;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn delivery(n: usize) -> NewDelivery {
        NewDelivery {
            content_type: "application/x-www-form-urlencoded".into(),
            body: format!("leads[add][0][id]={n}").into_bytes(),
        }
    }

    #[tokio::test]
    async fn concurrent_deliveries_share_commits_and_each_gets_its_own_id() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let next = Arc::new(AtomicUsize::new(1));
        let mut inbox = MockInboxRepository::new();
        inbox.expect_store_all().returning(move |rows| {
            counted.fetch_add(1, Ordering::SeqCst);
            let first = next.fetch_add(rows.len(), Ordering::SeqCst) as i64;
            Ok((first..first + rows.len() as i64).collect())
        });
        let writer = GroupCommit::new(Arc::new(inbox));
        let stores: Vec<_> = (0..200)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.store(delivery(n)).await })
            })
            .collect();
        let mut ids = Vec::new();
        for store in stores {
            ids.push(store.await.expect("task").expect("stored"));
        }
        ids.sort_unstable();
        assert_eq!(ids, (1..=200).collect::<Vec<i64>>(), "one id per delivery");
        let commits = calls.load(Ordering::SeqCst);
        assert!(commits < 50, "200 deliveries took {commits} commits");
    }

    #[tokio::test]
    async fn a_failed_commit_is_reported_to_every_delivery_in_it() {
        let mut inbox = MockInboxRepository::new();
        inbox
            .expect_store_all()
            .returning(|_| Err(RepoError::Unavailable("gone away".into())));
        let writer = GroupCommit::new(Arc::new(inbox));
        let (a, b) = tokio::join!(writer.store(delivery(1)), writer.store(delivery(2)));
        assert!(matches!(a, Err(RepoError::Unavailable(_))));
        assert!(matches!(b, Err(RepoError::Unavailable(_))));
    }
}
