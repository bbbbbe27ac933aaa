//! The inbox worker: applies stored webhook deliveries to the mirror, in batches,
//! standing aside while the receiver is busy acknowledging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Intake;
use crate::domain::{Phone, Region};
use crate::lifecycle::Lifecycle;
use crate::repositories::{
    CompanyChange, ContactChange, InboxRepository, InboxRow, LeadChange, MirrorBatch,
    MirrorRepository, RefetchEntity, Removal, Retry,
};
use crate::services::ServiceError;
use crate::webhooks::{parse_delivery, Action, Delivery, EventKind};
use slog::Logger;

/// Turns a parsed delivery into mirror changes.
///
/// Last-write-wins needs AmoCRM's own change time. An add, update, status or restore
/// that carries none (the short `leads[status]` form) is not applied from the event:
/// the record is queued to be read back from AmoCRM (`refetch`), so a late or stale
/// event can never overwrite newer data. Companies have no read-back: an untimed
/// company event counts as time 0 (it creates a missing row, never overwrites a
/// timed one). Deletes and restores apply untimed as they come (see `Removal`); a
/// restore that carries the record (AmoCRM's do: name, fields, times) also upserts
/// it, so a record the mirror never held comes back whole.
pub fn to_batch(delivery: Delivery, region: Region) -> MirrorBatch {
    let mut batch = MirrorBatch::default();
    for c in delivery.contacts {
        let removal = Removal {
            amocrm_id: c.id,
            changed_at: c.changed_at,
        };
        match c.action {
            Action::Delete => {
                batch.contact_deletes.push(removal);
                continue;
            }
            Action::Restore => {
                batch.contact_restores.push(removal);
                if c.name.is_none() {
                    continue;
                }
            }
            Action::Status => continue,
            Action::Add | Action::Update | Action::Responsible => {}
        }
        batch
            .links
            .extend(c.linked_lead_ids.iter().map(|lead| (*lead, c.id)));
        let Some(changed_at) = c.changed_at else {
            batch.refetch.push((RefetchEntity::Contacts, c.id));
            continue;
        };
        let phone = c
            .phones
            .iter()
            .find_map(|raw| Phone::parse(raw, region).ok());
        batch.contacts.push(ContactChange {
            amocrm_id: c.id,
            name: c.name,
            phone: phone.map(|p| p.as_e164().to_owned()),
            changed_at,
        });
    }
    for c in delivery.companies {
        let removal = Removal {
            amocrm_id: c.id,
            changed_at: c.changed_at,
        };
        match c.action {
            Action::Delete => {
                batch.company_deletes.push(removal);
                continue;
            }
            Action::Restore => {
                batch.company_restores.push(removal);
                if c.name.is_none() {
                    continue;
                }
            }
            Action::Status => continue,
            Action::Add | Action::Update | Action::Responsible => {}
        }
        batch.companies.push(CompanyChange {
            amocrm_id: c.id,
            name: c.name,
            responsible_user_id: c.responsible_user_id,
            changed_at: c.changed_at.unwrap_or(0),
        });
    }
    for l in delivery.leads {
        let removal = Removal {
            amocrm_id: l.id,
            changed_at: l.changed_at,
        };
        match l.action {
            Action::Delete => {
                batch.lead_deletes.push(removal);
                continue;
            }
            Action::Restore => {
                batch.lead_restores.push(removal);
                if l.name.is_none() {
                    continue;
                }
            }
            Action::Add | Action::Update | Action::Status | Action::Responsible => {}
        }
        let Some(changed_at) = l.changed_at else {
            batch.refetch.push((RefetchEntity::Leads, l.id));
            continue;
        };
        batch.leads.push(LeadChange {
            amocrm_id: l.id,
            name: l.name,
            price: l.price,
            status_id: l.status_id,
            pipeline_id: l.pipeline_id,
            contact_amocrm_id: l.main_contact_id,
            changed_at,
        });
    }
    batch
}

/// What one stored delivery asks of the mirror, and the event kinds it carries that
/// amosync does not apply (counted once the delivery is applied).
struct Parsed {
    batch: MirrorBatch,
    ignored: Vec<EventKind>,
}

/// The mirror changes one stored delivery asks for, or why it cannot be read.
fn batch_of(row: &InboxRow, region: Region) -> Result<Parsed, String> {
    let content_type = Some(row.content_type.as_str()).filter(|c| !c.is_empty());
    let mut delivery = parse_delivery(content_type, &row.body).map_err(|e| e.to_string())?;
    let ignored = std::mem::take(&mut delivery.ignored);
    Ok(Parsed {
        batch: to_batch(delivery, region),
        ignored,
    })
}

