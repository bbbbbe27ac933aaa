//! One background sync round over many records at once. AmoCRM has no search for
//! several phones or names in one call, so each record is searched for on its own;
//! what is still missing is then created together: contacts 250 per
//! `POST /contacts`, leads 50 per `POST /leads`, and leads that bring a contact not
//! yet in AmoCRM 50 per `leads/complex`, matched back by `request_id`. The leases of
//! all records are renewed while the round runs.
//!
//! While the mirror is authoritative (`MirrorAuthority`) a record on its first attempt
//! is not searched for: a contact is looked up in the mirror by phone only, and what
//! is missing goes straight into the batched creates.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use futures::StreamExt;
use slog::Logger;

use super::authority::searched;
use super::batches::{send_halving, Created};
use super::contacts::pick_contact;
use super::leads::pick_lead;
use super::lease_keeper::{Held, LeaseKeeper};
use super::{keep_pending, MirrorAuthority, SyncSettings};
use crate::amo::{
    AmoContact, AmoError, AmoLead, AmoTransport, CreatedWithContact, NewAmoContact, NewAmoLead,
    MAX_CONTACTS_PER_CREATE, MAX_LEADS_PER_CREATE,
};
use crate::domain::Phone;
use crate::lifecycle::Lifecycle;
use crate::repositories::{Contact, ContactRepository, Lead, LeadRepository};

/// Searches in flight at once: enough to keep the rate limiter busy at any latency.
const SEARCHES_IN_FLIGHT: usize = 16;

/// Records leased for one round.
#[derive(Debug, Default)]
pub struct Round {
    pub contacts: Vec<Contact>,
    pub leads: Vec<LeadItem>,
}

impl Round {
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty() && self.leads.is_empty()
    }
}

#[derive(Debug)]
pub struct LeadItem {
    pub row: Lead,
    pub contact: LeadLink,
}

#[derive(Debug)]
pub enum LeadLink {
    /// Linked to this AmoCRM contact, or to none.
    Known(Option<i64>),
    /// A local contact still pending; the round holds its lease too.
    Pending(Contact),
}

/// What searching told us to do with a record.
enum Plan {
    ContactFound(Contact, AmoContact),
    CreateContact(Contact, NewAmoContact),
    LeadFound(Lead, AmoLead),
    CreateLead(Lead, NewAmoLead),
    CreateLeadWithContact(Lead, NewAmoLead, Contact, NewAmoContact),
    /// The search failed; the record (and a pending contact it brought) is given back.
    Failed(Held, Option<Held>, AmoError),
    /// The stored record cannot be sent at all (e.g. its phone no longer parses).
    Broken(Held, String),
    /// Not searched: AmoCRM was failing for the searches before it.
    Skipped(Held, Option<Held>),
}

/// What a round leaves for the worker to do.
#[derive(Debug, Default)]
pub struct RoundReport {
    /// A search failed for a reason that is not about its record (429, 5xx, timeout,
    /// access refused): the rest of the round was not sent.
    pub halted: bool,
    /// Records not searched: still leased, their jobs untouched and not counted.
    pub skipped: Vec<Held>,
}

/// What AmoCRM holds for one contact's phone.
enum ContactSearch {
    Found(Contact, AmoContact),
    Missing(Contact, NewAmoContact),
    Failed(Contact, AmoError),
    Broken(Contact, String),
    Skipped(Contact),
}

pub struct RoundRunner<'a> {
    pub amo: &'a dyn AmoTransport,
    pub contacts: &'a dyn ContactRepository,
    pub leads: &'a dyn LeadRepository,
    pub settings: SyncSettings,
    /// Whether records are searched for in AmoCRM before they are created.
    pub authority: &'a MirrorAuthority,
    /// While the service drains, no new search starts: the rest is put back.
    pub lifecycle: Option<&'a Lifecycle>,
    pub logger: &'a Logger,
}

