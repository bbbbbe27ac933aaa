//! Reading back records whose webhook events carried no change time.
//!
//! The webhook worker never applies such an event (it could overwrite newer data);
//! it queues the record in the same transaction that marks the delivery processed,
//! so the inbox never waits for AmoCRM. This worker claims up to 250 queued ids per
//! entity, asks AmoCRM for them in one `filter[id][]` read (through the transport's
//! shared rate limiter), and applies what comes back with the usual last-write-wins.
//!
//! Failures lose nothing: while AmoCRM is down, limiting or refusing access the ids
//! wait with a growing pause; ids AmoCRM does not return (deleted, merged away) are
//! done, since their delete event or reconciliation says the rest; after
//! `max_attempts` an id is dropped with a warning (reconciliation's
//! `filter[updated_at]` walk still heals it).

use std::sync::Arc;
use std::time::Duration;

use slog::Logger;

use super::reconcile::{contact_change, lead_change};
use crate::amo::{AmoAccess, AmoTransport, MAX_IDS_PER_READ};
use crate::domain::Region;
use crate::lifecycle::Lifecycle;
use crate::repositories::{
    MirrorBatch, MirrorRepository, QueuedRefetch, RefetchEntity, RefetchRepository,
};
use crate::services::ServiceError;

#[derive(Debug, Clone, Copy)]
pub struct RefetchConfig {
    /// How long a claimed id stays hidden from other claims (longer than one read).
    pub lease: Duration,
    /// How often to look for due ids when nothing woke the worker.
    pub poll: Duration,
    /// Reads after which an id is given up.
    pub max_attempts: i32,
}

impl Default for RefetchConfig {
    fn default() -> Self {
        RefetchConfig {
            lease: Duration::from_secs(120),
            poll: Duration::from_secs(1),
            max_attempts: 20,
        }
    }
}

pub struct Refetcher {
    amo: Arc<dyn AmoTransport>,
    queue: Arc<dyn RefetchRepository>,
    mirror: Arc<dyn MirrorRepository>,
    region: Region,
    config: RefetchConfig,
    logger: Logger,
}

/// 5 s doubled per attempt, at most 10 minutes.
fn backoff(attempts: i32) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 7) as u32;
    Duration::from_secs((5u64 << doublings).min(600))
}

impl Refetcher {
    pub fn new(
        amo: Arc<dyn AmoTransport>,
        queue: Arc<dyn RefetchRepository>,
        mirror: Arc<dyn MirrorRepository>,
        region: Region,
        config: RefetchConfig,
        logger: Logger,
    ) -> Self {
        Refetcher {
            amo,
            queue,
            mirror,
            region,
            config,
            logger,
        }
    }

