//! One background sync round over many records at once. AmoCRM has no search for
//! several phones or names in one call, so each record is searched for on its own;
//! what is missing is created together: contacts 250 per `POST /contacts`, leads 50
//! per `POST /leads`, and leads that bring a contact not yet in AmoCRM 50 per
//! `leads/complex`, matched back by `request_id`. Every 50 records the searches have
//! cleared go out while the rest are still searched; the remainder follows the last
//! search. The leases of all records are renewed while the round runs.
//!
//! While rounds search, the worker's next round waits for this one's `Turn`, which
//! is passed on when only the last `SEARCHES_IN_FLIGHT` searches are left to start:
//! the next round is claimed and queues its searches at the rate limiter while this
//! one ends (its last searches, creates and writes), so the limiter never idles
//! between rounds.
//!
//! While the mirror is authoritative (`MirrorAuthority`) a record on its first attempt
//! is not searched for: a contact is looked up in the mirror by phone only, and what
//! is missing goes straight into the batched creates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use slog::Logger;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::lease_keeper::LeaseKeeper;
use crate::amo::{
    AmoContact, AmoError, AmoLead, AmoTransport, NewAmoContact, NewAmoLead, MAX_LEADS_PER_CREATE,
};
use crate::domain::Phone;
use crate::lifecycle::Lifecycle;
use crate::repositories::{
    Contact, ContactRepository, Entity, Lead, LeadRepository, Record, SyncRowRepository,
};
use crate::services::find_or_create::{pick_contact, pick_lead, SyncSettings};
use crate::services::mirror::authority::searched;
use crate::services::MirrorAuthority;

/// Searches in flight at once: enough to keep the rate limiter busy at any latency.
const SEARCHES_IN_FLIGHT: usize = 16;

/// Contacts cleared by their searches that are worth a create of their own while the
/// round goes on searching: AmoCRM's recommended batch. Each such create costs one
/// more call per 50 contacts (2 %), and saves them the wait for the round's end.
const CREATE_EARLY: usize = 50;

/// The right to claim a round and start its searches: one round at a time has it.
#[derive(Default)]
pub struct Turn(Mutex<Option<OwnedSemaphorePermit>>);

impl Turn {
    /// Waits for `turns` (a semaphore of one permit) when `take`, else holds nothing.
    pub async fn take(turns: &Arc<Semaphore>, take: bool) -> Turn {
        let permit = if take {
            Arc::clone(turns).acquire_owned().await.ok()
        } else {
            None
        };
        Turn(Mutex::new(permit))
    }

    /// Lets the next round start (also when the holder is dropped).
    pub fn pass(&self) {
        drop(self.0.lock().unwrap_or_else(PoisonError::into_inner).take());
    }

    #[cfg(test)]
    pub fn is_held(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// A round's searches, handed out one by one; passes the turn on as the last
/// `SEARCHES_IN_FLIGHT` are handed out, unless the round halted. (A named type, not
/// a closure, so the worker's future stays `Send`.)
struct PassingOn<'r, I> {
    searches: I,
    left: usize,
    turn: Option<&'r Turn>,
    halt: &'r AtomicBool,
}

impl<I: Iterator> Iterator for PassingOn<'_, I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let search = self.searches.next()?;
        // The next round's claim and first searches take a few seconds: started
        // now, they are at the limiter before this round's last searches are done.
        if self.left <= SEARCHES_IN_FLIGHT && !self.halt.load(Ordering::SeqCst) {
            if let Some(turn) = self.turn {
                turn.pass();
            }
        }
        self.left -= 1;
        Some(search)
    }
}

/// Records the searches found missing, waiting to be created together.
#[derive(Default)]
struct Cleared {
    contacts: Vec<(Contact, NewAmoContact)>,
    leads: Vec<(Lead, NewAmoLead)>,
    complex: Vec<((Lead, Contact), (NewAmoLead, NewAmoContact))>,
}

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
    Failed(Record, Option<Record>, AmoError),
    /// The stored record cannot be sent at all (e.g. its phone no longer parses).
    Broken(Record, String),
    /// Not searched: AmoCRM was failing for the searches before it.
    Skipped(Record, Option<Record>),
}

/// What a round leaves for the worker to do.
#[derive(Debug, Default)]
pub struct RoundReport {
    /// A search failed for a reason that is not about its record (429, 5xx, timeout,
    /// access refused): the rest of the round was not sent.
    pub halted: bool,
    /// Records not searched: still leased, their jobs untouched and not counted.
    pub skipped: Vec<Record>,
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
    pub rows: &'a dyn SyncRowRepository,
    pub settings: SyncSettings,
    /// Whether records are searched for in AmoCRM before they are created.
    pub authority: &'a MirrorAuthority,
    /// While the service drains, no new search starts: the rest is put back.
    pub lifecycle: Option<&'a Lifecycle>,
    /// Passed on once only the round's last searches are left to start, unless
    /// the round halted by then.
    pub turn: Option<&'a Turn>,
    pub logger: &'a Logger,
}

