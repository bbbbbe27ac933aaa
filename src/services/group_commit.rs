//! Group commit for the webhook inbox: deliveries that arrive while a commit is
//! under way wait for the next one and are written together, in one multi-row
//! INSERT. Each caller still hears back only after its own row is durable; what
//! changes is that a burst costs one commit per batch instead of one per delivery.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::repositories::{InboxRepository, NewDelivery, RepoError};

/// Bounds of one batch: enough rows to make a commit cheap per row, few enough
/// bytes to stay far below MySQL's default `max_allowed_packet` (16 MiB).
#[derive(Debug, Clone, Copy)]
pub struct GroupCommitConfig {
    pub max_rows: usize,
    pub max_bytes: usize,
    /// Batches committing at the same time; while one waits for its commit, the
    /// next one collects.
    pub committers: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        GroupCommitConfig {
            max_rows: 500,
            max_bytes: 4 * 1024 * 1024,
            committers: 2,
        }
    }
}

struct Waiting {
    delivery: NewDelivery,
    stored: oneshot::Sender<Result<i64, RepoError>>,
}

/// The handle request handlers store deliveries through.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl GroupCommit {
    /// Starts the committers on the current Tokio runtime; they stop when the last
    /// handle is dropped and the queue is empty.
    pub fn start(inbox: Arc<dyn InboxRepository>, config: GroupCommitConfig) -> GroupCommit {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..config.committers.max(1) {
            tokio::spawn(commit_batches(
                Arc::clone(&waiting),
                Arc::clone(&inbox),
                config,
            ));
        }
        GroupCommit { queue }
    }

    /// Stores one delivery; returns its id once the batch holding it is committed.
    pub async fn store(&self, delivery: NewDelivery) -> Result<i64, RepoError> {
        let (stored, outcome) = oneshot::channel();
        self.queue
            .send(Waiting { delivery, stored })
            .map_err(|_| RepoError::Unavailable("the inbox writer has stopped".into()))?;
        outcome
            .await
            .map_err(|_| RepoError::Unavailable("the inbox writer dropped a delivery".into()))?
    }
}

async fn commit_batches(
    waiting: Arc<Mutex<mpsc::UnboundedReceiver<Waiting>>>,
    inbox: Arc<dyn InboxRepository>,
    config: GroupCommitConfig,
) {
    while let Some(batch) = next_batch(&waiting, config).await {
        let (deliveries, senders): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|w| (w.delivery, w.stored)).unzip();
        match inbox.store_all(deliveries).await {
            Ok(ids) if ids.len() == senders.len() => {
                for (sender, id) in senders.into_iter().zip(ids) {
                    // A caller that went away (client hung up) needs no answer.
                    let _ = sender.send(Ok(id));
                }
            }
            Ok(ids) => {
                let error = RepoError::Query(format!(
                    "{} deliveries stored but {} ids returned",
                    senders.len(),
                    ids.len()
                ));
                for sender in senders {
                    let _ = sender.send(Err(error.clone()));
                }
            }
            Err(error) => {
                for sender in senders {
                    let _ = sender.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Waits for one delivery, then takes whatever else is already queued, up to the
/// batch bounds. `None` once every handle is gone and the queue is empty.
async fn next_batch(
    waiting: &Mutex<mpsc::UnboundedReceiver<Waiting>>,
    config: GroupCommitConfig,
) -> Option<Vec<Waiting>> {
    let mut queue = waiting.lock().await;
    let first = queue.recv().await?;
    let mut bytes = first.delivery.body.len();
    let mut batch = vec![first];
    while batch.len() < config.max_rows && bytes < config.max_bytes {
        match queue.try_recv() {
            Ok(next) => {
                bytes += next.delivery.body.len();
                batch.push(next);
            }
            Err(_) => break,
        }
    }
    Some(batch)
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

    /// A repository that hands out ids from 1 in order and counts its commits.
    fn counting_inbox(calls: Arc<AtomicUsize>) -> MockInboxRepository {
        let next = Arc::new(AtomicUsize::new(1));
        let mut inbox = MockInboxRepository::new();
        inbox.expect_store_all().returning(move |rows| {
            calls.fetch_add(1, Ordering::SeqCst);
            let first = next.fetch_add(rows.len(), Ordering::SeqCst) as i64;
            Ok((first..first + rows.len() as i64).collect())
        });
        inbox
    }

    #[tokio::test]
    async fn concurrent_deliveries_share_commits_and_each_gets_its_own_id() {
        let calls = Arc::new(AtomicUsize::new(0));
        let writer = GroupCommit::start(
            Arc::new(counting_inbox(Arc::clone(&calls))),
            GroupCommitConfig::default(),
        );
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
        let writer = GroupCommit::start(Arc::new(inbox), GroupCommitConfig::default());
        let (a, b) = tokio::join!(writer.store(delivery(1)), writer.store(delivery(2)));
        assert!(matches!(a, Err(RepoError::Unavailable(_))));
        assert!(matches!(b, Err(RepoError::Unavailable(_))));
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_byte_bound() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let mut inbox = MockInboxRepository::new();
        inbox.expect_store_all().returning(move |rows| {
            seen.lock().expect("sizes").push(rows.len());
            Ok((0..rows.len() as i64).collect())
        });
        let config = GroupCommitConfig {
            max_rows: 100,
            max_bytes: 3 * delivery(0).body.len(),
            committers: 1,
        };
        let writer = GroupCommit::start(Arc::new(inbox), config);
        let all = futures::future::join_all((0..9).map(|n| writer.store(delivery(n)))).await;
        assert!(all.iter().all(Result::is_ok));
        let sizes = sizes.lock().expect("sizes").clone();
        assert_eq!(sizes.iter().sum::<usize>(), 9);
        assert!(sizes.iter().all(|&n| n <= 3), "{sizes:?}");
    }
}
