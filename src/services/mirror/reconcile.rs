//! Reconciliation: webhooks can be lost, so the mirror also pulls what changed in
//! AmoCRM since a stored cursor (`filter[updated_at][from]`, oldest first, 250 a page)
//! and applies it exactly like webhook changes (same last-write-wins). The full import
//! is the same walk from the beginning of time.
//!
//! With `Upkeep` it also keeps the facts behind an authoritative mirror (import
//! finished, webhook verified, reconciliation current) and reports AmoCRM contacts
//! that turn out to share a phone with another mirrored one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use slog::Logger;

use super::{MirrorAuthority, WebhookSubscription};
use crate::amo::{AmoAccess, AmoContact, AmoEntity, AmoError, AmoLead, AmoTransport};
use crate::domain::{Phone, Region};
use crate::lifecycle::Lifecycle;
use crate::repositories::{
    ContactChange, CursorRepository, DuplicateRepository, LeadChange, MirrorBatch, MirrorFact,
    MirrorFactRepository, MirrorRepository,
};
use crate::services::ServiceError;
use crate::settings;

/// How long one walk may hold its cursor; longer than a walk of `max_pages` at 7 req/s.
const CURSOR_LEASE: Duration = Duration::from_secs(600);

pub struct Reconciler {
    amo: Arc<dyn AmoTransport>,
    cursors: Arc<dyn CursorRepository>,
    mirror: Arc<dyn MirrorRepository>,
    region: Region,
    upkeep: Option<Upkeep>,
    logger: Logger,
}

/// What the reconciler looks after besides the mirror itself.
pub struct Upkeep {
    pub facts: Arc<dyn MirrorFactRepository>,
    pub duplicates: Arc<dyn DuplicateRepository>,
    /// Verified each round; `None` when webhooks are not configured.
    pub subscription: Option<Arc<WebhookSubscription>>,
    /// Judged after each round, so its gauge and transition log follow the facts
    /// even while no request asks.
    pub authority: Option<Arc<MirrorAuthority>>,
}

/// What one walk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walk {
    pub applied: usize,
    pub pages: u32,
    /// Another instance holds the cursor; nothing was done.
    pub skipped: bool,
    /// The walk reached AmoCRM's newest change (it did not stop at `max_pages`).
    pub complete: bool,
}

/// What the full import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub contacts: usize,
    pub leads: usize,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A record AmoCRM answered without `updated_at` counts as time 0: it fills a row
/// the mirror lacks but never overwrites one with a known time. Names are kept as
/// AmoCRM holds them (trimmed; empty when it has none), as webhooks keep them.
pub(super) fn contact_change(c: AmoContact, region: Region) -> ContactChange {
    let phone = c
        .phones
        .iter()
        .find_map(|raw| Phone::parse(raw, region).ok());
    ContactChange {
        amocrm_id: c.id,
        name: Some(c.name.trim().to_owned()),
        phone: phone.map(|p| p.as_e164().to_owned()),
        changed_at: c.updated_at.unwrap_or(0),
    }
}

pub(super) fn lead_change(l: AmoLead) -> LeadChange {
    LeadChange {
        amocrm_id: l.id,
        name: Some(l.name.trim().to_owned()),
        price: l.price,
        status_id: l.status_id,
        pipeline_id: l.pipeline_id,
        contact_amocrm_id: l.main_contact_id.or_else(|| l.contact_ids.first().copied()),
        changed_at: l.updated_at.unwrap_or(0),
    }
}

impl Reconciler {
    pub fn new(
        amo: Arc<dyn AmoTransport>,
        cursors: Arc<dyn CursorRepository>,
        mirror: Arc<dyn MirrorRepository>,
        region: Region,
        logger: Logger,
    ) -> Self {
        Reconciler {
            amo,
            cursors,
            mirror,
            region,
            upkeep: None,
            logger,
        }
    }

    pub fn with_upkeep(mut self, upkeep: Upkeep) -> Self {
        self.upkeep = Some(upkeep);
        self
    }

    /// Every `interval`, pulls contacts then leads changed since the cursors (at most
    /// `max_pages` pages each per round; the rest follows next round).
    pub async fn run(self, section: settings::Reconcile, lifecycle: Arc<Lifecycle>) {
        let settings::Reconcile {
            interval,
            max_pages,
        } = section;
        while !lifecycle.is_draining() {
            if self.amo.access() == AmoAccess::Ok {
                self.round(interval, max_pages).await;
            }
            if let Some(authority) = self.upkeep.as_ref().and_then(|u| u.authority.as_ref()) {
                authority.state().await;
            }
            lifecycle.pause(interval).await;
        }
    }