impl RoundRunner<'_> {
    /// Searches for every record, then creates what is missing; every record ends
    /// synced, pending with its failure recorded, untouched (lease lost), or skipped
    /// (reported, for the worker to put back).
    pub async fn run(&self, round: Round) -> RoundReport {
        let keeper = LeaseKeeper::new(self.rows, self.settings.lease);
        for row in &round.contacts {
            keeper.hold(Record::new(Entity::Contact, row.id), row.sync_lease_until);
        }
        for item in &round.leads {
            keeper.hold(
                Record::new(Entity::Lead, item.row.id),
                item.row.sync_lease_until,
            );
            if let LeadLink::Pending(contact) = &item.contact {
                keeper.hold(
                    Record::new(Entity::Contact, contact.id),
                    contact.sync_lease_until,
                );
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
        let searches = PassingOn {
            left: searches.len(),
            searches: searches.into_iter(),
            turn: self.turn,
            halt: &halt,
        };
        let mut plans = futures::stream::iter(searches).buffer_unordered(SEARCHES_IN_FLIGHT);
        // Creates of what the searches have cleared so far, sent while the rest are
        // searched: the first records of a long round reach AmoCRM seconds after their
        // search, not after the round's last one.
        let mut creating: FuturesUnordered<BoxFuture<'_, ()>> = FuturesUnordered::new();
        let mut cleared = Cleared::default();
        let mut report = RoundReport::default();
        loop {
            tokio::select! {
                biased;
                Some(()) = creating.next(), if !creating.is_empty() => {}
                plan = plans.next() => {
                    let Some(plan) = plan else { break };
                    self.take_plan(plan, keeper, &mut cleared, &mut report).await;
                    // Without searches the plans come at once: one full batch is cheaper.
                    if !search {
                        continue;
                    }
                    if cleared.contacts.len() >= CREATE_EARLY {
                        let batch = std::mem::take(&mut cleared.contacts);
                        creating.push(Box::pin(self.create_contacts(batch)));
                    }
                    if cleared.leads.len() >= MAX_LEADS_PER_CREATE {
                        let batch = std::mem::take(&mut cleared.leads);
                        creating.push(Box::pin(self.create_leads(batch)));
                    }
                    if cleared.complex.len() >= MAX_LEADS_PER_CREATE {
                        let batch = std::mem::take(&mut cleared.complex);
                        creating.push(Box::pin(self.create_leads_with_contacts(batch)));
                    }
                }
            }
        }
        while creating.next().await.is_some() {}
        report.halted = halt.load(Ordering::SeqCst);
        self.create_contacts(cleared.contacts).await;
        self.create_leads(cleared.leads).await;
        self.create_leads_with_contacts(cleared.complex).await;
        report
    }

    /// Settles what a search decided, or keeps a record that is to be created.
    async fn take_plan(
        &self,
        plan: Plan,
        keeper: &LeaseKeeper<'_>,
        cleared: &mut Cleared,
        report: &mut RoundReport,
    ) {
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
            Plan::CreateContact(row, _) if keeper.lost(Record::new(Entity::Contact, row.id)) => {}
            Plan::CreateLead(row, _) if keeper.lost(Record::new(Entity::Lead, row.id)) => {}
            Plan::CreateLeadWithContact(row, _, contact, _)
                if keeper.lost(Record::new(Entity::Lead, row.id))
                    || keeper.lost(Record::new(Entity::Contact, contact.id)) => {}
            Plan::CreateContact(row, new) => cleared.contacts.push((row, new)),
            Plan::CreateLead(row, new) => cleared.leads.push((row, new)),
            Plan::CreateLeadWithContact(row, lead, contact, new_contact) => {
                cleared.complex.push(((row, contact), (lead, new_contact)));
            }
        }
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
            ContactSearch::Failed(row, error) => {
                Plan::Failed(Record::new(Entity::Contact, row.id), None, error)
            }
            ContactSearch::Broken(row, why) => {
                Plan::Broken(Record::new(Entity::Contact, row.id), why)
            }
            ContactSearch::Skipped(row) => {
                Plan::Skipped(Record::new(Entity::Contact, row.id), None)
            }
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
                    let contact = Some(Record::new(Entity::Contact, contact.id));
                    return Plan::Failed(Record::new(Entity::Lead, row.id), contact, error);
                }
                ContactSearch::Broken(contact, why) => {
                    // The contact's own job buries it; the lead waits for it as before.
                    self.bury(Record::new(Entity::Contact, contact.id), &why)
                        .await;
                    let error = AmoError::InvalidResponse(format!("its contact: {why}"));
                    return Plan::Failed(Record::new(Entity::Lead, row.id), None, error);
                }
                ContactSearch::Skipped(contact) => {
                    let contact = Some(Record::new(Entity::Contact, contact.id));
                    return Plan::Skipped(Record::new(Entity::Lead, row.id), contact);
                }
            },
        };
        if self.stopping(halt) {
            return Plan::Skipped(Record::new(Entity::Lead, row.id), None);
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
                Plan::Failed(Record::new(Entity::Lead, row.id), None, error)
            }
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

mod creates;

#[cfg(test)]
mod tests;
