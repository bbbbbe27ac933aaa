//! The AmoCRM side: the `AmoTransport` role, its reqwest implementation, and the
//! wire shapes of API v4 as AmoCRM really sends them.

mod access;
mod error;
mod http;
mod limiter;
mod tokens;
pub mod wire;

pub use access::{AccessGuard, AmoAccess};
pub use error::{AmoError, ValidationIssue};
pub use http::{AmoClientConfig, HttpAmoTransport};
pub use limiter::RateLimiter;
pub use tokens::{OAuthClient, OAuthTokens, StaticToken, StoredTokens, TokenSource, TokenStore};

use async_trait::async_trait;

use crate::domain::{CatalogueEntity, CustomField, Phone, Pipeline, User};

/// A contact as amosync needs it from AmoCRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmoContact {
    pub id: i64,
    pub name: String,
    /// Raw PHONE values as managers typed them.
    pub phones: Vec<String>,
    pub updated_at: Option<i64>,
}

/// A lead as amosync needs it from AmoCRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmoLead {
    pub id: i64,
    pub name: String,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    /// AmoCRM ids of the linked contacts (present when asked `with=contacts`).
    pub contact_ids: Vec<i64>,
    /// The main contact, when AmoCRM marks one.
    pub main_contact_id: Option<i64>,
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAmoContact {
    pub name: String,
    pub phone: Phone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAmoLead {
    pub name: String,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    /// AmoCRM id of the contact to link as the main contact.
    pub contact_id: Option<i64>,
}

impl NewAmoLead {
    /// The lead as AmoCRM now holds it, once it answered with `id`.
    pub fn into_created(self, id: i64) -> AmoLead {
        AmoLead {
            id,
            name: self.name,
            price: self.price,
            status_id: self.status_id,
            pipeline_id: self.pipeline_id,
            contact_ids: self.contact_id.into_iter().collect(),
            main_contact_id: self.contact_id,
            updated_at: None,
        }
    }
}

/// Most contacts one create request may carry: AmoCRM refuses larger batches.
pub const MAX_CONTACTS_PER_CREATE: usize = 250;

/// Most leads one create request carries: the limit of `leads/complex`, and the
/// batch size AmoCRM recommends for plain creates.
pub const MAX_LEADS_PER_CREATE: usize = 50;

/// A lead created together with its new contact by `leads/complex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedWithContact {
    pub lead_id: i64,
    pub contact_id: i64,
}

/// Most ids one `filter[id][]` read asks for: AmoCRM's page size, so one page answers.
pub const MAX_IDS_PER_READ: usize = 250;

/// One page of a list, and whether AmoCRM announced another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmoPage<T> {
    pub items: Vec<T>,
    pub more: bool,
}

/// Which records a changes-since read walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmoEntity {
    Contacts,
    Leads,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AmoWebhook {
    pub id: i64,
    pub destination: String,
    pub settings: Vec<String>,
    pub disabled: bool,
}