/// How often a lane that stood aside looks again.
const STAND_ASIDE: Duration = Duration::from_millis(20);

/// How the worker paces itself.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// Most deliveries claimed at once.
    pub batch_size: i64,
    /// Body bytes a claim aims at: a batch of large deliveries (AmoCRM sends up to
    /// hundreds of entities in one) is claimed in fewer rows, so what a batch holds
    /// in memory while parsed stays about the same whatever the deliveries' size.
    pub batch_bytes: usize,
    /// Batches claimed and applied at the same time.
    pub appliers: usize,
    /// Acknowledgements under way from which ingestion counts as saturated: then
    /// only one applier works, and it pauses `busy_pause` after each batch.
    pub busy_acks: usize,
    /// The floor while saturated: one batch per this pause, so the mirror still moves.
    pub busy_pause: Duration,
    pub lease: Duration,
    pub max_attempts: i32,
    /// How often to look for due rows without a wake-up (other instances' rows, retries).
    pub poll: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            batch_size: 500,
            batch_bytes: 768 * 1024,
            appliers: 2,
            busy_acks: 8,
            busy_pause: Duration::from_secs(2),
            lease: Duration::from_secs(30),
            max_attempts: 10,
            poll: Duration::from_secs(1),
        }
    }
}

pub struct WebhookWorker {
    inbox: Arc<dyn InboxRepository>,
    mirror: Arc<dyn MirrorRepository>,
    region: Region,
    intake: Arc<Intake>,
    config: WorkerConfig,
    /// Mean body size of the last claimed batch (0 before the first).
    body_bytes: AtomicUsize,
    logger: Logger,
}

impl WebhookWorker {
    pub fn new(
        inbox: Arc<dyn InboxRepository>,
        mirror: Arc<dyn MirrorRepository>,
        region: Region,
        intake: Arc<Intake>,
        config: WorkerConfig,
        logger: Logger,
    ) -> Self {
        WebhookWorker {
            inbox,
            mirror,
            region,
            intake,
            config,
            body_bytes: AtomicUsize::new(0),
            logger,
        }
    }

    /// Rows to claim next: `batch_bytes` worth at the last batch's mean body size.
    fn claim_limit(&self) -> i64 {
        let max = self.config.batch_size.max(1);
        match self.body_bytes.load(Ordering::Relaxed) {
            0 => max,
            mean => i64::try_from(self.config.batch_bytes / mean)
                .unwrap_or(max)
                .clamp(1, max),
        }
    }

    /// Runs until the task is dropped. Rows left leased by a crashed process are
    /// freed at start-up (and would come back anyway once their lease lapses).
    pub async fn run(self, lifecycle: Arc<Lifecycle>) {
        match self.inbox.release_leases().await {
            Ok(0) => {}
            Ok(freed) => {
                slog::info!(self.logger, "resuming deliveries left by a stopped worker"; "inbox.rows" => freed)
            }
            Err(err) => {
                slog::warn!(self.logger, "could not free inbox leases"; "error" => err.to_string())
            }
        }
        // Claims skip each other's rows, so while one loop parses and commits, the
        // next claims: a backlog drains in overlapping batches. Applying out of order
        // is safe: every change is last-write-wins by AmoCRM's own change time.
        let loops = (0..self.config.appliers.max(1))
            .map(|lane| self.apply_until_draining(&lifecycle, lane));
        futures::future::join_all(loops).await;
        slog::info!(self.logger, "webhook worker stopped");
    }

    fn saturated(&self) -> bool {
        self.intake.in_flight() >= self.config.busy_acks.max(1)
    }

