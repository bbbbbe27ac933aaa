//! Contacts: one person per phone. Found in the mirror, then in AmoCRM by phone
//! (unless the mirror is authoritative), else created in AmoCRM; the flight
//! (`Flight`) runs the protocol, these are the contact's rules and service.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use slog::Logger;

use super::entity::{EntityRules, Rows};
use super::flight::{panicked, Outcome, Rules};
use super::{Flight, Saved, SyncSettings};
use crate::amo::{AmoContact, AmoError, AmoTransport, NewAmoContact, MAX_CONTACTS_PER_CREATE};
use crate::concurrency::{BatchLimits, Batcher, SingleFlight};
use crate::domain::{AmoId, EntityName, LocalId, Phone};
use crate::repositories::{
    Claim, Contact, ContactFilter, ContactRepository, NewContact, RepoError, SyncRowRepository,
};
use crate::services::{MirrorAuthority, ServiceError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactInput {
    pub name: EntityName,
    pub phone: Phone,
}

pub struct ContactService {
    repo: Arc<dyn ContactRepository>,
    amo: Arc<dyn AmoTransport>,
    flight: Flight,
    flights: SingleFlight<Outcome<Contact>>,
    authority: Arc<MirrorAuthority>,
    /// Until when submissions are queued even though AmoCRM is not congested (see
    /// `BURST_QUIET`).
    burst_until: Mutex<Option<Instant>>,
    /// Flights creating without a search right now.
    creating: Arc<AtomicUsize>,
    /// Flights searching AmoCRM (then creating) right now.
    searching: Arc<AtomicUsize>,
    /// `GET /contacts/{id}` calls arriving together share one query.
    by_id: Batcher<i64, Option<Contact>, RepoError>,
    /// So do lists filtered by phone (`GET /contacts?phone=…`).
    by_phone: Batcher<String, Vec<Contact>, RepoError>,
}

/// Reads by id or phone: up to 100 keys per query, four queries at once (of the
/// pool's connections, the rest stay free for writes and the workers).
const READS: BatchLimits = BatchLimits {
    max_items: 100,
    max_weight: usize::MAX,
    runners: 4,
    power_of_two_below: 0,
};

/// One query for a batch of phones: every row of each, in id order.
async fn rows_by_phone(
    repo: Arc<dyn ContactRepository>,
    phones: Vec<String>,
) -> Result<Vec<Vec<Contact>>, RepoError> {
    let mut found: HashMap<String, Vec<Contact>> = HashMap::new();
    for (phone, row) in repo.with_phones(phones.clone()).await? {
        found.entry(phone).or_default().push(row);
    }
    Ok(phones
        .iter()
        .map(|phone| found.get(phone).cloned().unwrap_or_default())
        .collect())
}

/// One query for a batch of ids; the answers in the order of `ids`.
async fn rows_by_id(
    repo: Arc<dyn ContactRepository>,
    ids: Vec<i64>,
) -> Result<Vec<Option<Contact>>, RepoError> {
    let found: HashMap<i64, Contact> = repo
        .get_many(ids.clone())
        .await?
        .into_iter()
        .map(|row| (row.id, row))
        .collect();
    Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
}

/// Creates without a search in flight at once before a burst is assumed: a wave of
/// simultaneous submissions arrives before the rate limiter has anyone waiting.
const INLINE_CREATES: usize = 2;

/// Searching flights at once before a burst is assumed. A second new phone while one
/// is being searched joins the worker's batch: the searches cost the same either way,
/// but submissions that arrive together then share one create instead of each making
/// its own (and, searches queueing at AmoCRM's rate, most would outlast the inline
/// budget anyway).
const INLINE_SEARCHES: usize = 1;

/// Counts a flight in `creating` or `searching` for as long as it runs (it outlives
/// its request).
struct Creating(Arc<AtomicUsize>);

impl Creating {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Creating(Arc::clone(count))
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// With no search to make, a create on its own costs a whole request where the
/// worker's batch costs 1/250 of one. So once a burst has congested AmoCRM, every
/// submission is queued until none has come for this long; a lone one then goes
/// inline again. (While searching, the search dominates and the rule is not needed.)
const BURST_QUIET: Duration = Duration::from_secs(2);

impl ContactService {
    pub fn new(
        repo: Arc<dyn ContactRepository>,
        rows: Arc<dyn SyncRowRepository>,
        amo: Arc<dyn AmoTransport>,
        settings: SyncSettings,
        authority: Arc<MirrorAuthority>,
        logger: Logger,
    ) -> Self {
        let reader = Arc::clone(&repo);
        let by_id = Batcher::new(
            READS,
            |_| 1,
            move |ids| rows_by_id(Arc::clone(&reader), ids),
        );
        let reader = Arc::clone(&repo);
        let by_phone = Batcher::new(
            READS,
            |_| 1,
            move |phones| rows_by_phone(Arc::clone(&reader), phones),
        );
        ContactService {
            by_id,
            by_phone,
            repo,
            amo,
            flight: Flight::new(rows, settings, logger),
            flights: SingleFlight::default(),
            authority,
            burst_until: Mutex::new(None),
            creating: Arc::new(AtomicUsize::new(0)),
            searching: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether this submission joins the worker's batches instead of calling AmoCRM.
    fn joins_batches(&self, search: bool, phone: &str) -> bool {
        // The same phone submitted again meanwhile shares the flight under way.
        if self.flights.is_running(phone) {
            return false;
        }
        let congested = self.amo.is_congested();
        if search {
            return congested || self.searching.load(Ordering::SeqCst) >= INLINE_SEARCHES;
        }
        let now = Instant::now();
        let mut until = self
            .burst_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let busy = self.creating.load(Ordering::SeqCst) >= INLINE_CREATES;
        let bursting = congested || busy || until.is_some_and(|end| end > now);
        if bursting {
            *until = Some(now + BURST_QUIET);
        }
        bursting
    }

    /// Whether AmoCRM is searched before a create (`AMO_DEDUP`); leads follow it too.
    pub(crate) fn authority(&self) -> &MirrorAuthority {
        &self.authority
    }

    /// The contact `id`; an id folded into another row (AmoCRM held that person under
    /// another phone) answers with that row, so no id amosync handed out turns 404.
    pub async fn get(&self, id: i64, include_deleted: bool) -> Result<Contact, ServiceError> {
        let row = match self.by_id.submit(id).await? {
            Some(row) => Some(row),
            None => match self.repo.merged_into(id).await? {
                Some(into) => self.by_id.submit(into).await?,
                None => None,
            },
        };
        row.filter(|row| include_deleted || row.deleted_at.is_none())
            .ok_or(ServiceError::NotFound)
    }

    pub async fn list(&self, filter: ContactFilter) -> Result<Vec<Contact>, ServiceError> {
        match &filter.phone {
            // A phone holds a handful of rows: fetch them all with other callers'
            // phones and filter here. A name is compared by the column's collation
            // (case-insensitive), so a list that also filters by name is left to
            // the database.
            Some(phone) if filter.name.is_none() => {
                Ok(filter.select(self.by_phone.submit(phone.clone()).await?))
            }
            _ => Ok(self.repo.list(filter).await?),
        }
    }

    /// The contact with this phone: from the mirror, else from AmoCRM, else newly
    /// created in AmoCRM. The row and its sync job are stored first; when AmoCRM
    /// does not answer within the inline budget the stored row is `Accepted` and the
    /// outbox worker finishes it. Concurrent calls for one phone share one flight.
    pub async fn find_or_create(
        &self,
        input: ContactInput,
    ) -> Result<Saved<Contact>, ServiceError> {
        let phone = input.phone.as_e164().to_owned();
        if let Some(found) = self.repo.find_by_phone(&phone).await? {
            if found.is_synced() {
                return Ok(Saved::Found(found));
            }
        }
        let search = self.authority.search_amocrm().await;
        let rules = ContactRules {
            repo: Arc::clone(&self.repo),
            amo: Arc::clone(&self.amo),
            input,
            search,
        };
        if self.joins_batches(search, &phone) {
            // More calls wait for AmoCRM than it takes in a second: this one could not
            // finish within the inline budget, and would only hold back the batches.
            return self.flight.queue(&rules).await;
        }
        let creating = Creating::enter(match search {
            true => &self.searching,
            false => &self.creating,
        });
        let flight = self.flight.clone().fly(rules);
        let work = async move {
            let _creating = creating;
            flight.await
        };
        let flight = self.flights.run(phone.clone(), work, panicked);
        let stored = self.repo.find_by_phone(&phone);
        self.flight
            .land(flight, stored, |id| self.repo.get(id, false))
            .await
    }
}

/// A submission of a contact: claimed by its phone, sent with the phone it was
/// given.
struct ContactRules {
    repo: Arc<dyn ContactRepository>,
    amo: Arc<dyn AmoTransport>,
    input: ContactInput,
    /// Whether AmoCRM is searched before a first attempt creates (`AMO_DEDUP`).
    search: bool,
}

#[async_trait]
impl Rules for ContactRules {
    type Row = Contact;
    type New = NewAmoContact;
    type Amo = (i64, String);
    type Entity<'a> = ContactRows<'a>;

    fn entity(&self) -> ContactRows<'_> {
        Rows::of(&self.repo, &self.amo)
    }

    async fn claim(&self, lease: Duration) -> Result<Claim<Contact>, RepoError> {
        let new = NewContact {
            name: self.input.name.to_string(),
            phone: self.input.phone.as_e164().to_owned(),
        };
        self.repo.claim_by_phone(new, lease).await
    }

    fn searches(&self, row: &Contact) -> bool {
        self.entity().searches(row, self.search)
    }

    fn new_record(&self, row: &Contact) -> NewAmoContact {
        body(row, self.input.phone.clone())
    }
}

/// A contact's rules: "the same" contact holds the same phone; the mirror is asked
/// for it when AmoCRM is not.
pub(crate) type ContactRows<'a> = Rows<'a, dyn ContactRepository + 'a>;

#[async_trait]
impl<'a> EntityRules for ContactRows<'a> {
    type Row = Contact;
    type New = NewAmoContact;
    /// The AmoCRM id and the name AmoCRM holds.
    type Amo = (i64, String);

    fn max_per_create(&self) -> usize {
        MAX_CONTACTS_PER_CREATE
    }

    fn new_record(&self, row: &Contact, _link: Option<i64>) -> Result<NewAmoContact, String> {
        let phone = Phone::from_e164(row.phone.as_deref().unwrap_or_default())
            .map_err(|error| format!("stored phone: {error}"))?;
        Ok(body(row, phone))
    }

    async fn search(&self, new: &NewAmoContact) -> Result<Option<(i64, String)>, AmoError> {
        let found = self.amo.find_contact_by_phone(&new.phone).await?;
        Ok(pick_contact(found).map(|contact| (contact.id, contact.name)))
    }

    async fn mirrored(
        &self,
        row: &Contact,
        new: &NewAmoContact,
    ) -> Result<Option<(i64, String)>, RepoError> {
        Ok(match self.repo.find_by_phone(new.phone.as_e164()).await? {
            Some(found) if found.id != row.id && found.is_synced() => {
                found.amocrm_id.map(|id| (id, found.name))
            }
            _ => None,
        })
    }

    async fn create(&self, new: &NewAmoContact) -> Result<(i64, String), AmoError> {
        let id = self.amo.create_contact(new).await?;
        Ok((id, new.name.clone()))
    }

    async fn create_many(&self, news: Vec<NewAmoContact>) -> Result<Vec<Option<i64>>, AmoError> {
        self.amo.create_contacts(&news).await
    }

    fn created(&self, new: NewAmoContact, id: i64) -> (i64, String) {
        (id, new.name)
    }

    fn amo_id(&self, (id, _): &(i64, String)) -> i64 {
        *id
    }

    async fn finish(&self, row: &Contact, (id, name): (i64, String)) -> Result<Contact, RepoError> {
        self.repo
            .finish_sync(LocalId::new(row.id), AmoId::new(id), &name)
            .await
    }
}

/// The contact as AmoCRM is sent it: its name and phone.
fn body(row: &Contact, phone: Phone) -> NewAmoContact {
    NewAmoContact {
        name: row.name.clone(),
        phone,
    }
}

/// Several AmoCRM contacts may hold one phone (AmoCRM keeps duplicates): the
/// oldest one, i.e. the lowest id, is the one the mirror follows.
fn pick_contact(matches: Vec<AmoContact>) -> Option<AmoContact> {
    matches.into_iter().min_by_key(|c| c.id)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::amo::MockAmoTransport;
    use crate::domain::{Region, SyncStatus};
    use crate::repositories::{
        Entity, MockContactRepository, MockSyncRowRepository, Record, RepoError, Window,
    };
    use crate::services::mirror::authority::tests::{all_facts, auto_with, lacking_one_fact};
    use crate::settings::DedupMode;
    use mockall::predicate::eq;

    pub(in crate::services::find_or_create) fn kind<T>(saved: &Saved<T>) -> &'static str {
        match saved {
            Saved::Created(_) => "created",
            Saved::Found(_) => "found",
            Saved::Accepted(_) => "accepted",
        }
    }

    fn input() -> ContactInput {
        ContactInput {
            name: EntityName::parse("Иван").expect("name"),
            phone: Phone::parse("8 916 123-45-67", Region::default()).expect("phone"),
        }
    }

    /// The fixtures' one timestamp.
    pub(in crate::services::find_or_create) fn at() -> chrono::NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .map(|d| d.naive_utc())
            .expect("ts")
    }

    pub(crate) fn contact(id: i64, amocrm_id: Option<i64>) -> Contact {
        let at = at();
        Contact {
            id,
            amocrm_id,
            name: "Иван".into(),
            phone: Some("+79161234567".into()),
            sync_status: if amocrm_id.is_some() {
                SyncStatus::Synced
            } else {
                SyncStatus::Pending
            },
            sync_attempts: 0,
            sync_error: None,
            sync_lease_until: None,
            amo_updated_at: None,
            deleted_at: None,
            created_at: at,
            updated_at: at,
        }
    }

    fn contact_record(id: i64) -> Record {
        Record::new(Entity::Contact, id)
    }

    fn amo_contact(id: i64, name: &str) -> AmoContact {
        AmoContact {
            id,
            name: name.into(),
            phones: vec!["+7 916 123-45-67".into()],
            updated_at: None,
        }
    }

    fn service(repo: MockContactRepository, amo: MockAmoTransport) -> ContactService {
        service_deciding(repo, amo, MirrorAuthority::fixed(DedupMode::Remote))
    }

    fn service_deciding(
        repo: MockContactRepository,
        amo: MockAmoTransport,
        authority: MirrorAuthority,
    ) -> ContactService {
        service_recording(repo, MockSyncRowRepository::new(), amo, authority)
    }

    /// A service whose records' bookkeeping (failures, releases) `rows` expects.
    fn service_recording(
        repo: MockContactRepository,
        rows: MockSyncRowRepository,
        amo: MockAmoTransport,
        authority: MirrorAuthority,
    ) -> ContactService {
        ContactService::new(
            Arc::new(repo),
            Arc::new(rows),
            Arc::new(amo),
            SyncSettings::default(),
            Arc::new(authority),
            Logger::root(slog::Discard, slog::o!()),
        )
    }

    fn leased(repo: &mut MockContactRepository, row: Contact) {
        repo.expect_find_by_phone().returning(|_| Ok(None));
        repo.expect_claim_by_phone()
            .withf(|new, _| new.phone == "+79161234567" && new.name == "Иван")
            .times(1)
            .returning(move |_, _| Ok(Claim::Leased(row.clone())));
    }

    #[tokio::test]
    async fn a_synced_local_contact_is_returned_without_calling_amocrm() {
        let mut repo = MockContactRepository::new();
        repo.expect_find_by_phone()
            .with(eq("+79161234567"))
            .returning(|_| Ok(Some(contact(3, Some(77)))));
        let amo = MockAmoTransport::uncongested(); // any AmoCRM call would panic
        let out = service(repo, amo)
            .find_or_create(input())
            .await
            .expect("found");
        assert_eq!((out.record().id, kind(&out)), (3, "found"));
    }

    #[tokio::test]
    async fn a_contact_found_in_amocrm_is_saved_with_its_amocrm_name_and_not_created() {
        let mut repo = MockContactRepository::new();
        leased(&mut repo, contact(5, None));
        repo.expect_finish_sync()
            .with(eq(LocalId::new(5)), eq(AmoId::new(100)), eq("Иван Петров"))
            .times(1)
            .returning(|_, _, _| Ok(contact(5, Some(100))));
        let mut amo = MockAmoTransport::uncongested();
        amo.expect_find_contact_by_phone().times(1).returning(|_| {
            Ok(vec![
                amo_contact(300, "Дубль"),
                amo_contact(100, "Иван Петров"),
            ])
        });
        amo.expect_create_contact().never();
        let out = service(repo, amo)
            .find_or_create(input())
            .await
            .expect("synced");
        assert_eq!((out.record().amocrm_id, kind(&out)), (Some(100), "found"));
    }

    #[tokio::test]
    async fn a_contact_unknown_everywhere_is_created_in_amocrm_with_the_normalised_phone() {
        let mut repo = MockContactRepository::new();
        leased(&mut repo, contact(6, None));
        repo.expect_finish_sync()
            .with(eq(LocalId::new(6)), eq(AmoId::new(555)), eq("Иван"))
            .returning(|_, _, _| Ok(contact(6, Some(555))));
        let mut amo = MockAmoTransport::uncongested();
        amo.expect_find_contact_by_phone().returning(|_| Ok(vec![]));
        amo.expect_create_contact()
            .withf(|c| c.name == "Иван" && c.phone.as_e164() == "+79161234567")
            .times(1)
            .returning(|_| Ok(555));
        let out = service(repo, amo)
            .find_or_create(input())
            .await
            .expect("created");
        assert_eq!((out.record().id, kind(&out)), (6, "created"));
    }

    #[tokio::test]
    async fn a_transient_amocrm_failure_keeps_the_row_queued_and_answers_accepted() {
        let mut repo = MockContactRepository::new();
        leased(&mut repo, contact(8, None));
        repo.expect_finish_sync().never();
        let mut rows = MockSyncRowRepository::new();
        rows.expect_record_failure()
            .withf(|record, why, _, permanent| {
                *record == contact_record(8) && why.contains("server error") && !permanent
            })
            .times(1)
            .returning(|_, _, _, _| Ok(false));
        repo.expect_get()
            .with(eq(8), eq(false))
            .returning(|_, _| Ok(Some(contact(8, None))));
        let mut amo = MockAmoTransport::uncongested();
        amo.expect_find_contact_by_phone()
            .returning(|_| Err(AmoError::Server { status: 502 }));
        let out = service_recording(repo, rows, amo, MirrorAuthority::fixed(DedupMode::Remote))
            .find_or_create(input())
            .await
            .expect("accepted");
        assert_eq!((out.record().id, kind(&out)), (8, "accepted"));
    }

    #[tokio::test]
    async fn a_refusal_by_amocrm_buries_the_job_and_is_reported() {
        let mut repo = MockContactRepository::new();
        leased(&mut repo, contact(8, None));
        let mut rows = MockSyncRowRepository::new();
        rows.expect_record_failure()
            .withf(|record, _, _, permanent| *record == contact_record(8) && *permanent)
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let mut amo = MockAmoTransport::uncongested();
        amo.expect_find_contact_by_phone().returning(|_| Ok(vec![]));
        amo.expect_create_contact()
            .returning(|_| Err(AmoError::Validation { issues: vec![] }));
        let err = service_recording(repo, rows, amo, MirrorAuthority::fixed(DedupMode::Remote))
            .find_or_create(input())
            .await
            .expect_err("refused");
        assert!(matches!(
            err,
            ServiceError::Amo {
                error: AmoError::Validation { .. },
                pending_id: Some(8)
            }
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_amocrm_is_not_waited_for_past_the_inline_budget() {
        let mut repo = MockContactRepository::new();
        let mut lookups = 0;
        repo.expect_find_by_phone().returning(move |_| {
            lookups += 1;
            Ok((lookups > 1).then(|| contact(12, None)))
        });
        repo.expect_claim_by_phone()
            .returning(|_, _| Ok(Claim::Leased(contact(12, None))));
        repo.expect_finish_sync()
            .returning(|_, _, _| Ok(contact(12, Some(1))));
        let mut amo = MockAmoTransport::uncongested();
        amo.expect_find_contact_by_phone().returning(|_| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            Ok(vec![])
        });
        amo.expect_create_contact().returning(|_| Ok(1));
        let settings = SyncSettings {
            inline_budget: std::time::Duration::from_millis(50),
            ..SyncSettings::default()
        };
        let service = ContactService::new(
            Arc::new(repo),
            Arc::new(MockSyncRowRepository::new()),
            Arc::new(amo),
            settings,
            Arc::new(MirrorAuthority::fixed(DedupMode::Remote)),
            Logger::root(slog::Discard, slog::o!()),
        );
        let out = service.find_or_create(input()).await.expect("accepted");
        assert_eq!((out.record().id, kind(&out)), (12, "accepted"));
    }

    #[tokio::test]
    async fn a_record_being_synced_elsewhere_is_awaited_until_it_is_synced() {
        let mut repo = MockContactRepository::new();
        repo.expect_find_by_phone().returning(|_| Ok(None));
        let mut calls = 0;
        repo.expect_claim_by_phone()
            .times(2)
            .returning(move |_, _| {
                calls += 1;
                Ok(if calls == 1 {
                    Claim::Busy(contact(9, None))
                } else {
                    Claim::Existing(contact(9, Some(90)))
                })
            });
        let out = service(repo, MockAmoTransport::uncongested())
            .find_or_create(input())
            .await
            .expect("waited");
        assert_eq!((out.record().amocrm_id, kind(&out)), (Some(90), "found"));
    }

    #[tokio::test]
    async fn a_congested_amocrm_is_not_called_and_the_row_is_queued_for_the_worker() {
        let mut repo = MockContactRepository::new();
        repo.expect_find_by_phone().returning(|_| Ok(None));
        repo.expect_claim_by_phone()
            .times(1)
            .returning(|_, _| Ok(Claim::Leased(contact(14, None))));
        let mut rows = MockSyncRowRepository::new();
        rows.expect_release()
            .with(eq(contact_record(14)))
            .times(1)
            .returning(|_| Ok(()));
        let mut amo = MockAmoTransport::new(); // no search, no create
        amo.expect_is_congested().returning(|| true);
        let out = service_recording(repo, rows, amo, MirrorAuthority::fixed(DedupMode::Remote))
            .find_or_create(input())
            .await
            .expect("queued");
        assert_eq!((out.record().id, kind(&out)), (14, "accepted"));
    }

    /// A first attempt at a new phone, created in AmoCRM as 555; `searches` is how
    /// often AmoCRM's search may be called (it finds nothing).
    async fn create_new_phone(authority: MirrorAuthority, searches: usize) {
        let mut repo = MockContactRepository::new();
        leased(&mut repo, contact(6, None));
        repo.expect_finish_sync()
            .with(eq(LocalId::new(6)), eq(AmoId::new(555)), eq("Иван"))
            .times(1)
            .returning(|_, _, _| Ok(contact(6, Some(555))));
        let mut amo = MockAmoTransport::uncongested();
        amo.expect_find_contact_by_phone()
            .times(searches)
            .returning(|_| Ok(vec![]));
        amo.expect_create_contact().times(1).returning(|_| Ok(555));
        let out = service_deciding(repo, amo, authority)
            .find_or_create(input())
            .await
            .expect("created");
        assert_eq!((out.record().id, kind(&out)), (6, "created"));
    }

    #[tokio::test]
    async fn an_authoritative_mirror_in_auto_mode_creates_without_searching_amocrm() {
        create_new_phone(auto_with(all_facts()), 0).await;
    }

    #[tokio::test]
    async fn any_missing_or_stale_fact_brings_the_amocrm_search_back() {
        for ages in lacking_one_fact() {
            create_new_phone(auto_with(ages), 1).await;
        }
    }

    #[tokio::test]
    async fn remote_mode_always_searches_and_mirror_mode_never_does() {
        create_new_phone(MirrorAuthority::fixed(DedupMode::Remote), 1).await;
        create_new_phone(MirrorAuthority::fixed(DedupMode::Mirror), 0).await;
    }

    #[tokio::test]
    async fn a_retry_searches_amocrm_even_when_the_mirror_is_trusted() {
        let mut repo = MockContactRepository::new();
        let retried = Contact {
            sync_attempts: 1,
            ..contact(7, None)
        };
        leased(&mut repo, retried);
        repo.expect_finish_sync()
            .with(eq(LocalId::new(7)), eq(AmoId::new(100)), eq("Иван Петров"))
            .times(1)
            .returning(|_, _, _| Ok(contact(7, Some(100))));
        let mut amo = MockAmoTransport::uncongested();
        // The first attempt timed out after AmoCRM had created it: found, not made twice.
        amo.expect_find_contact_by_phone()
            .times(1)
            .returning(|_| Ok(vec![amo_contact(100, "Иван Петров")]));
        amo.expect_create_contact().never();
        let out = service_deciding(repo, amo, MirrorAuthority::fixed(DedupMode::Mirror))
            .find_or_create(input())
            .await
            .expect("found");
        assert_eq!((out.record().amocrm_id, kind(&out)), (Some(100), "found"));
    }

    #[tokio::test]
    async fn without_searches_a_burst_keeps_joining_the_batches_after_congestion_eases() {
        let mut repo = MockContactRepository::new();
        repo.expect_find_by_phone().returning(|_| Ok(None));
        repo.expect_claim_by_phone()
            .times(2)
            .returning(|_, _| Ok(Claim::Leased(contact(14, None))));
        let mut rows = MockSyncRowRepository::new();
        rows.expect_release().times(2).returning(|_| Ok(()));
        let mut amo = MockAmoTransport::new(); // no search, no create
        let mut calls = 0;
        amo.expect_is_congested().returning(move || {
            calls += 1;
            calls == 1
        });
        let service = service_recording(repo, rows, amo, MirrorAuthority::fixed(DedupMode::Mirror));
        for _ in 0..2 {
            let out = service.find_or_create(input()).await.expect("queued");
            assert_eq!(kind(&out), "accepted");
        }
    }

    #[tokio::test]
    async fn an_unreachable_database_is_reported_as_such() {
        let mut repo = MockContactRepository::new();
        repo.expect_find_by_phone()
            .returning(|_| Err(RepoError::Unavailable("pool timed out".into())));
        let err = service(repo, MockAmoTransport::uncongested())
            .find_or_create(input())
            .await
            .expect_err("db down");
        assert!(matches!(err, ServiceError::DatabaseUnavailable(_)));
    }

    #[tokio::test]
    async fn reads_by_id_arriving_together_share_a_query_and_deleted_rows_stay_hidden() {
        let mut repo = MockContactRepository::new();
        repo.expect_get_many().returning(|ids| {
            Ok(ids
                .into_iter()
                .filter(|id| *id != 404)
                .map(|id| {
                    let mut row = contact(id, Some(id + 1000));
                    if id == 7 {
                        row.deleted_at = Some(row.created_at);
                    }
                    row
                })
                .collect())
        });
        repo.expect_merged_into().returning(|_| Ok(None));
        let service = Arc::new(service(repo, MockAmoTransport::uncongested()));
        let reads: Vec<_> = [1, 2, 3, 2, 404, 7]
            .into_iter()
            .map(|id| {
                let service = Arc::clone(&service);
                tokio::spawn(async move { (id, service.get(id, false).await) })
            })
            .collect();
        for read in reads {
            let (id, got) = read.await.expect("task");
            match id {
                404 | 7 => assert!(matches!(got, Err(ServiceError::NotFound)), "{id}"),
                _ => assert_eq!(got.expect("found").amocrm_id, Some(id + 1000)),
            }
        }
        let deleted = service.get(7, true).await.expect("shown when asked for");
        assert!(deleted.deleted_at.is_some());
    }

    #[tokio::test]
    async fn a_list_by_phone_applies_every_filter_to_the_phones_rows() {
        let mut repo = MockContactRepository::new();
        // With a name, the database compares it (case-insensitively).
        repo.expect_list()
            .withf(|f| f.name.as_deref() == Some("пётр"))
            .times(1)
            .returning(|_| {
                let mut row = contact(5, Some(105));
                row.name = "Пётр".into();
                Ok(vec![row])
            });
        repo.expect_with_phones().returning(|phones| {
            assert_eq!(phones, ["+79161234567"]);
            Ok((1..=6)
                .map(|id| {
                    let mut row = contact(id, Some(100 + id));
                    row.deleted_at = (id == 2).then_some(row.created_at);
                    if id == 5 {
                        row.name = "Пётр".into();
                    }
                    ("+79161234567".to_owned(), row)
                })
                .collect())
        });
        let service = service(repo, MockAmoTransport::uncongested());
        let filter = |f: fn(&mut ContactFilter)| {
            let mut filter = ContactFilter {
                phone: Some("+79161234567".into()),
                name: None,
                amocrm_id: None,
                window: Window {
                    after_id: None,
                    limit: 50,
                    include_deleted: false,
                },
            };
            f(&mut filter);
            filter
        };
        let ids = |rows: Vec<Contact>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
        let listed = |f| service.list(filter(f));
        assert_eq!(ids(listed(|_| {}).await.expect("all")), [1, 3, 4, 5, 6]);
        assert_eq!(
            ids(listed(|f| f.window.include_deleted = true)
                .await
                .expect("deleted")),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(
            ids(listed(|f| f.name = Some("пётр".into()))
                .await
                .expect("name")),
            [5]
        );
        assert_eq!(
            ids(listed(|f| f.amocrm_id = Some(104)).await.expect("amo")),
            [4]
        );
        assert_eq!(
            ids(listed(|f| {
                f.window.after_id = Some(3);
                f.window.limit = 2
            })
            .await
            .expect("page")),
            [4, 5]
        );
    }
}