/// Everything amosync asks of AmoCRM. Implementations own paging, status codes and
/// wire formats; callers get domain values or an `AmoError`.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait AmoTransport: Send + Sync {
    /// Every contact whose PHONE field really holds `phone`. AmoCRM's `query` is a
    /// full-text search with false positives; those are filtered out here.
    async fn find_contact_by_phone(&self, phone: &Phone) -> Result<Vec<AmoContact>, AmoError>;

    /// One contact by id; `Ok(None)` when AmoCRM has no such contact.
    async fn get_contact(&self, id: i64) -> Result<Option<AmoContact>, AmoError>;

    /// Every lead whose name equals `name` exactly, with its linked contacts.
    async fn find_lead_by_name(&self, name: &str) -> Result<Vec<AmoLead>, AmoError>;

    /// Creates a contact and returns its AmoCRM id.
    async fn create_contact(&self, contact: &NewAmoContact) -> Result<i64, AmoError>;

    /// Creates a lead (linked to its contact, if any) and returns its AmoCRM id.
    async fn create_lead(&self, lead: &NewAmoLead) -> Result<i64, AmoError>;

    /// Creates up to `MAX_CONTACTS_PER_CREATE` contacts in one request. The answer
    /// follows the input order: each contact's AmoCRM id, matched back by
    /// `request_id`, or `None` when the reply does not account for it (it may
    /// exist all the same, so whoever retries searches first).
    async fn create_contacts(
        &self,
        contacts: &[NewAmoContact],
    ) -> Result<Vec<Option<i64>>, AmoError>;

    /// Creates up to `MAX_LEADS_PER_CREATE` leads in one request, answered as
    /// `create_contacts` answers.
    async fn create_leads(&self, leads: &[NewAmoLead]) -> Result<Vec<Option<i64>>, AmoError>;

    /// `leads/complex`: up to `MAX_LEADS_PER_CREATE` leads, each created together
    /// with a new contact linked to it as the main contact.
    async fn create_leads_with_contacts(
        &self,
        items: &[(NewAmoLead, NewAmoContact)],
    ) -> Result<Vec<Option<CreatedWithContact>>, AmoError>;

    /// Whether more calls wait for the rate limiter than it lets through in a
    /// window: a new call would not be answered within a request's inline budget.
    fn is_congested(&self) -> bool;

    async fn subscribe_webhook(
        &self,
        destination: &str,
        settings: &[String],
    ) -> Result<AmoWebhook, AmoError>;

    async fn unsubscribe_webhook(&self, destination: &str) -> Result<(), AmoError>;

    async fn list_webhooks(&self) -> Result<Vec<AmoWebhook>, AmoError>;

    /// Whether AmoCRM currently refuses this account or token (then calls are held back).
    fn access(&self) -> AmoAccess;

    /// Page `page` (from 1) of the contacts changed at or after `since` (unix
    /// seconds), oldest change first, 250 per page.
    async fn contacts_changed_since(
        &self,
        since: i64,
        page: u32,
    ) -> Result<AmoPage<AmoContact>, AmoError>;

    /// Like `contacts_changed_since`, for leads (with their contacts).
    async fn leads_changed_since(
        &self,
        since: i64,
        page: u32,
    ) -> Result<AmoPage<AmoLead>, AmoError>;

    /// The contacts with these ids, read `MAX_IDS_PER_READ` at a time
    /// (`GET /api/v4/contacts?filter[id][]=…`). Ids AmoCRM no longer has (deleted,
    /// merged away) are simply absent from the answer.
    async fn contacts_by_ids(&self, ids: &[i64]) -> Result<Vec<AmoContact>, AmoError>;

    /// Like `contacts_by_ids`, for leads (with their contacts).
    async fn leads_by_ids(&self, ids: &[i64]) -> Result<Vec<AmoLead>, AmoError>;

    /// One cheap read, to learn whether AmoCRM accepts us (again).
    async fn probe(&self) -> Result<(), AmoError>;

    /// Every custom field of `entity` (`GET /api/v4/{entity}/custom_fields`, all pages),
    /// with its type and options.
    async fn custom_fields(&self, entity: CatalogueEntity) -> Result<Vec<CustomField>, AmoError>;

    /// The lead pipelines with their statuses (`GET /api/v4/leads/pipelines`).
    async fn pipelines(&self) -> Result<Vec<Pipeline>, AmoError>;

    /// The account's users (`GET /api/v4/users`, all pages). Only an admin's token may
    /// read them: `AmoError::Forbidden` otherwise, and other calls go on as before.
    async fn users(&self) -> Result<Vec<User>, AmoError>;
}

#[cfg(test)]
impl MockAmoTransport {
    /// A mock whose rate limiter is free; every AmoCRM call must still be expected.
    pub fn uncongested() -> Self {
        let mut amo = MockAmoTransport::new();
        amo.expect_is_congested().returning(|| false);
        amo
    }
}