    /// One round: the webhook verified, then both walks; when both caught up, the
    /// mirror is recorded as reconciled.
    pub async fn round(&self, interval: Duration, max_pages: u32) {
        if let Some(subscription) = self.upkeep.as_ref().and_then(|u| u.subscription.as_ref()) {
            match subscription.verify().await {
                Ok(true) => {}
                Ok(false) => slog::debug!(self.logger, "our webhook is not active in AmoCRM"),
                // The recorded fact ages out by itself if this keeps failing.
                Err(err) => slog::warn!(self.logger, "could not verify the webhook";
                    "error" => err.to_string()),
            }
        }
        // A first round looks back two intervals: what webhooks may have missed.
        let start = unix_now() - 2 * interval.as_secs() as i64;
        let mut current = true;
        for (entity, cursor) in [
            (AmoEntity::Contacts, "reconcile.contacts"),
            (AmoEntity::Leads, "reconcile.leads"),
        ] {
            match self.walk(entity, cursor, start, max_pages, |_| {}).await {
                Ok(walk) => {
                    if walk.applied > 0 {
                        slog::info!(self.logger, "reconciled changes from AmoCRM";
                            "cursor" => cursor, "records" => walk.applied, "pages" => walk.pages);
                    }
                    // Held elsewhere: that instance records its own round.
                    current &= walk.complete && !walk.skipped;
                }
                Err(err) => {
                    current = false;
                    slog::warn!(self.logger, "reconciliation round failed";
                        "cursor" => cursor, "error" => err.to_string());
                }
            }
        }
        if let (true, Some(upkeep)) = (current, &self.upkeep) {
            if let Err(err) = upkeep.facts.record(MirrorFact::Reconciled).await {
                slog::warn!(self.logger, "could not record the reconciliation"; "error" => err.to_string());
            }
        }
    }

    /// Walks every contact and lead of the account into the mirror (resumable through
    /// the `import.*` cursors). The "full import finished" fact is withdrawn when it
    /// starts and recorded when both walks reached the end. `None` when another import
    /// holds a cursor.
    pub async fn import_all(
        &self,
        progress: impl Fn(AmoEntity, usize),
    ) -> Result<Option<Imported>, ServiceError> {
        if let Some(upkeep) = &self.upkeep {
            upkeep.facts.clear(MirrorFact::FullImport).await?;
        }
        let mut imported = Imported::default();
        for (entity, cursor) in [
            (AmoEntity::Contacts, "import.contacts"),
            (AmoEntity::Leads, "import.leads"),
        ] {
            let walk = self
                .walk(entity, cursor, 0, u32::MAX, |n| progress(entity, n))
                .await?;
            if walk.skipped {
                return Ok(None);
            }
            match entity {
                AmoEntity::Contacts => imported.contacts = walk.applied,
                AmoEntity::Leads => imported.leads = walk.applied,
            }
        }
        if let Some(upkeep) = &self.upkeep {
            upkeep.facts.record(MirrorFact::FullImport).await?;
        }
        Ok(Some(imported))
    }

    /// Walks one cursor: applies every page and saves progress after each, so an
    /// interrupted walk resumes where it stopped. The cursor keeps the newest change
    /// time seen; records from that same second are read again next time, which
    /// last-write-wins makes harmless.
    pub async fn walk(
        &self,
        entity: AmoEntity,
        cursor: &str,
        start: i64,
        max_pages: u32,
        progress: impl Fn(usize),
    ) -> Result<Walk, ServiceError> {
        let Some(since) = self.cursors.lease(cursor, start, CURSOR_LEASE).await? else {
            return Ok(Walk {
                skipped: true,
                ..Walk::default()
            });
        };
        let outcome = self.pages(entity, cursor, since, max_pages, progress).await;
        if let Err(err) = self.cursors.release(cursor).await {
            slog::warn!(self.logger, "could not release a reconciliation cursor"; "cursor" => cursor, "error" => err.to_string());
        }
        outcome
    }