    /// While acknowledgements queue up the database is theirs first: lanes other
    /// than 0 stand aside, and lane 0 applies one batch per `busy_pause`.
    async fn apply_until_draining(&self, lifecycle: &Lifecycle, lane: usize) {
        let mut pause = Duration::from_millis(100);
        while !lifecycle.is_draining() {
            if lane > 0 && self.saturated() {
                lifecycle.pause(STAND_ASIDE).await;
                continue;
            }
            match self.process_due().await {
                Ok(0) => {
                    tokio::select! {
                        _ = self.intake.next_stored() => {}
                        _ = lifecycle.pause(self.config.poll) => {}
                    }
                }
                Ok(_) => {
                    pause = Duration::from_millis(100);
                    if self.saturated() {
                        lifecycle.pause(self.config.busy_pause).await;
                    }
                }
                Err(err) => {
                    slog::warn!(self.logger, "webhook worker could not reach the database"; "error" => err.to_string());
                    lifecycle.pause(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Claims and applies one batch of due deliveries; returns how many it handled.
    pub async fn process_due(&self) -> Result<usize, ServiceError> {
        let rows = self
            .inbox
            .claim_due(self.claim_limit(), self.config.lease)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let claimed = rows.len();
        let bytes: usize = rows.iter().map(|row| row.body.len()).sum();
        self.body_bytes
            .store((bytes / claimed).max(1), Ordering::Relaxed);
        // Parsing hundreds of bodies is CPU work: off the runtime thread, so the
        // acknowledgements sharing it keep their latency.
        let region = self.region;
        let parsed = tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|row| {
                    let changes = batch_of(&row, region);
                    (row, changes)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ServiceError::internal(format!("parsing deliveries failed: {e}")))?;
        let mut batch = MirrorBatch::default();
        let mut ignored = Vec::new();
        let mut good = Vec::with_capacity(parsed.len());
        for (row, changes) in parsed {
            match changes {
                Ok(changes) => {
                    batch.extend(changes.batch);
                    ignored.extend(changes.ignored);
                    good.push(row);
                }
                // A body that does not parse now never will: no retries.
                Err(why) => self.fail(&row, &why, Retry::Never).await,
            }
        }
        let ids: Vec<i64> = good.iter().map(|row| row.id).collect();
        match self.mirror.apply_deliveries(batch, ids.clone()).await {
            Ok(statements) => {
                crate::metrics::webhook_events_ignored(&ignored);
                slog::debug!(self.logger, "webhook deliveries applied";
                    "inbox.rows" => ids.len(), "db.statements" => statements);
            }
            // One bad delivery must not hold up the others: apply them one by one
            // (parsed again: rare, and cheaper than keeping a copy of every batch).
            Err(err) => {
                slog::warn!(self.logger, "batch apply failed, applying deliveries one by one"; "error" => err.to_string());
                for row in good {
                    let changes = match batch_of(&row, self.region) {
                        Ok(changes) => changes,
                        Err(why) => {
                            self.fail(&row, &why, Retry::Never).await;
                            continue;
                        }
                    };
                    match self
                        .mirror
                        .apply_deliveries(changes.batch, vec![row.id])
                        .await
                    {
                        Ok(_) => crate::metrics::webhook_events_ignored(&changes.ignored),
                        Err(err) => {
                            self.fail(&row, &err.to_string(), self.retry_for(&row))
                                .await
                        }
                    }
                }
            }
        }
        Ok(claimed)
    }

    /// Exponential backoff from 5 s up to 10 min; after `max_attempts` the row is failed.
    fn retry_for(&self, row: &InboxRow) -> Retry {
        if row.attempts + 1 >= self.config.max_attempts {
            return Retry::Never;
        }
        let secs = 5u64.saturating_mul(1 << row.attempts.clamp(0, 7)).min(600);
        Retry::After(Duration::from_secs(secs))
    }

    async fn fail(&self, row: &InboxRow, why: &str, retry: Retry) {
        slog::warn!(self.logger, "webhook delivery failed";
            "inbox.id" => row.id, "inbox.attempts" => row.attempts + 1, "error" => why, "retry" => format!("{retry:?}"));
        if let Err(err) = self.inbox.mark_failed(row.id, why, retry).await {
            slog::error!(self.logger, "could not record the webhook failure"; "inbox.id" => row.id, "error" => err.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repositories::{MockInboxRepository, MockMirrorRepository, RepoError};
    use crate::webhooks::{ContactEvent, LeadEvent};

    fn row(id: i64, body: &str, attempts: i32) -> InboxRow {
        InboxRow {
            id,
            content_type: "application/x-www-form-urlencoded".into(),
            body: body.as_bytes().to_vec(),
            attempts,
            received_at: chrono::DateTime::from_timestamp(5_000, 0)
                .map(|d| d.naive_utc())
                .expect("ts"),
        }
    }

    fn worker(inbox: MockInboxRepository, mirror: MockMirrorRepository) -> WebhookWorker {
        WebhookWorker::new(
            Arc::new(inbox),
            Arc::new(mirror),
            Region::default(),
            Arc::new(Intake::default()),
            WorkerConfig::default(),
            Logger::root(slog::Discard, slog::o!()),
        )
    }

    const GOOD: &str =
        "contacts[add][0][id]=7&contacts[add][0][name]=A&contacts[add][0][updated_at]=100&account[id]=1";

    #[test]
    fn events_become_changes_with_parsed_phones_links_and_fallback_times() {
        let delivery = Delivery {
            contacts: vec![
                ContactEvent {
                    action: Action::Update,
                    id: 7,
                    name: Some("A".into()),
                    phones: vec!["not a phone".into(), "8 916 123-45-67".into()],
                    linked_lead_ids: vec![70, 71],
                    changed_at: Some(100),
                },
                ContactEvent {
                    action: Action::Delete,
                    id: 8,
                    name: None,
                    phones: vec![],
                    linked_lead_ids: vec![],
                    changed_at: None,
                },
            ],
            leads: vec![LeadEvent {
                action: Action::Status,
                id: 70,
                name: None,
                price: None,
                status_id: Some(142),
                pipeline_id: Some(3),
                main_contact_id: None,
                changed_at: Some(101),
            }],
            ..Delivery::default()
        };
        let batch = to_batch(delivery, Region::default());
        assert_eq!(batch.contacts[0].phone.as_deref(), Some("+79161234567"));
        assert_eq!(batch.links, [(70, 7), (71, 7)]);
        assert_eq!(
            batch.contact_deletes,
            [Removal {
                amocrm_id: 8,
                changed_at: None
            }]
        );
        assert_eq!(
            (batch.leads[0].status_id, batch.leads[0].name.as_deref()),
            (Some(142), None)
        );
    }

    fn parsed(body: &str) -> MirrorBatch {
        let delivery = parse_delivery(None, body.as_bytes()).expect("parses");
        to_batch(delivery, Region::default())
    }

    #[test]
    fn an_event_without_a_change_time_is_read_back_instead_of_applied() {
        let batch = parsed(
            "leads[status][0][id]=916659&leads[status][0][status_id]=45648904\
             &leads[status][0][pipeline_id]=5080363&leads[status][0][old_status_id]=45648901\
             &contacts[update][0][id]=5&contacts[update][0][name]=Anna\
             &leads[update][0][id]=6&leads[update][0][name]=Timed&leads[update][0][last_modified]=99",
        );
        assert_eq!(
            batch.refetch,
            [(RefetchEntity::Contacts, 5), (RefetchEntity::Leads, 916659)]
        );
        assert!(batch.contacts.is_empty());
        assert_eq!(batch.leads.len(), 1);
        assert_eq!(
            (batch.leads[0].amocrm_id, batch.leads[0].changed_at),
            (6, 99)
        );
    }

    #[test]
    fn a_restore_carrying_the_record_upserts_it_and_clears_the_delete() {
        let batch = parsed(
            "contacts[restore][0][id]=1065&contacts[restore][0][name]=Some+name\
             &contacts[restore][0][last_modified]=1456827128&contacts[restore][0][type]=contact",
        );
        assert_eq!(batch.contacts.len(), 1);
        assert_eq!(batch.contacts[0].name.as_deref(), Some("Some name"));
        assert_eq!(
            batch.contact_restores,
            [Removal {
                amocrm_id: 1065,
                changed_at: Some(1456827128)
            }]
        );
    }

    #[test]
    fn companies_under_contacts_go_to_the_companies_mirror_only() {
        let batch = parsed(
            "contacts[update][0][id]=7793457&contacts[update][0][name]=Acme\
             &contacts[update][0][custom_fields][0][code]=PHONE\
             &contacts[update][0][custom_fields][0][values][0][value]=%2B79161112233\
             &contacts[update][0][updated_at]=1642684812&contacts[update][0][type]=company\
             &contacts[delete][0][id]=52379505&contacts[delete][0][type]=company",
        );
        assert!(batch.contacts.is_empty() && batch.contact_deletes.is_empty());
        assert_eq!(batch.companies.len(), 1);
        assert_eq!(batch.companies[0].changed_at, 1642684812);
        assert_eq!(batch.company_deletes.len(), 1);
    }

    #[tokio::test]
    async fn an_unparsable_delivery_fails_for_good_and_the_rest_is_applied() {
        let mut inbox = MockInboxRepository::new();
        inbox
            .expect_claim_due()
            .returning(|_, _| Ok(vec![row(1, "contacts[add][0][", 0), row(2, GOOD, 0)]));
        inbox
            .expect_mark_failed()
            .withf(|id, _, retry| *id == 1 && *retry == Retry::Never)
            .times(1)
            .returning(|_, _, _| Ok(()));
        let mut mirror = MockMirrorRepository::new();
        mirror
            .expect_apply_deliveries()
            .withf(|b, ids| b.contacts.len() == 1 && ids == &[2])
            .times(1)
            .returning(|_, _| Ok(2));
        assert_eq!(
            worker(inbox, mirror)
                .process_due()
                .await
                .expect("processed"),
            2
        );
    }

    #[tokio::test]
    async fn after_a_batch_of_large_deliveries_fewer_are_claimed_at_once() {
        let large = format!("{GOOD}&pad={}", "x".repeat(64 * 1024));
        let mut inbox = MockInboxRepository::new();
        let mut order = mockall::Sequence::new();
        inbox
            .expect_claim_due()
            .withf(|limit, _| *limit == 500)
            .times(1)
            .in_sequence(&mut order)
            .returning(move |_, _| Ok(vec![row(1, &large, 0), row(2, &large, 0)]));
        // 768 KiB at a little over 64 KiB a delivery.
        inbox
            .expect_claim_due()
            .withf(|limit, _| *limit == 11)
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _| Ok(vec![]));
        let mut mirror = MockMirrorRepository::new();
        mirror
            .expect_apply_deliveries()
            .withf(|b, ids| b.contacts.len() == 2 && ids == &[1, 2])
            .times(1)
            .returning(|_, _| Ok(1));
        let worker = worker(inbox, mirror);
        assert_eq!(worker.process_due().await.expect("first batch"), 2);
        assert_eq!(worker.process_due().await.expect("second claim"), 0);
    }

    #[tokio::test]
    async fn when_the_batch_fails_each_delivery_is_tried_alone_and_failures_back_off() {
        let mut inbox = MockInboxRepository::new();
        inbox
            .expect_claim_due()
            .returning(|_, _| Ok(vec![row(1, GOOD, 3), row(2, GOOD, 9)]));
        inbox
            .expect_mark_failed()
            .withf(|id, _, retry| *id == 1 && *retry == Retry::After(Duration::from_secs(40)))
            .times(1)
            .returning(|_, _, _| Ok(()));
        inbox
            .expect_mark_failed()
            .withf(|id, _, retry| *id == 2 && *retry == Retry::Never)
            .times(1)
            .returning(|_, _, _| Ok(()));
        let mut mirror = MockMirrorRepository::new();
        mirror
            .expect_apply_deliveries()
            .times(3)
            .returning(|_, _| Err(RepoError::Query("boom".into())));
        assert_eq!(
            worker(inbox, mirror).process_due().await.expect("handled"),
            2
        );
    }

    /// Claims made in `window` by a worker whose inbox always has one more delivery,
    /// while `acking` acknowledgements are under way.
    async fn claims_while_acking(acking: usize, window: Duration) -> usize {
        let claims = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&claims);
        let mut inbox = MockInboxRepository::new();
        inbox.expect_release_leases().returning(|| Ok(0));
        inbox.expect_claim_due().returning(move |_, _| {
            let n = counted.fetch_add(1, Ordering::SeqCst) as i64;
            Ok(vec![row(n, GOOD, 0)])
        });
        let mut mirror = MockMirrorRepository::new();
        mirror.expect_apply_deliveries().returning(|_, _| Ok(1));
        let intake = Arc::new(Intake::default());
        let guards: Vec<_> = (0..acking).map(|_| intake.acking()).collect();
        let config = WorkerConfig {
            busy_acks: 8,
            busy_pause: Duration::from_millis(100),
            ..WorkerConfig::default()
        };
        let worker = WebhookWorker::new(
            Arc::new(inbox),
            Arc::new(mirror),
            Region::default(),
            intake,
            config,
            Logger::root(slog::Discard, slog::o!()),
        );
        Lifecycle::run_for(window, |lifecycle| worker.run(lifecycle)).await;
        drop(guards);
        claims.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn while_acknowledgements_queue_up_one_batch_is_applied_per_pause() {
        let window = Duration::from_millis(450);
        let saturated = claims_while_acking(10, window).await;
        // Lane 0 at 0, 100, 200, 300, 400 ms; lane 1 stands aside.
        assert!(
            (3..=6).contains(&saturated),
            "{saturated} claims in 450 ms while saturated"
        );
        let quiet = claims_while_acking(2, window).await;
        assert!(
            quiet > 20,
            "only {quiet} claims in 450 ms with 2 acks under way"
        );
    }
}