    /// Runs until draining. While AmoCRM refuses access nothing is claimed: the ids
    /// wait in the queue instead of spending their attempts.
    pub async fn run(self, lifecycle: Arc<Lifecycle>) {
        let mut pause = self.config.poll;
        while !lifecycle.is_draining() {
            if self.amo.access() != AmoAccess::Ok {
                lifecycle.pause(self.config.poll).await;
                continue;
            }
            match self.round().await {
                Ok(0) => lifecycle.pause(self.config.poll).await,
                Ok(_) => pause = self.config.poll,
                Err(err) => {
                    slog::warn!(self.logger, "record read-back failed"; "error" => err.to_string());
                    lifecycle.pause(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// One read of each entity's due ids; returns how many ids it handled.
    pub async fn round(&self) -> Result<usize, ServiceError> {
        let mut handled = 0;
        for entity in [RefetchEntity::Contacts, RefetchEntity::Leads] {
            handled += self.read_back(entity).await?;
        }
        Ok(handled)
    }

    async fn read_back(&self, entity: RefetchEntity) -> Result<usize, ServiceError> {
        let claimed = self
            .queue
            .claim_due(entity, MAX_IDS_PER_READ as i64, self.config.lease)
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = claimed.iter().map(|q| q.amocrm_id).collect();
        let mut batch = MirrorBatch::default();
        let read = match entity {
            RefetchEntity::Contacts => self.amo.contacts_by_ids(&ids).await.map(|found| {
                let region = self.region;
                batch.contacts = found
                    .into_iter()
                    .map(|c| contact_change(c, region))
                    .collect();
            }),
            RefetchEntity::Leads => self.amo.leads_by_ids(&ids).await.map(|found| {
                batch.leads = found.into_iter().map(lead_change).collect();
            }),
        };
        match read {
            Ok(()) => {
                slog::debug!(self.logger, "records read back from AmoCRM";
                    "entity" => entity.as_str(), "asked" => ids.len(),
                    "found" => batch.contacts.len() + batch.leads.len());
                self.mirror.apply(batch).await?;
                self.queue.done(entity, ids).await?;
            }
            Err(error) => {
                let (spent, again): (Vec<&QueuedRefetch>, Vec<&QueuedRefetch>) = claimed
                    .iter()
                    .partition(|q| q.attempts >= self.config.max_attempts);
                let attempts = again.iter().map(|q| q.attempts).max().unwrap_or(1);
                slog::warn!(self.logger, "AmoCRM did not answer a read-back; trying again later";
                    "entity" => entity.as_str(), "records" => again.len(),
                    "given_up" => spent.len(), "amo.error" => error.to_string());
                let again = again.iter().map(|q| q.amocrm_id).collect();
                self.queue
                    .retry_after(entity, again, backoff(attempts))
                    .await?;
                let spent: Vec<i64> = spent.iter().map(|q| q.amocrm_id).collect();
                if !spent.is_empty() {
                    slog::warn!(self.logger, "records given up after repeated read-back failures; reconciliation will heal them";
                        "entity" => entity.as_str(), "amocrm_ids" => format!("{spent:?}"));
                    self.queue.done(entity, spent).await?;
                }
            }
        }
        Ok(claimed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amo::{AmoContact, AmoError, AmoLead, MockAmoTransport};
    use crate::repositories::{MockMirrorRepository, MockRefetchRepository};
    use mockall::predicate::eq;

    fn queued(ids: &[i64], attempts: i32) -> Vec<QueuedRefetch> {
        ids.iter()
            .map(|&amocrm_id| QueuedRefetch {
                amocrm_id,
                attempts,
            })
            .collect()
    }

    /// A queue whose claims answer `contacts` and `leads`.
    fn queue_holding(
        contacts: Vec<QueuedRefetch>,
        leads: Vec<QueuedRefetch>,
    ) -> MockRefetchRepository {
        let mut queue = MockRefetchRepository::new();
        for (entity, claimed) in [
            (RefetchEntity::Contacts, contacts),
            (RefetchEntity::Leads, leads),
        ] {
            queue
                .expect_claim_due()
                .with(eq(entity), eq(250), mockall::predicate::always())
                .returning(move |_, _, _| Ok(claimed.clone()));
        }
        queue
    }

    fn refetcher(
        amo: MockAmoTransport,
        queue: MockRefetchRepository,
        mirror: MockMirrorRepository,
    ) -> Refetcher {
        Refetcher::new(
            Arc::new(amo),
            Arc::new(queue),
            Arc::new(mirror),
            Region::default(),
            RefetchConfig::default(),
            Logger::root(slog::Discard, slog::o!()),
        )
    }

    fn lead(id: i64, status_id: i64, updated_at: i64) -> AmoLead {
        AmoLead {
            id,
            name: format!("L{id}"),
            price: None,
            status_id: Some(status_id),
            pipeline_id: Some(1),
            contact_ids: vec![],
            main_contact_id: None,
            updated_at: Some(updated_at),
        }
    }

    #[tokio::test]
    async fn queued_leads_are_read_in_one_call_applied_by_their_own_time_and_done() {
        let mut queue = queue_holding(vec![], queued(&[7, 8, 9], 1));
        // 9 is gone from AmoCRM: done all the same, its delete event says the rest.
        queue
            .expect_done()
            .with(eq(RefetchEntity::Leads), eq(vec![7, 8, 9]))
            .times(1)
            .returning(|_, _| Ok(()));
        let mut amo = MockAmoTransport::new();
        amo.expect_leads_by_ids()
            .withf(|ids| ids == [7, 8, 9])
            .times(1)
            .returning(|_| {
                Ok(vec![
                    lead(7, 142, 1_700_000_100),
                    lead(8, 143, 1_700_000_200),
                ])
            });
        let mut mirror = MockMirrorRepository::new();
        mirror
            .expect_apply()
            .withf(|b| {
                b.leads
                    .iter()
                    .map(|l| (l.amocrm_id, l.status_id, l.changed_at))
                    .collect::<Vec<_>>()
                    == [(7, Some(142), 1_700_000_100), (8, Some(143), 1_700_000_200)]
            })
            .times(1)
            .returning(|_| Ok(1));
        let handled = refetcher(amo, queue, mirror).round().await.expect("round");
        assert_eq!(handled, 3);
    }

    #[tokio::test]
    async fn when_amocrm_fails_the_ids_wait_and_those_out_of_attempts_are_dropped() {
        let mut queue = queue_holding(
            {
                let mut claimed = queued(&[1, 2], 3);
                claimed.extend(queued(&[3], 20));
                claimed
            },
            vec![],
        );
        queue
            .expect_retry_after()
            .with(
                eq(RefetchEntity::Contacts),
                eq(vec![1, 2]),
                eq(Duration::from_secs(20)),
            )
            .times(1)
            .returning(|_, _, _| Ok(()));
        queue
            .expect_done()
            .with(eq(RefetchEntity::Contacts), eq(vec![3]))
            .times(1)
            .returning(|_, _| Ok(()));
        let mut amo = MockAmoTransport::new();
        amo.expect_contacts_by_ids()
            .times(1)
            .returning(|_| Err(AmoError::Server { status: 503 }));
        let mut mirror = MockMirrorRepository::new();
        mirror.expect_apply().never();
        let handled = refetcher(amo, queue, mirror).round().await.expect("round");
        assert_eq!(handled, 3);
    }

    #[tokio::test]
    async fn read_back_contacts_keep_their_phone_and_an_empty_name_as_empty() {
        let mut queue = queue_holding(queued(&[5], 1), vec![]);
        queue.expect_done().returning(|_, _| Ok(()));
        let mut amo = MockAmoTransport::new();
        amo.expect_contacts_by_ids().returning(|_| {
            Ok(vec![AmoContact {
                id: 5,
                name: String::new(),
                phones: vec!["8 916 000-00-05".into()],
                updated_at: Some(10),
            }])
        });
        let mut mirror = MockMirrorRepository::new();
        mirror
            .expect_apply()
            .withf(|b| {
                b.contacts[0].phone.as_deref() == Some("+79160000005")
                    && b.contacts[0].name.as_deref() == Some("")
            })
            .times(1)
            .returning(|_| Ok(1));
        refetcher(amo, queue, mirror).round().await.expect("round");
    }

    #[test]
    fn the_pause_doubles_from_five_seconds_to_ten_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(3), Duration::from_secs(20));
        assert_eq!(backoff(30), Duration::from_secs(600));
    }
}