    async fn pages(
        &self,
        entity: AmoEntity,
        cursor: &str,
        since: i64,
        max_pages: u32,
        progress: impl Fn(usize),
    ) -> Result<Walk, ServiceError> {
        let mut walk = Walk::default();
        let mut newest = since;
        for page in 1..=max_pages.max(1) {
            let mut batch = MirrorBatch::default();
            let more = match entity {
                AmoEntity::Contacts => {
                    let found = patiently(|| self.amo.contacts_changed_since(since, page))
                        .await
                        .map_err(ServiceError::amo)?;
                    batch.contacts = found
                        .items
                        .into_iter()
                        .map(|c| contact_change(c, self.region))
                        .collect();
                    found.more
                }
                AmoEntity::Leads => {
                    let found = patiently(|| self.amo.leads_changed_since(since, page))
                        .await
                        .map_err(ServiceError::amo)?;
                    batch.leads = found.items.into_iter().map(lead_change).collect();
                    found.more
                }
            };
            let count = batch.contacts.len() + batch.leads.len();
            newest = batch
                .contacts
                .iter()
                .map(|c| c.changed_at)
                .chain(batch.leads.iter().map(|l| l.changed_at))
                .fold(newest, i64::max);
            let with_phone: Vec<i64> = batch
                .contacts
                .iter()
                .filter(|c| c.phone.is_some())
                .map(|c| c.amocrm_id)
                .collect();
            if count > 0 {
                self.mirror.apply(batch).await?;
                self.cursors.advance(cursor, newest).await?;
            }
            self.report_duplicates(with_phone).await;
            walk.applied += count;
            walk.pages = page;
            progress(walk.applied);
            if !more || count == 0 {
                walk.complete = true;
                break;
            }
        }
        Ok(walk)
    }

    /// Pairs of AmoCRM contacts now sharing a phone in the mirror: each is logged
    /// and counted once (the repository remembers it), and left for a person to merge.
    async fn report_duplicates(&self, amocrm_ids: Vec<i64>) {
        let Some(upkeep) = &self.upkeep else {
            return;
        };
        if amocrm_ids.is_empty() {
            return;
        }
        match upkeep.duplicates.detect(amocrm_ids).await {
            Ok(pairs) => {
                crate::metrics::contact_duplicates(pairs.len());
                for pair in pairs {
                    slog::warn!(self.logger, "two AmoCRM contacts share one phone; merge them in AmoCRM";
                        "contact.amocrm_id" => pair.first_amocrm_id,
                        "duplicate.amocrm_id" => pair.second_amocrm_id);
                }
            }
            // The same contacts come back in a later round, and are checked again then.
            Err(err) => slog::warn!(self.logger, "could not check for duplicate contacts";
                "error" => err.to_string()),
        }
    }
}

/// Fetches a page again when AmoCRM failed it for a passing reason (429, 5xx,
/// timeout, network), up to `PAGE_ATTEMPTS` times with growing pauses; after a 429
/// the rate limiter also waits out `Retry-After`. A walk shares the account's limit
/// with the service's own calls, so one busy second must not end a full import.
async fn patiently<T, F, Fut>(mut fetch: F) -> Result<T, AmoError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AmoError>>,
{
    let mut pause = Duration::from_secs(1);
    for _ in 1..PAGE_ATTEMPTS {
        match fetch().await {
            Err(error) if error.is_transient() => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            done => return done,
        }
    }
    fetch().await
}

