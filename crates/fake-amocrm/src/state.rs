//! The account's data behind one lock: contacts, leads, webhooks, tokens and counters.
//!
//! Every change goes through the methods here, so each one bumps `updated_at` and queues its
//! webhook events in one place. Nothing is ever removed: AmoCRM deletes are soft, and ids follow
//! the row count.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::catalogue::Catalogue;
use crate::config::FakeConfig;
use crate::events::{Action, Delivery, Event};
use crate::limits::Limiter;
use crate::payload;
use crate::records::{now, Company, Contact, Lead, LOST_STATUS_ID, WON_STATUS_ID};
use crate::tokens::Tokens;

/// The newest deliveries kept for inspection; older ones are forgotten.
const KEPT_DELIVERIES: usize = 10_000;
/// The newest call arrivals and contact creations kept for timing; older ones are forgotten.
const KEPT_ARRIVALS: usize = 100_000;

/// What the server tasks share: the fixed configuration and the locked state.
pub(crate) struct Shared {
    pub config: FakeConfig,
    pub base_url: String,
    pub state: Mutex<State>,
}

impl Shared {
    /// A poisoned lock still holds consistent data: no method panics halfway through a change.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) struct Webhook {
    pub id: i64,
    pub destination: String,
    pub settings: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub disabled: bool,
    /// When recent deliveries failed, for the two-hour disable rule.
    pub failures: VecDeque<Instant>,
}

/// Changes to a lead; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LeadPatch {
    pub name: Option<String>,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    /// Replaces the linked contacts; the first one is the main contact.
    pub contact_ids: Option<Vec<i64>>,
}

pub(crate) struct State {
    pub base_url: String,
    pub account_id: i64,
    pub latency: Duration,
    pub fail: Option<u16>,
    /// Writes (anything but GET) answer 400 with this problem body.
    pub reject_writes: Option<String>,
    pub contacts: Vec<Contact>,
    pub leads: Vec<Lead>,
    pub webhooks: Vec<Webhook>,
    pub companies: Vec<Company>,
    /// Notes added so far (they are only ever announced, never listed).
    pub notes: usize,
    pub webhook_seq: i64,
    pub contact_creates: usize,
    pub lead_creates: usize,
    /// `POST` requests to the create endpoints (contacts, leads, leads/complex).
    pub create_requests: usize,
    /// `GET /contacts` and `GET /leads` with a `query`: searches, not walks.
    pub searches: usize,
    pub requests: usize,
    pub tokens: Tokens,
    pub limiter: Limiter,
    pub deliveries: VecDeque<Delivery>,
    /// When each `/api/v4` call arrived (before latency and limits), oldest first.
    pub arrivals: VecDeque<Instant>,
    /// When the call being routed arrived: what a create records for its contacts.
    pub arrived: Instant,
    /// (first phone as sent, arrival of the call that created it) per contact created.
    pub contact_arrivals: VecDeque<(String, Instant)>,
    /// Where change events go; `None` when the webhook emitter is off.
    pub events: Option<UnboundedSender<Event>>,
    /// Custom fields, pipelines and users.
    pub catalogue: Catalogue,
}

/// A change time that never repeats the previous one, so `updated_at` always moves forward.
fn bump(previous: i64) -> i64 {
    now().max(previous + 1)
}

impl State {
    pub fn new(
        config: &FakeConfig,
        base_url: String,
        events: Option<UnboundedSender<Event>>,
    ) -> Self {
        State {
            base_url,
            account_id: config.account_id,
            latency: config.latency,
            fail: None,
            reject_writes: None,
            contacts: Vec::new(),
            leads: Vec::new(),
            webhooks: Vec::new(),
            companies: Vec::new(),
            notes: 0,
            webhook_seq: 0,
            contact_creates: 0,
            lead_creates: 0,
            create_requests: 0,
            searches: 0,
            requests: 0,
            tokens: Tokens::new(&config.auth_codes),
            limiter: Limiter::default(),
            deliveries: VecDeque::new(),
            arrivals: VecDeque::new(),
            arrived: Instant::now(),
            contact_arrivals: VecDeque::new(),
            events,
            catalogue: Catalogue::seeded(),
        }
    }

