//! A fake AmoCRM (Kommo) account on an HTTP port, for integration tests and local runs.
//!
//! It behaves as AmoCRM documents and is seen to behave: the OAuth token endpoint with
//! single-use refresh tokens; a bearer check with the 401 problem+json body; a sliding
//! one-second rate limit answering a non-JSON 429 and optionally a sticky nginx 403; contacts
//! and leads with `limit` clamped to 250, **204 with an empty body** for an empty page (also the
//! page behind the `next` link a full last page carries), no total count, `query` as a
//! case-insensitive substring over names and every custom-field value (so a payment-code note
//! matches a phone search, as AmoCRM's false positives do), `filter`/`order`, batch creates and
//! updates that fail as a whole with `validation-errors`, complex leads and links; the
//! account's catalogue (custom fields, pipelines with statuses, users); the webhooks API; and
//! a webhook emitter that POSTs form bodies in the api/v2 layout with AmoCRM's timeout, retry
//! and disable rules. Operators drive it through `/_fake/` routes or the methods here.
//!
//! The state lock is never held across an await; webhook deliveries run on their own tasks.

mod admin;
mod catalogue;
mod companies;
mod config;
mod emitter;
mod events;
mod input;
mod limits;
mod links;
mod oauth;
mod params;
mod payload;
mod records;
mod routes;
mod state;
mod tokens;
mod webhooks;
mod wire;
mod writes;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;

pub use companies::NoteTarget;
pub use config::FakeConfig;
pub use events::Delivery;
use records::{plain_phones, Contact, Lead, DEFAULT_PIPELINE_ID, DEFAULT_STATUS_ID};
pub use state::LeadPatch;
use state::{Shared, State};

/// A running fake; dropping it stops the server and any delivery in flight.
pub struct FakeAmo {
    base_url: String,
    shared: Arc<Shared>,
    handle: ServerHandle,
    server: JoinHandle<()>,
    emitter: Option<JoinHandle<()>>,
}

#[derive(Clone, Debug)]
pub struct FakeContact {
    pub id: i64,
    pub name: String,
    pub phones: Vec<String>,
    pub note: Option<String>,
}

#[derive(Clone, Debug)]
pub struct FakeLead {
    pub id: i64,
    pub name: String,
    pub price: Option<i64>,
    pub status_id: i64,
    pub pipeline_id: i64,
    pub contact_ids: Vec<i64>,
    pub updated_at: i64,
}

impl FakeAmo {
    pub const TOKEN: &'static str = config::DEFAULT_TOKEN;

    /// Binds 127.0.0.1:0 with the test defaults and serves on the current tokio runtime.
    pub async fn start() -> FakeAmo {
        FakeAmo::start_with(FakeConfig::default()).await
    }

    pub async fn start_with(config: FakeConfig) -> FakeAmo {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let fake = FakeAmo::bind(config, loopback).await;
        fake.expect("bind the fake AmoCRM")
    }