const PAGE_ATTEMPTS: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amo::{AmoPage, MockAmoTransport};
    use crate::repositories::{
        DuplicatePair, MockCursorRepository, MockDuplicateRepository, MockMirrorFactRepository,
        MockMirrorRepository,
    };
    use mockall::predicate::eq;

    fn page(items: Vec<AmoContact>, more: bool) -> AmoPage<AmoContact> {
        AmoPage { items, more }
    }

    /// Cursors always free, the mirror accepting everything.
    /// A reconciler without upkeep, for walks.
    fn walker(
        amo: MockAmoTransport,
        cursors: MockCursorRepository,
        mirror: MockMirrorRepository,
    ) -> Reconciler {
        Reconciler::new(
            Arc::new(amo),
            Arc::new(cursors),
            Arc::new(mirror),
            Region::default(),
            Logger::root(slog::Discard, slog::o!()),
        )
    }

    fn reconciler(amo: MockAmoTransport, upkeep: Upkeep) -> Reconciler {
        let mut cursors = MockCursorRepository::new();
        cursors.expect_lease().returning(|_, _, _| Ok(Some(100)));
        cursors.expect_advance().returning(|_, _| Ok(()));
        cursors.expect_release().returning(|_| Ok(()));
        let mut mirror = MockMirrorRepository::new();
        mirror.expect_apply().returning(|_| Ok(1));
        walker(amo, cursors, mirror).with_upkeep(upkeep)
    }

    fn upkeep(facts: MockMirrorFactRepository, duplicates: MockDuplicateRepository) -> Upkeep {
        Upkeep {
            facts: Arc::new(facts),
            duplicates: Arc::new(duplicates),
            subscription: None,
            authority: None,
        }
    }

    #[tokio::test]
    async fn a_round_that_caught_up_is_recorded_and_one_cut_short_by_max_pages_is_not() {
        for (more, recorded) in [(false, 1), (true, 0)] {
            let mut amo = MockAmoTransport::new();
            amo.expect_contacts_changed_since()
                .returning(move |_, _| Ok(page(vec![contact(1, 150)], more)));
            amo.expect_leads_changed_since().returning(|_, _| {
                Ok(AmoPage {
                    items: vec![],
                    more: false,
                })
            });
            let mut facts = MockMirrorFactRepository::new();
            facts
                .expect_record()
                .with(eq(MirrorFact::Reconciled))
                .times(recorded)
                .returning(|_| Ok(()));
            let mut duplicates = MockDuplicateRepository::new();
            duplicates.expect_detect().returning(|_| Ok(vec![]));
            reconciler(amo, upkeep(facts, duplicates))
                .round(Duration::from_secs(60), 1)
                .await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_walk_does_not_count_as_current() {
        let mut amo = MockAmoTransport::new();
        amo.expect_contacts_changed_since()
            .returning(|_, _| Err(crate::amo::AmoError::Server { status: 502 }));
        amo.expect_leads_changed_since().returning(|_, _| {
            Ok(AmoPage {
                items: vec![],
                more: false,
            })
        });
        let mut facts = MockMirrorFactRepository::new();
        facts.expect_record().never();
        reconciler(amo, upkeep(facts, MockDuplicateRepository::new()))
            .round(Duration::from_secs(60), 5)
            .await;
    }

    #[tokio::test]
    async fn contacts_with_a_phone_are_checked_for_duplicates_and_new_pairs_reported() {
        let mut amo = MockAmoTransport::new();
        let without_phone = AmoContact {
            phones: vec![],
            ..contact(3, 170)
        };
        amo.expect_contacts_changed_since().returning(move |_, _| {
            Ok(page(
                vec![contact(1, 150), contact(2, 160), without_phone.clone()],
                false,
            ))
        });
        let mut duplicates = MockDuplicateRepository::new();
        duplicates
            .expect_detect()
            .with(eq(vec![1, 2]))
            .times(1)
            .returning(|_| {
                Ok(vec![DuplicatePair {
                    first_amocrm_id: 1,
                    second_amocrm_id: 2,
                    phone: "+79160000001".into(),
                }])
            });
        let walk = reconciler(amo, upkeep(MockMirrorFactRepository::new(), duplicates))
            .walk(AmoEntity::Contacts, "c", 0, 10, |_| {})
            .await
            .expect("walk");
        assert!(walk.complete);
    }

    #[tokio::test]
    async fn the_full_import_withdraws_its_fact_first_and_records_it_when_both_walks_end() {
        let mut amo = MockAmoTransport::new();
        amo.expect_contacts_changed_since()
            .returning(|_, _| Ok(page(vec![contact(1, 150)], false)));
        amo.expect_leads_changed_since().returning(|_, _| {
            Ok(AmoPage {
                items: vec![],
                more: false,
            })
        });
        let mut facts = MockMirrorFactRepository::new();
        let mut order = mockall::Sequence::new();
        facts
            .expect_clear()
            .with(eq(MirrorFact::FullImport))
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Ok(()));
        facts
            .expect_record()
            .with(eq(MirrorFact::FullImport))
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Ok(()));
        let mut duplicates = MockDuplicateRepository::new();
        duplicates.expect_detect().returning(|_| Ok(vec![]));
        let imported = reconciler(amo, upkeep(facts, duplicates))
            .import_all(|_, _| {})
            .await
            .expect("import");
        assert_eq!(
            imported,
            Some(Imported {
                contacts: 1,
                leads: 0
            })
        );
    }

    fn contact(id: i64, updated_at: i64) -> AmoContact {
        AmoContact {
            id,
            name: format!("C{id}"),
            phones: vec!["8 916 000-00-01".into()],
            updated_at: Some(updated_at),
        }
    }

    #[tokio::test]
    async fn a_walk_applies_every_page_and_moves_the_cursor_to_the_newest_change() {
        let mut amo = MockAmoTransport::new();
        amo.expect_contacts_changed_since()
            .with(eq(100), eq(1))
            .returning(|_, _| {
                Ok(AmoPage {
                    items: vec![contact(1, 150), contact(2, 160)],
                    more: true,
                })
            });
        amo.expect_contacts_changed_since()
            .with(eq(100), eq(2))
            .returning(|_, _| {
                Ok(AmoPage {
                    items: vec![contact(3, 170)],
                    more: false,
                })
            });
        let mut cursors = MockCursorRepository::new();
        cursors.expect_lease().returning(|_, _, _| Ok(Some(100)));
        cursors
            .expect_advance()
            .with(eq("c"), eq(160))
            .times(1)
            .returning(|_, _| Ok(()));
        cursors
            .expect_advance()
            .with(eq("c"), eq(170))
            .times(1)
            .returning(|_, _| Ok(()));
        cursors.expect_release().times(1).returning(|_| Ok(()));
        let mut mirror = MockMirrorRepository::new();
        mirror
            .expect_apply()
            .withf(|b| {
                b.contacts
                    .iter()
                    .all(|c| c.phone.as_deref() == Some("+79160000001"))
            })
            .times(2)
            .returning(|_| Ok(1));
        let reconciler = walker(amo, cursors, mirror);
        let walk = reconciler
            .walk(AmoEntity::Contacts, "c", 0, 10, |_| {})
            .await
            .expect("walk");
        assert_eq!((walk.applied, walk.pages, walk.skipped), (3, 2, false));
        assert!(walk.complete);
    }

    #[tokio::test]
    async fn a_cursor_held_elsewhere_is_left_alone() {
        let mut cursors = MockCursorRepository::new();
        cursors.expect_lease().returning(|_, _, _| Ok(None));
        cursors.expect_release().never();
        let reconciler = walker(
            MockAmoTransport::new(),
            cursors,
            MockMirrorRepository::new(),
        );
        let walk = reconciler
            .walk(AmoEntity::Leads, "l", 0, 10, |_| {})
            .await
            .expect("walk");
        assert!(walk.skipped);
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_refused_for_a_passing_reason_is_fetched_again_and_a_lost_token_is_not() {
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = Arc::clone(&calls);
        let mut amo = MockAmoTransport::new();
        amo.expect_contacts_changed_since().returning(move |_, _| {
            match counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Err(AmoError::RateLimited { retry_after: None }),
                1 => Err(AmoError::Server { status: 502 }),
                _ => Ok(AmoPage {
                    items: vec![contact(1, 150)],
                    more: false,
                }),
            }
        });
        let mut cursors = MockCursorRepository::new();
        cursors.expect_lease().returning(|_, _, _| Ok(Some(100)));
        cursors.expect_advance().returning(|_, _| Ok(()));
        cursors.expect_release().returning(|_| Ok(()));
        let mut mirror = MockMirrorRepository::new();
        mirror.expect_apply().times(1).returning(|_| Ok(1));
        let reconciler = walker(amo, cursors, mirror);
        let walk = reconciler
            .walk(AmoEntity::Contacts, "c", 0, 10, |_| {})
            .await
            .expect("walk after two passing failures");
        assert_eq!(
            (
                walk.applied,
                calls.load(std::sync::atomic::Ordering::SeqCst)
            ),
            (1, 3)
        );

        let mut amo = MockAmoTransport::new();
        amo.expect_contacts_changed_since()
            .times(1)
            .returning(|_, _| Err(AmoError::Unauthorized));
        let mut cursors = MockCursorRepository::new();
        cursors.expect_lease().returning(|_, _, _| Ok(Some(100)));
        cursors.expect_release().returning(|_| Ok(()));
        let reconciler = walker(amo, cursors, MockMirrorRepository::new());
        let refused = reconciler
            .walk(AmoEntity::Contacts, "c", 0, 10, |_| {})
            .await;
        assert!(matches!(
            refused,
            Err(ServiceError::Amo {
                error: AmoError::Unauthorized,
                ..
            })
        ));
    }
}