    /// Notes a call's arrival at `/api/v4`.
    pub fn record_arrival(&mut self, at: Instant) {
        if self.arrivals.len() == KEPT_ARRIVALS {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(at);
    }

    /// Notes that the call being routed created `contact` (by its first phone).
    pub fn record_contact_arrival(&mut self, contact: &Contact) {
        if self.contact_arrivals.len() == KEPT_ARRIVALS {
            self.contact_arrivals.pop_front();
        }
        let phone = contact
            .phones
            .first()
            .map(|p| p.0.clone())
            .unwrap_or_default();
        self.contact_arrivals.push_back((phone, self.arrived));
    }

    pub fn contact(&self, id: i64) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.id == id && !c.deleted)
    }

    pub fn lead(&self, id: i64) -> Option<&Lead> {
        self.leads.iter().find(|l| l.id == id && !l.deleted)
    }

    fn contact_index(&self, id: i64, deleted: bool) -> Option<usize> {
        self.contacts
            .iter()
            .position(|c| c.id == id && c.deleted == deleted)
    }

    fn lead_index(&self, id: i64, deleted: bool) -> Option<usize> {
        self.leads
            .iter()
            .position(|l| l.id == id && l.deleted == deleted)
    }

    /// Ids of the live leads linked to a contact.
    pub fn leads_of(&self, contact_id: i64) -> Vec<i64> {
        let linked = |l: &&Lead| !l.deleted && l.contact_ids.contains(&contact_id);
        self.leads.iter().filter(linked).map(|l| l.id).collect()
    }

    /// Stores a contact without telling any webhook, as seeding does.
    pub fn insert_contact(&mut self, mut contact: Contact) -> i64 {
        contact.id = 1_000_001 + self.contacts.len() as i64;
        (contact.created_at, contact.updated_at) = (now(), now());
        let id = contact.id;
        self.contacts.push(contact);
        id
    }

    pub fn insert_lead(&mut self, mut lead: Lead) -> i64 {
        lead.id = 5_000_001 + self.leads.len() as i64;
        (lead.created_at, lead.updated_at) = (now(), now());
        let id = lead.id;
        self.leads.push(lead);
        id
    }

    pub fn create_contact(&mut self, contact: Contact) -> i64 {
        let id = self.insert_contact(contact);
        self.notify_contact(Action::Add, id);
        id
    }

    pub fn create_lead(&mut self, lead: Lead) -> i64 {
        let id = self.insert_lead(lead);
        self.notify_lead(Action::Add, id, None);
        id
    }

    /// Applies the given changes; `None` when there is no such live contact.
    pub fn update_contact(
        &mut self,
        id: i64,
        name: Option<String>,
        phones: Option<Vec<(String, usize)>>,
        note: Option<Option<String>>,
    ) -> Option<i64> {
        let at = self.contact_index(id, false)?;
        let contact = &mut self.contacts[at];
        if let Some(name) = name {
            contact.name = name;
        }
        if let Some(phones) = phones {
            contact.phones = phones;
        }
        if let Some(note) = note {
            contact.note = note;
        }
        contact.updated_at = bump(contact.updated_at);
        let updated_at = contact.updated_at;
        self.notify_contact(Action::Update, id);
        Some(updated_at)
    }

    /// Deletes or restores a contact; `false` when it is not in the opposite state.
    pub fn set_contact_deleted(&mut self, id: i64, deleted: bool) -> bool {
        let Some(at) = self.contact_index(id, !deleted) else {
            return false;
        };
        let contact = &mut self.contacts[at];
        (contact.deleted, contact.updated_at) = (deleted, bump(contact.updated_at));
        let action = if deleted {
            Action::Delete
        } else {
            Action::Restore
        };
        self.notify_contact(action, id);
        true
    }

    /// Applies the changes; a new status or pipeline also fires the status event.
    pub fn update_lead(
        &mut self,
        id: i64,
        patch: LeadPatch,
        comment: Option<Option<String>>,
    ) -> Option<i64> {
        let at = self.lead_index(id, false)?;
        let lead = &mut self.leads[at];
        let old = (lead.status_id, lead.pipeline_id);
        if let Some(name) = patch.name {
            lead.name = name;
        }
        if let Some(contact_ids) = patch.contact_ids {
            lead.contact_ids = contact_ids;
        }
        if let Some(comment) = comment {
            lead.comment = comment;
        }
        lead.price = patch.price.or(lead.price);
        lead.status_id = patch.status_id.unwrap_or(lead.status_id);
        lead.pipeline_id = patch.pipeline_id.unwrap_or(lead.pipeline_id);
        lead.updated_at = bump(lead.updated_at);
        let closed = matches!(lead.status_id, WON_STATUS_ID | LOST_STATUS_ID);
        lead.closed_at = closed.then(|| lead.closed_at.unwrap_or(lead.updated_at));
        let (updated_at, moved) = (lead.updated_at, old != (lead.status_id, lead.pipeline_id));
        self.notify_lead(Action::Update, id, None);
        if moved {
            self.notify_lead(Action::Status, id, Some(old));
        }
        Some(updated_at)
    }

    pub fn set_lead_deleted(&mut self, id: i64, deleted: bool) -> bool {
        let Some(at) = self.lead_index(id, !deleted) else {
            return false;
        };
        let lead = &mut self.leads[at];
        (lead.deleted, lead.updated_at) = (deleted, bump(lead.updated_at));
        let action = if deleted {
            Action::Delete
        } else {
            Action::Restore
        };
        self.notify_lead(action, id, None);
        true
    }

    /// Links a contact to a lead (`main` moves it to the front), or unlinks it.
    pub fn relink(&mut self, lead_id: i64, contact_id: i64, link: Option<bool>) -> Option<i64> {
        let at = self.lead_index(lead_id, false)?;
        let lead = &mut self.leads[at];
        lead.contact_ids.retain(|id| *id != contact_id);
        match link {
            Some(true) => lead.contact_ids.insert(0, contact_id),
            Some(false) => lead.contact_ids.push(contact_id),
            None => {}
        }
        lead.updated_at = bump(lead.updated_at);
        let updated_at = lead.updated_at;
        self.notify_lead(Action::Update, lead_id, None);
        Some(updated_at)
    }

    pub fn notify_contact(&mut self, action: Action, id: i64) {
        let Some(tx) = &self.events else { return };
        let fields = match (action, self.contacts.iter().find(|c| c.id == id)) {
            (Action::Delete, _) | (_, None) => vec![("[id]".to_owned(), id.to_string())],
            (_, Some(c)) => payload::contact_fields(c, &self.leads_of(id), self.account_id),
        };
        let _ = tx.send(Event::new("contacts", action, fields));
    }

    /// Queues an event for the emitter, when it runs.
    pub fn send(&self, event: Event) {
        if let Some(tx) = &self.events {
            // A closed channel means the fake is shutting down; the event has nowhere to go.
            let _ = tx.send(event);
        }
    }

    pub fn notify_lead(&mut self, action: Action, id: i64, old: Option<(i64, i64)>) {
        let Some(tx) = &self.events else { return };
        let fields = match (action, self.leads.iter().find(|l| l.id == id)) {
            (Action::Delete, _) | (_, None) => vec![("[id]".to_owned(), id.to_string())],
            (_, Some(l)) => payload::lead_fields(l, old, self.account_id),
        };
        let _ = tx.send(Event::new("leads", action, fields));
    }

    pub fn record_delivery(&mut self, delivery: Delivery) {
        if self.deliveries.len() >= KEPT_DELIVERIES {
            self.deliveries.pop_front();
        }
        self.deliveries.push_back(delivery);
    }
}