    /// Serves on `addr` on the current tokio runtime; the webhook emitter runs there too.
    pub async fn bind(config: FakeConfig, addr: SocketAddr) -> io::Result<FakeAmo> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let host = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let base_url = format!("http://{}", SocketAddr::new(host, local.port()));
        let (events, inbox) = match config.webhooks_enabled {
            true => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let state = State::new(&config, base_url.clone(), events);
        let shared = Arc::new(Shared {
            config,
            base_url: base_url.clone(),
            state: Mutex::new(state),
        });
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(8 << 20))
                .default_service(web::to(routes::dispatch))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        let server = tokio::spawn(async move {
            let _ = server.await;
        });
        let emitter = inbox.map(|rx| emitter::spawn(shared.clone(), rx));
        Ok(FakeAmo {
            base_url,
            shared,
            handle,
            server,
            emitter,
        })
    }

    /// Stops taking connections and lets requests in flight finish.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }

    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn config(&self) -> &FakeConfig {
        &self.shared.config
    }

    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// Adds a custom field (a user field, without a code) to `entity` (`contacts`,
    /// `leads` or `companies`), as an admin would in AmoCRM; answers its id.
    pub fn add_custom_field(&self, entity: &str, name: &str, field_type: &str) -> i64 {
        let entity = match entity {
            "leads" => "leads",
            "companies" => "companies",
            _ => "contacts",
        };
        self.shared
            .lock()
            .catalogue
            .add_field(entity, name, field_type)
    }

    /// Deletes a custom field of any entity; whether there was one.
    pub fn remove_custom_field(&self, id: i64) -> bool {
        self.shared.lock().catalogue.remove_field(id)
    }

    /// `GET /users` answers 403, as AmoCRM does to a token that is not an admin's.
    pub fn forbid_users(&self, forbidden: bool) {
        self.shared.lock().catalogue.users_forbidden = forbidden;
    }

    /// Every `/api/v4` call answers this status, as AmoCRM would send it, until `None`.
    pub fn fail_with(&self, status: Option<u16>) {
        self.shared.lock().fail = status;
    }

    /// Every OAuth access and refresh token this fake has issued.
    pub fn issued_oauth_tokens(&self) -> Vec<String> {
        self.shared.lock().tokens.issued()
    }

    /// Every `/api/v4` write (POST, PATCH, DELETE) answers 400 with `problem` as its
    /// body, until `None`: AmoCRM refusing a request, in whatever words a test needs.
    pub fn reject_writes_with(&self, problem: Option<serde_json::Value>) {
        self.shared.lock().reject_writes = problem.map(|p| p.to_string());
    }

    /// Seeds a contact; no webhook hears of it.
    pub fn add_contact(&self, name: &str, phones: &[&str]) -> i64 {
        self.seed_contact(name, phones, None)
    }

    pub fn add_contact_with_note(&self, name: &str, phones: &[&str], note: &str) -> i64 {
        self.seed_contact(name, phones, Some(note.to_owned()))
    }

    fn seed_contact(&self, name: &str, phones: &[&str], note: Option<String>) -> i64 {
        self.shared.lock().insert_contact(Contact {
            name: name.to_owned(),
            phones: plain_phones(phones),
            note,
            ..Contact::default()
        })
    }

    /// Seeds a lead; the first contact id is the main contact. No webhook hears of it.
    pub fn add_lead(&self, name: &str, contact_ids: &[i64]) -> i64 {
        self.shared.lock().insert_lead(new_lead(name, contact_ids))
    }

    /// Creates a contact as a user in AmoCRM would, firing `add_contact`.
    pub fn create_contact(&self, name: &str, phones: &[&str]) -> i64 {
        self.shared.lock().create_contact(Contact {
            name: name.to_owned(),
            phones: plain_phones(phones),
            ..Contact::default()
        })
    }

    /// Changes the name and/or replaces the phones, firing `update_contact`; `false` when there
    /// is no such live contact.
    pub fn update_contact(&self, id: i64, name: Option<&str>, phones: Option<&[&str]>) -> bool {
        let (name, phones) = (name.map(str::to_owned), phones.map(plain_phones));
        let mut state = self.shared.lock();
        state.update_contact(id, name, phones, None).is_some()
    }

    /// Fires `delete_contact`; `false` when there is no such live contact.
    pub fn delete_contact(&self, id: i64) -> bool {
        self.shared.lock().set_contact_deleted(id, true)
    }

    /// Fires `restore_contact`; `false` when there is no such deleted contact.
    pub fn restore_contact(&self, id: i64) -> bool {
        self.shared.lock().set_contact_deleted(id, false)
    }

    /// Creates a lead as a user would, firing `add_lead`.
    pub fn create_lead(&self, name: &str, contact_ids: &[i64]) -> i64 {
        self.shared.lock().create_lead(new_lead(name, contact_ids))
    }

    /// Fires `update_lead`, and `status_lead` when the status or pipeline changes.
    pub fn update_lead(&self, id: i64, patch: LeadPatch) -> bool {
        self.shared.lock().update_lead(id, patch, None).is_some()
    }

    pub fn update_lead_status(&self, id: i64, status_id: i64) -> bool {
        let patch = LeadPatch {
            status_id: Some(status_id),
            ..LeadPatch::default()
        };
        self.update_lead(id, patch)
    }

    pub fn delete_lead(&self, id: i64) -> bool {
        self.shared.lock().set_lead_deleted(id, true)
    }

    pub fn restore_lead(&self, id: i64) -> bool {
        self.shared.lock().set_lead_deleted(id, false)
    }

    /// Creates a company as a user would, firing `add_company` (sent under `contacts`).
    pub fn create_company(&self, name: &str) -> i64 {
        self.shared.lock().create_company(name.to_owned())
    }

    /// Fires `update_company`; `false` when there is no such live company.
    pub fn rename_company(&self, id: i64, name: &str) -> bool {
        self.shared.lock().rename_company(id, name.to_owned())
    }

    /// Fires `delete_company` (`true`) or `restore_company` (`false`).
    pub fn set_company_deleted(&self, id: i64, deleted: bool) -> bool {
        self.shared.lock().set_company_deleted(id, deleted)
    }

    /// Adds a note to a contact or lead, firing `note_contact` / `note_lead`.
    pub fn add_note(&self, target: NoteTarget, text: &str) -> Option<i64> {
        self.shared.lock().add_note(target, text)
    }

    /// Live contacts, in id order.
    pub fn contacts(&self) -> Vec<FakeContact> {
        let snapshot = |c: &Contact| FakeContact {
            id: c.id,
            name: c.name.clone(),
            phones: c.phones.iter().map(|(v, _)| v.clone()).collect(),
            note: c.note.clone(),
        };
        let state = self.shared.lock();
        state
            .contacts
            .iter()
            .filter(|c| !c.deleted)
            .map(snapshot)
            .collect()
    }

    /// Live leads, in id order.
    pub fn leads(&self) -> Vec<FakeLead> {
        let snapshot = |l: &Lead| FakeLead {
            id: l.id,
            name: l.name.clone(),
            price: l.price,
            status_id: l.status_id,
            pipeline_id: l.pipeline_id,
            contact_ids: l.contact_ids.clone(),
            updated_at: l.updated_at,
        };
        let state = self.shared.lock();
        state
            .leads
            .iter()
            .filter(|l| !l.deleted)
            .map(snapshot)
            .collect()
    }

    /// (destination, settings) of every registered webhook.
    pub fn webhooks(&self) -> Vec<(String, Vec<String>)> {
        let state = self.shared.lock();
        let hooks = state.webhooks.iter();
        hooks
            .map(|w| (w.destination.clone(), w.settings.clone()))
            .collect()
    }

    /// Destinations the disable rule has switched off.
    pub fn disabled_webhooks(&self) -> Vec<String> {
        let state = self.shared.lock();
        let disabled = state.webhooks.iter().filter(|w| w.disabled);
        disabled.map(|w| w.destination.clone()).collect()
    }

    /// Every delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.iter().cloned().collect()
    }

    /// Contacts created through the API (plain and complex creates).
    pub fn contact_creates(&self) -> usize {
        self.shared.lock().contact_creates
    }

    pub fn lead_creates(&self) -> usize {
        self.shared.lock().lead_creates
    }

    /// `POST` requests to the create endpoints, however many items each carried.
    pub fn create_requests(&self) -> usize {
        self.shared.lock().create_requests
    }

    /// Searches (`GET /contacts` or `/leads` with `query`) that got past the limits.
    pub fn searches(&self) -> usize {
        self.shared.lock().searches
    }

    /// Calls that reached `/api/v4`, refused ones included.
    pub fn requests(&self) -> usize {
        self.shared.lock().requests
    }

    /// Successful `refresh_token` grants.
    pub fn token_refreshes(&self) -> usize {
        self.shared.lock().tokens.refreshes
    }

    /// A single-use authorization code, as if a user had just approved the integration.
    pub fn issue_auth_code(&self) -> String {
        self.shared.lock().tokens.issue_code()
    }

    /// The most `/api/v4` calls that arrived within any one second, 429s included, so it
    /// shows how fast a client called, not how many calls were let through.
    pub fn max_requests_in_one_second(&self) -> usize {
        self.shared.lock().limiter.max_in_one_second()
    }

    /// When each `/api/v4` call arrived, refused ones included, oldest first (the
    /// newest 100,000): how evenly a client used its rate, seen from AmoCRM's side.
    pub fn api_arrivals(&self) -> Vec<std::time::Instant> {
        self.shared.lock().arrivals.iter().copied().collect()
    }

    /// (first phone as sent, when the call that created it arrived) of each contact
    /// created through the API (the newest 100,000).
    pub fn contact_arrivals(&self) -> Vec<(String, std::time::Instant)> {
        self.shared
            .lock()
            .contact_arrivals
            .iter()
            .cloned()
            .collect()
    }

    /// Calls answered 429 by the rate limit (injected failures are not counted).
    pub fn rate_limited(&self) -> usize {
        self.shared.lock().limiter.rate_limited()
    }

    /// Whether repeated 429s got the account blocked.
    pub fn is_blocked(&self) -> bool {
        self.shared.lock().limiter.is_blocked()
    }

    pub fn unblock(&self) {
        self.shared.lock().limiter.unblock();
    }
}

fn new_lead(name: &str, contact_ids: &[i64]) -> Lead {
    Lead {
        name: name.to_owned(),
        status_id: DEFAULT_STATUS_ID,
        pipeline_id: DEFAULT_PIPELINE_ID,
        contact_ids: contact_ids.to_vec(),
        ..Lead::default()
    }
}

impl Drop for FakeAmo {
    fn drop(&mut self) {
        // `stop` sends its command at once; the returned future only awaits completion.
        drop(self.handle.stop(false));
        self.server.abort();
        if let Some(emitter) = &self.emitter {
            emitter.abort();
        }
    }
}
