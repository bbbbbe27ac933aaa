//! Reconciliation: webhooks can be lost, so the mirror also pulls what changed in
//! AmoCRM since a stored cursor (`filter[updated_at][from]`, oldest first, 250 a page)
//! and applies it exactly like webhook changes (same last-write-wins). The full import
//! is the same walk from the beginning of time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use slog::Logger;

use super::ServiceError;
use crate::amo::{AmoAccess, AmoContact, AmoEntity, AmoLead, AmoTransport};
use crate::domain::{Phone, Region};
use crate::lifecycle::Lifecycle;
use crate::repositories::{
    ContactChange, CursorRepository, LeadChange, MirrorBatch, MirrorRepository,
};

/// How long one walk may hold its cursor; longer than a walk of `max_pages` at 7 req/s.
const CURSOR_LEASE: Duration = Duration::from_secs(600);

pub struct Reconciler {
    amo: Arc<dyn AmoTransport>,
    cursors: Arc<dyn CursorRepository>,
    mirror: Arc<dyn MirrorRepository>,
    region: Region,
    logger: Logger,
}

/// What one walk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walk {
    pub applied: usize,
    pub pages: u32,
    /// Another instance holds the cursor; nothing was done.
    pub skipped: bool,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn contact_change(c: AmoContact, region: Region) -> ContactChange {
    let phone = c
        .phones
        .iter()
        .find_map(|raw| Phone::parse(raw, region).ok());
    ContactChange {
        amocrm_id: c.id,
        name: Some(c.name),
        phone: phone.map(|p| p.as_e164().to_owned()),
        changed_at: c.updated_at.unwrap_or_else(unix_now),
    }
}

fn lead_change(l: AmoLead) -> LeadChange {
    LeadChange {
        amocrm_id: l.id,
        name: Some(l.name),
        price: l.price,
        status_id: l.status_id,
        pipeline_id: l.pipeline_id,
        contact_amocrm_id: l.main_contact_id.or_else(|| l.contact_ids.first().copied()),
        changed_at: l.updated_at.unwrap_or_else(unix_now),
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
            logger,
        }
    }

    /// Every `interval`, pulls contacts then leads changed since the cursors (at most
    /// `max_pages` pages each per round; the rest follows next round).
    pub async fn run(self, interval: Duration, max_pages: u32, lifecycle: Arc<Lifecycle>) {
        while !lifecycle.is_draining() {
            if self.amo.access() == AmoAccess::Ok {
                // A first round looks back two intervals: what webhooks may have missed.
                let start = unix_now() - 2 * interval.as_secs() as i64;
                for (entity, cursor) in [
                    (AmoEntity::Contacts, "reconcile.contacts"),
                    (AmoEntity::Leads, "reconcile.leads"),
                ] {
                    match self.walk(entity, cursor, start, max_pages, |_| {}).await {
                        Ok(walk) if walk.applied > 0 => {
                            slog::info!(self.logger, "reconciled changes from AmoCRM";
                            "cursor" => cursor, "records" => walk.applied, "pages" => walk.pages)
                        }
                        Ok(_) => {}
                        Err(err) => slog::warn!(self.logger, "reconciliation round failed";
                            "cursor" => cursor, "error" => err.to_string()),
                    }
                }
            }
            lifecycle.pause(interval).await;
        }
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
                    let found = self
                        .amo
                        .contacts_changed_since(since, page)
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
                    let found = self
                        .amo
                        .leads_changed_since(since, page)
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
            if count > 0 {
                self.mirror.apply(batch).await?;
                self.cursors.advance(cursor, newest).await?;
            }
            walk.applied += count;
            walk.pages = page;
            progress(walk.applied);
            if !more || count == 0 {
                break;
            }
        }
        Ok(walk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amo::{AmoPage, MockAmoTransport};
    use crate::repositories::{MockCursorRepository, MockMirrorRepository};
    use mockall::predicate::eq;

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
        let reconciler = Reconciler::new(
            Arc::new(amo),
            Arc::new(cursors),
            Arc::new(mirror),
            Region::default(),
            Logger::root(slog::Discard, slog::o!()),
        );
        let walk = reconciler
            .walk(AmoEntity::Contacts, "c", 0, 10, |_| {})
            .await
            .expect("walk");
        assert_eq!((walk.applied, walk.pages, walk.skipped), (3, 2, false));
    }

    #[tokio::test]
    async fn a_cursor_held_elsewhere_is_left_alone() {
        let mut cursors = MockCursorRepository::new();
        cursors.expect_lease().returning(|_, _, _| Ok(None));
        cursors.expect_release().never();
        let reconciler = Reconciler::new(
            Arc::new(MockAmoTransport::new()),
            Arc::new(cursors),
            Arc::new(MockMirrorRepository::new()),
            Region::default(),
            Logger::root(slog::Discard, slog::o!()),
        );
        let walk = reconciler
            .walk(AmoEntity::Leads, "l", 0, 10, |_| {})
            .await
            .expect("walk");
        assert!(walk.skipped);
    }
}