impl RoundRunner<'_> {
    /// Searches for every record, then creates what is missing; every record ends
    /// synced, pending with its failure recorded, untouched (lease lost), or skipped
    /// (reported, for the worker to put back).
    pub async fn run(&self, round: Round) -> RoundReport {
        let keeper = LeaseKeeper::new(self.contacts, self.leads, self.settings.lease);
        for row in &round.contacts {
            keeper.hold(Held::contact(row.id), row.sync_lease_until);
        }
        for item in &round.leads {
            keeper.hold(Held::lead(item.row.id), item.row.sync_lease_until);
            if let LeadLink::Pending(contact) = &item.contact {
                keeper.hold(Held::contact(contact.id), contact.sync_lease_until);
            }
        }
        tokio::select! {
            report = self.search_then_create(round, &keeper) => report,
            () = keeper.keep_renewing() => RoundReport::default(),
        }
    }

    async fn search_then_create(&self, round: Round, keeper: &LeaseKeeper<'_>) -> RoundReport {
        // Set by the first search that fails for AmoCRM's reasons: the searches not yet
        // sent are skipped, instead of hundreds of calls meeting the same 429 or outage.
        let halt = AtomicBool::new(false);
        // One verdict for the whole round: its records are created together anyway.
        let search = self.authority.search_amocrm().await;
        // Boxed one by one (not mapped lazily) so the worker's future stays `Send`.
        let mut searches: Vec<BoxFuture<'_, Plan>> = Vec::new();
        for row in round.contacts {
            searches.push(Box::pin(self.search_contact(row, &halt, search)));
        }
        for item in round.leads {
            searches.push(Box::pin(self.search_lead(item, &halt, search)));
        }
        let plans: Vec<Plan> = futures::stream::iter(searches)
            .buffer_unordered(SEARCHES_IN_FLIGHT)
            .collect()
            .await;

        let (mut contacts, mut leads, mut complex) = (Vec::new(), Vec::new(), Vec::new());
        let mut report = RoundReport {
            halted: halt.load(Ordering::SeqCst),
            skipped: Vec::new(),
        };
        for plan in plans {
            match plan {
                Plan::ContactFound(row, found) => {
                    self.finish_contact(&row, found.id, &found.name, false)
                        .await;
                }
                Plan::LeadFound(row, found) => self.finish_lead(&row, found, false).await,
                Plan::Failed(record, contact, error) => {
                    self.fail(record, &error).await;
                    if let Some(contact) = contact {
                        self.give_back(contact).await;
                    }
                }
                Plan::Broken(record, why) => self.bury(record, &why).await,
                Plan::Skipped(record, contact) => {
                    report.skipped.push(record);
                    report.skipped.extend(contact);
                }
                // Someone else holds the record now: they search and create, not us.
                Plan::CreateContact(row, _) if keeper.lost(Held::contact(row.id)) => {}
                Plan::CreateLead(row, _) if keeper.lost(Held::lead(row.id)) => {}
                Plan::CreateLeadWithContact(row, _, contact, _)
                    if keeper.lost(Held::lead(row.id))
                        || keeper.lost(Held::contact(contact.id)) => {}
                Plan::CreateContact(row, new) => contacts.push((row, new)),
                Plan::CreateLead(row, new) => leads.push((row, new)),
                Plan::CreateLeadWithContact(row, lead, contact, new_contact) => {
                    complex.push(((row, contact), (lead, new_contact)));
                }
            }
        }
        self.create_contacts(contacts).await;
        self.create_leads(leads).await;
        self.create_leads_with_contacts(complex).await;
        report
    }

    /// Whether searches not yet sent should be skipped.
    fn stopping(&self, halt: &AtomicBool) -> bool {
        halt.load(Ordering::SeqCst) || self.lifecycle.is_some_and(Lifecycle::is_draining)
    }

    async fn find_contact(&self, row: Contact, halt: &AtomicBool, search: bool) -> ContactSearch {
        if self.stopping(halt) {
            return ContactSearch::Skipped(row);
        }
        let phone = match Phone::from_e164(row.phone.as_deref().unwrap_or_default()) {
            Ok(phone) => phone,
            Err(error) => return ContactSearch::Broken(row, format!("stored phone: {error}")),
        };
        if !searched(search, row.sync_attempts) {
            return self.find_mirrored(row, phone).await;
        }
        match self.amo.find_contact_by_phone(&phone).await {
            Ok(found) => match pick_contact(found) {
                Some(existing) => ContactSearch::Found(row, existing),
                None => {
                    let new = new_contact(&row, phone);
                    ContactSearch::Missing(row, new)
                }
            },
            Err(error) => {
                halt_unless_rejection(halt, &error);
                ContactSearch::Failed(row, error)
            }
        }
    }

    /// The mirror's answer instead of AmoCRM's: a webhook or reconciliation may have
    /// brought this phone in since the record was stored.
    async fn find_mirrored(&self, row: Contact, phone: Phone) -> ContactSearch {
        match self.contacts.find_by_phone(phone.as_e164()).await {
            Ok(Some(found)) if found.id != row.id && found.is_synced() => match found.amocrm_id {
                Some(id) => ContactSearch::Found(
                    row,
                    AmoContact {
                        id,
                        name: found.name,
                        phones: found.phone.into_iter().collect(),
                        updated_at: found.amo_updated_at,
                    },
                ),
                None => ContactSearch::Missing(row.clone(), new_contact(&row, phone)),
            },
            Ok(_) => ContactSearch::Missing(row.clone(), new_contact(&row, phone)),
            // Given back untouched: the next round looks again.
            Err(error) => {
                slog::warn!(self.logger, "could not look a phone up in the mirror";
                    "contact.id" => row.id, "error" => error.to_string());
                ContactSearch::Skipped(row)
            }
        }
    }

    async fn search_contact(&self, row: Contact, halt: &AtomicBool, search: bool) -> Plan {
        match self.find_contact(row, halt, search).await {
            ContactSearch::Found(row, existing) => Plan::ContactFound(row, existing),
            ContactSearch::Missing(row, new) => Plan::CreateContact(row, new),
            ContactSearch::Failed(row, error) => Plan::Failed(Held::contact(row.id), None, error),
            ContactSearch::Broken(row, why) => Plan::Broken(Held::contact(row.id), why),
            ContactSearch::Skipped(row) => Plan::Skipped(Held::contact(row.id), None),
        }
    }

    async fn search_lead(&self, item: LeadItem, halt: &AtomicBool, search: bool) -> Plan {
        let LeadItem { row, contact } = item;
        let contact_amocrm_id = match contact {
            LeadLink::Known(id) => id,
            LeadLink::Pending(contact) => match self.find_contact(contact, halt, search).await {
                ContactSearch::Found(contact, existing) => {
                    self.finish_contact(&contact, existing.id, &existing.name, false)
                        .await;
                    Some(existing.id)
                }
                // No lead can be linked to a contact AmoCRM does not have yet.
                ContactSearch::Missing(contact, new_contact) => {
                    let lead = new_lead(&row, None);
                    return Plan::CreateLeadWithContact(row, lead, contact, new_contact);
                }
                ContactSearch::Failed(contact, error) => {
                    let contact = Some(Held::contact(contact.id));
                    return Plan::Failed(Held::lead(row.id), contact, error);
                }
                ContactSearch::Broken(contact, why) => {
                    // The contact's own job buries it; the lead waits for it as before.
                    self.bury(Held::contact(contact.id), &why).await;
                    let error = AmoError::InvalidResponse(format!("its contact: {why}"));
                    return Plan::Failed(Held::lead(row.id), None, error);
                }
                ContactSearch::Skipped(contact) => {
                    let contact = Some(Held::contact(contact.id));
                    return Plan::Skipped(Held::lead(row.id), contact);
                }
            },
        };
        if self.stopping(halt) {
            return Plan::Skipped(Held::lead(row.id), None);
        }
        if !searched(search, row.sync_attempts) {
            // The mirror was asked when the lead was stored (`LeadRepository::claim`).
            let lead = new_lead(&row, contact_amocrm_id);
            return Plan::CreateLead(row, lead);
        }
        match self.amo.find_lead_by_name(&row.name).await {
            Ok(found) => match pick_lead(found, contact_amocrm_id) {
                Some(existing) => Plan::LeadFound(row, existing),
                None => {
                    let lead = new_lead(&row, contact_amocrm_id);
                    Plan::CreateLead(row, lead)
                }
            },
            Err(error) => {
                halt_unless_rejection(halt, &error);
                Plan::Failed(Held::lead(row.id), None, error)
            }
        }
    }

    async fn create_contacts(&self, batch: Vec<(Contact, NewAmoContact)>) {
        for chunk in batch.chunks(MAX_CONTACTS_PER_CREATE) {
            let news: Vec<NewAmoContact> = chunk.iter().map(|(_, new)| new.clone()).collect();
            let results = send_halving(&news, |part| async move {
                self.amo.create_contacts(&part).await
            })
            .await;
            for ((row, _), result) in chunk.iter().zip(results) {
                match result {
                    Created::Yes(id) => self.finish_contact(row, id, &row.name, true).await,
                    Created::Unanswered => {
                        self.fail(Held::contact(row.id), &unanswered()).await;
                    }
                    Created::Failed(error) => self.fail(Held::contact(row.id), &error).await,
                }
            }
        }
    }

    async fn create_leads(&self, batch: Vec<(Lead, NewAmoLead)>) {
        for chunk in batch.chunks(MAX_LEADS_PER_CREATE) {
            let news: Vec<NewAmoLead> = chunk.iter().map(|(_, new)| new.clone()).collect();
            let results = send_halving(
                &news,
                |part| async move { self.amo.create_leads(&part).await },
            )
            .await;
            for ((row, new), result) in chunk.iter().zip(results) {
                match result {
                    Created::Yes(id) => {
                        self.finish_lead(row, new.clone().into_created(id), true)
                            .await;
                    }
                    Created::Unanswered => self.fail(Held::lead(row.id), &unanswered()).await,
                    Created::Failed(error) => self.fail(Held::lead(row.id), &error).await,
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn create_leads_with_contacts(
        &self,
        batch: Vec<((Lead, Contact), (NewAmoLead, NewAmoContact))>,
    ) {
        for chunk in batch.chunks(MAX_LEADS_PER_CREATE) {
            let news: Vec<(NewAmoLead, NewAmoContact)> =
                chunk.iter().map(|(_, new)| new.clone()).collect();
            let results = send_halving(&news, |part| async move {
                self.amo.create_leads_with_contacts(&part).await
            })
            .await;
            for (((row, contact), (lead, _)), result) in chunk.iter().zip(results) {
                match result {
                    Created::Yes(CreatedWithContact {
                        lead_id,
                        contact_id,
                    }) => {
                        self.finish_contact(contact, contact_id, &contact.name, true)
                            .await;
                        let mut lead = lead.clone();
                        lead.contact_id = Some(contact_id);
                        self.finish_lead(row, lead.into_created(lead_id), true)
                            .await;
                    }
                    Created::Unanswered => {
                        self.fail(Held::lead(row.id), &unanswered()).await;
                        self.give_back(Held::contact(contact.id)).await;
                    }
                    Created::Failed(error) => {
                        self.fail(Held::lead(row.id), &error).await;
                        self.give_back(Held::contact(contact.id)).await;
                    }
                }
            }
        }
    }

    async fn finish_contact(&self, row: &Contact, amocrm_id: i64, name: &str, created: bool) {
        match self.contacts.finish_sync(row.id, amocrm_id, name).await {
            Ok(record) => slog::info!(self.logger, "contact synced";
                "contact.id" => record.id, "contact.amocrm_id" => amocrm_id, "amo.created" => created),
            // The lease lapses and the next round finds the AmoCRM record by its search.
            Err(error) => slog::error!(self.logger, "could not store a synced contact";
                "contact.id" => row.id, "contact.amocrm_id" => amocrm_id, "error" => error.to_string()),
        }
    }

    async fn finish_lead(&self, row: &Lead, amo: AmoLead, created: bool) {
        let amocrm_id = amo.id;
        match self.leads.finish_sync(row.id, amo).await {
            Ok(record) => slog::info!(self.logger, "lead synced";
                "lead.id" => record.id, "lead.amocrm_id" => amocrm_id, "amo.created" => created),
            Err(error) => slog::error!(self.logger, "could not store a synced lead";
                "lead.id" => row.id, "lead.amocrm_id" => amocrm_id, "error" => error.to_string()),
        }
    }

    /// Records the failure on the record and its job (backoff, or dead when refused).
    async fn fail(&self, record: Held, error: &AmoError) {
        let why = error.to_string();
        let (retry, permanent) = (self.settings.retry, error.is_rejection());
        let entity = record.entity_name();
        let _ = match record {
            Held::Contact(id) => {
                let record = self.contacts.record_failure(id, &why, retry, permanent);
                keep_pending(self.logger, entity, id, error.clone(), record).await
            }
            Held::Lead(id) => {
                let record = self.leads.record_failure(id, &why, retry, permanent);
                keep_pending(self.logger, entity, id, error.clone(), record).await
            }
        };
    }

    /// A record that cannot be sent as stored: its job is dead at once, visible to operators.
    async fn bury(&self, record: Held, why: &str) {
        let retry = self.settings.retry;
        let buried = match record {
            Held::Contact(id) => self.contacts.record_failure(id, why, retry, true).await,
            Held::Lead(id) => self.leads.record_failure(id, why, retry, true).await,
        };
        slog::error!(self.logger, "a stored record cannot be synced, its job is dead";
            "entity" => record.entity_name(), "record.id" => record.id(), "error" => why,
            "recorded" => buried.is_ok());
    }

    /// A contact brought along by a lead that failed: its own job tries it again.
    async fn give_back(&self, record: Held) {
        let released = match record {
            Held::Contact(id) => self.contacts.release(id).await,
            Held::Lead(id) => self.leads.release(id).await,
        };
        if let Err(error) = released {
            slog::warn!(self.logger, "could not release a lease; it lapses by itself";
                "record.id" => record.id(), "error" => error.to_string());
        }
    }
}

/// A refusal is about one record; anything else (429, 5xx, timeout, access) is about
/// AmoCRM, and will meet the rest of the round too.
fn halt_unless_rejection(halt: &AtomicBool, error: &AmoError) {
    if !error.is_rejection() {
        halt.store(true, Ordering::SeqCst);
    }
}

fn unanswered() -> AmoError {
    AmoError::InvalidResponse("AmoCRM's reply did not name this record".into())
}

fn new_contact(row: &Contact, phone: Phone) -> NewAmoContact {
    NewAmoContact {
        name: row.name.clone(),
        phone,
    }
}

fn new_lead(row: &Lead, contact_amocrm_id: Option<i64>) -> NewAmoLead {
    NewAmoLead {
        name: row.name.clone(),
        price: row.price,
        status_id: row.status_id,
        pipeline_id: row.pipeline_id,
        contact_id: contact_amocrm_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amo::MockAmoTransport;
    use crate::repositories::{MockContactRepository, MockLeadRepository};
    use crate::services::authority::tests::{all_facts, auto_with, lacking_one_fact};
    use crate::settings::DedupMode;
    use mockall::predicate::eq;

    fn at() -> chrono::NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .map(|d| d.naive_utc())
            .expect("ts")
    }

    fn contact(id: i64, phone: &str) -> Contact {
        Contact {
            id,
            amocrm_id: None,
            name: format!("Клиент {id}"),
            phone: Some(phone.into()),
            sync_status: "pending".into(),
            sync_attempts: 0,
            sync_error: None,
            sync_lease_until: Some(at()),
            amo_updated_at: None,
            deleted_at: None,
            created_at: at(),
            updated_at: at(),
        }
    }

    fn lead(id: i64, contact_id: Option<i64>) -> Lead {
        Lead {
            id,
            amocrm_id: None,
            name: format!("Сделка {id}"),
            price: Some(100),
            status_id: None,
            pipeline_id: None,
            contact_id,
            contact_amocrm_id: None,
            sync_status: "pending".into(),
            sync_attempts: 0,
            sync_error: None,
            sync_lease_until: Some(at()),
            amo_updated_at: None,
            deleted_at: None,
            created_at: at(),
            updated_at: at(),
        }
    }

    fn amo_contact(id: i64, phone: &str) -> AmoContact {
        AmoContact {
            id,
            name: "В AmoCRM".into(),
            phones: vec![phone.into()],
            updated_at: None,
        }
    }

    async fn run(
        amo: MockAmoTransport,
        contacts: MockContactRepository,
        leads: MockLeadRepository,
        round: Round,
    ) -> RoundReport {
        run_deciding(
            amo,
            contacts,
            leads,
            round,
            MirrorAuthority::fixed(DedupMode::Remote),
        )
        .await
    }

    async fn run_deciding(
        amo: MockAmoTransport,
        contacts: MockContactRepository,
        leads: MockLeadRepository,
        round: Round,
        authority: MirrorAuthority,
    ) -> RoundReport {
        let logger = Logger::root(slog::Discard, slog::o!());
        RoundRunner {
            amo: &amo,
            contacts: &contacts,
            leads: &leads,
            settings: SyncSettings::default(),
            authority: &authority,
            lifecycle: None,
            logger: &logger,
        }
        .run(round)
        .await
    }

    #[tokio::test]
    async fn contacts_missing_from_amocrm_are_created_in_one_request_and_found_ones_are_not() {
        let mut amo = MockAmoTransport::new();
        amo.expect_find_contact_by_phone().returning(|phone| {
            Ok(match phone.as_e164() {
                "+79160000002" => vec![amo_contact(500, "+7 916 000-00-02")],
                _ => vec![],
            })
        });
        amo.expect_create_contacts()
            .withf(|batch| {
                let phones: Vec<_> = batch.iter().map(|c| c.phone.as_e164()).collect();
                phones == ["+79160000001", "+79160000003"]
            })
            .times(1)
            .returning(|_| Ok(vec![Some(701), Some(703)]));
        let mut repo = MockContactRepository::new();
        for (id, amocrm_id) in [(1, 701), (2, 500), (3, 703)] {
            repo.expect_finish_sync()
                .withf(move |row, amo, _| (*row, *amo) == (id, amocrm_id))
                .times(1)
                .returning(move |row, _, _| Ok(contact(row, "+79160000000")));
        }
        let round = Round {
            contacts: (1..=3)
                .map(|id| contact(id, &format!("+7916000000{id}")))
                .collect(),
            leads: vec![],
        };
        run(amo, repo, MockLeadRepository::new(), round).await;
    }

    /// Lead 8 with its pending contact 9, new to AmoCRM: both go out in one
    /// `leads/complex` item. `searches`: contact searches allowed (finding nothing).
    async fn lead_with_new_contact(authority: MirrorAuthority, searches: usize) {
        let mut amo = MockAmoTransport::new();
        amo.expect_find_contact_by_phone()
            .times(searches)
            .returning(|_| Ok(vec![]));
        amo.expect_find_lead_by_name().never();
        amo.expect_create_contacts().never();
        amo.expect_create_leads_with_contacts()
            .withf(|items| {
                items.len() == 1
                    && items[0].0.name == "Сделка 8"
                    && items[0].1.phone.as_e164() == "+79160000009"
            })
            .times(1)
            .returning(|_| {
                Ok(vec![Some(CreatedWithContact {
                    lead_id: 80,
                    contact_id: 90,
                })])
            });
        let mut contacts = MockContactRepository::new();
        // Asked only instead of AmoCRM: it holds nothing but the pending row itself.
        contacts
            .expect_find_by_phone()
            .times(1 - searches)
            .returning(|_| Ok(Some(contact(9, "+79160000009"))));
        contacts
            .expect_finish_sync()
            .with(eq(9), eq(90), eq("Клиент 9"))
            .times(1)
            .returning(|_, _, _| Ok(contact(9, "+79160000009")));
        let mut leads = MockLeadRepository::new();
        leads
            .expect_finish_sync()
            .withf(|id, amo| *id == 8 && amo.id == 80 && amo.main_contact_id == Some(90))
            .times(1)
            .returning(|_, _| Ok(lead(8, Some(9))));
        let round = Round {
            contacts: vec![],
            leads: vec![LeadItem {
                row: lead(8, Some(9)),
                contact: LeadLink::Pending(contact(9, "+79160000009")),
            }],
        };
        run_deciding(amo, contacts, leads, round, authority).await;
    }

    #[tokio::test]
    async fn a_lead_whose_contact_is_not_in_amocrm_is_created_with_it_by_leads_complex() {
        lead_with_new_contact(MirrorAuthority::fixed(DedupMode::Remote), 1).await;
    }

    #[tokio::test]
    async fn a_failed_search_is_recorded_on_the_record_and_nothing_is_created() {
        let mut amo = MockAmoTransport::new();
        amo.expect_find_contact_by_phone()
            .returning(|_| Err(AmoError::Server { status: 502 }));
        amo.expect_create_contacts().never();
        let mut repo = MockContactRepository::new();
        repo.expect_record_failure()
            .withf(|id, _, _, permanent| *id == 4 && !permanent)
            .times(1)
            .returning(|_, _, _, _| Ok(false));
        let round = Round {
            contacts: vec![contact(4, "+79160000004")],
            leads: vec![],
        };
        run(amo, repo, MockLeadRepository::new(), round).await;
    }

    #[tokio::test]
    async fn a_rate_limited_search_halts_the_round_and_the_rest_is_skipped_not_failed() {
        let mut amo = MockAmoTransport::new();
        amo.expect_find_contact_by_phone()
            .times(1)
            .returning(|_| Err(AmoError::RateLimited { retry_after: None }));
        amo.expect_create_contacts().never();
        let mut repo = MockContactRepository::new();
        repo.expect_record_failure()
            .withf(|id, _, _, permanent| *id == 1 && !permanent)
            .times(1)
            .returning(|_, _, _, _| Ok(false));
        let round = Round {
            contacts: (1..=3)
                .map(|id| contact(id, &format!("+7916000000{id}")))
                .collect(),
            leads: vec![],
        };
        let report = run(amo, repo, MockLeadRepository::new(), round).await;
        assert!(report.halted);
        assert_eq!(report.skipped, vec![Held::contact(2), Held::contact(3)]);
    }

    #[tokio::test]
    async fn a_draining_service_starts_no_search_and_hands_every_record_back() {
        let amo = MockAmoTransport::new(); // any AmoCRM call would panic
        let (contacts, leads) = (MockContactRepository::new(), MockLeadRepository::new());
        let lifecycle = Lifecycle::default();
        lifecycle.start_draining();
        let logger = Logger::root(slog::Discard, slog::o!());
        let round = Round {
            contacts: vec![contact(1, "+79160000001")],
            leads: vec![LeadItem {
                row: lead(2, Some(3)),
                contact: LeadLink::Pending(contact(3, "+79160000003")),
            }],
        };
        let authority = MirrorAuthority::fixed(DedupMode::Remote);
        let report = RoundRunner {
            amo: &amo,
            contacts: &contacts,
            leads: &leads,
            settings: SyncSettings::default(),
            authority: &authority,
            lifecycle: Some(&lifecycle),
            logger: &logger,
        }
        .run(round)
        .await;
        let mut skipped = report.skipped;
        skipped.sort_by_key(|h| (h.entity_name(), h.id()));
        assert_eq!(
            skipped,
            vec![Held::contact(1), Held::contact(3), Held::lead(2)]
        );
        assert!(!report.halted);
    }

    /// Three new phones in one round; `searches` is how many AmoCRM searches may go
    /// out (finding nothing). Either way the three are created in one request.
    async fn round_of_new_phones(authority: MirrorAuthority, searches: usize) {
        let mut amo = MockAmoTransport::new();
        amo.expect_find_contact_by_phone()
            .times(searches)
            .returning(|_| Ok(vec![]));
        amo.expect_create_contacts()
            .withf(|batch| batch.len() == 3)
            .times(1)
            .returning(|_| Ok(vec![Some(701), Some(702), Some(703)]));
        let mut repo = MockContactRepository::new();
        // Only the mirror is asked when AmoCRM is not: a pending row of its own.
        repo.expect_find_by_phone()
            .times(3 - searches)
            .returning(|phone| {
                let id = phone[phone.len() - 1..].parse().unwrap_or(0);
                Ok(Some(contact(id, phone)))
            });
        repo.expect_finish_sync()
            .times(3)
            .returning(|row, _, _| Ok(contact(row, "+79160000000")));
        let round = Round {
            contacts: (1..=3)
                .map(|id| contact(id, &format!("+7916000000{id}")))
                .collect(),
            leads: vec![],
        };
        run_deciding(amo, repo, MockLeadRepository::new(), round, authority).await;
    }

    #[tokio::test]
    async fn an_authoritative_mirror_sends_new_contacts_straight_to_the_batched_create() {
        round_of_new_phones(auto_with(all_facts()), 0).await;
    }

    #[tokio::test]
    async fn without_an_authoritative_mirror_every_contact_is_searched_first() {
        for ages in lacking_one_fact() {
            round_of_new_phones(auto_with(ages), 3).await;
        }
    }

    #[tokio::test]
    async fn remote_mode_searches_every_contact_and_mirror_mode_none() {
        round_of_new_phones(MirrorAuthority::fixed(DedupMode::Remote), 3).await;
        round_of_new_phones(MirrorAuthority::fixed(DedupMode::Mirror), 0).await;
    }

    #[tokio::test]
    async fn a_phone_the_mirror_already_holds_is_linked_to_that_contact_not_created() {
        let mut amo = MockAmoTransport::new();
        amo.expect_find_contact_by_phone().never();
        amo.expect_create_contacts().never();
        let mut repo = MockContactRepository::new();
        repo.expect_find_by_phone().returning(|_| {
            Ok(Some(Contact {
                amocrm_id: Some(900),
                sync_status: "synced".into(),
                name: "Из вебхука".into(),
                ..contact(50, "+79160000001")
            }))
        });
        repo.expect_finish_sync()
            .with(eq(1), eq(900), eq("Из вебхука"))
            .times(1)
            .returning(|_, _, _| Ok(contact(50, "+79160000001")));
        let round = Round {
            contacts: vec![contact(1, "+79160000001")],
            leads: vec![],
        };
        let authority = MirrorAuthority::fixed(DedupMode::Mirror);
        run_deciding(amo, repo, MockLeadRepository::new(), round, authority).await;
    }

    #[tokio::test]
    async fn a_retried_record_is_searched_for_even_in_mirror_mode() {
        let mut amo = MockAmoTransport::new();
        amo.expect_find_contact_by_phone()
            .times(1)
            .returning(|_| Ok(vec![amo_contact(500, "+7 916 000-00-01")]));
        amo.expect_create_contacts().never();
        let mut repo = MockContactRepository::new();
        repo.expect_finish_sync()
            .with(eq(1), eq(500), eq("В AmoCRM"))
            .times(1)
            .returning(|_, _, _| Ok(contact(1, "+79160000001")));
        let round = Round {
            contacts: vec![Contact {
                sync_attempts: 2,
                ..contact(1, "+79160000001")
            }],
            leads: vec![],
        };
        let authority = MirrorAuthority::fixed(DedupMode::Mirror);
        run_deciding(amo, repo, MockLeadRepository::new(), round, authority).await;
    }

    #[tokio::test]
    async fn a_trusted_mirror_creates_a_lead_and_its_new_contact_without_any_search() {
        lead_with_new_contact(auto_with(all_facts()), 0).await;
    }
}
