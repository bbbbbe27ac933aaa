//! Leads: a lead is "the same" when its name matches exactly and, when a contact
//! is given, it is linked to that contact. The contact is resolved (found or
//! created) first, so the AmoCRM lead can be linked to it at creation. The flight
//! (`Flight`) runs the protocol; these are the lead's rules and service.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use slog::Logger;

use super::contacts::ContactRows;
use super::entity::{EntityRules, Joins, Rows};
use super::flight::{panicked, Outcome, Rules};
use super::{ContactInput, ContactService, Flight, Saved, SyncSettings};
use crate::amo::{
    AmoError, AmoLead, AmoTransport, NewAmoContact, NewAmoLead, MAX_LEADS_PER_CREATE,
};
use crate::concurrency::SingleFlight;
use crate::domain::{EntityName, FieldError, Phone};
use crate::repositories::{
    Claim, Contact, ContactRepository, Lead, LeadFilter, LeadRepository, NewLead, RepoError,
    SyncRowRepository,
};
use crate::services::ServiceError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadContact {
    None,
    /// A local contact id.
    Existing(i64),
    /// A contact to find or create first.
    New(ContactInput),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadInput {
    pub name: EntityName,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub contact: LeadContact,
}

pub struct LeadService {
    repo: Arc<dyn LeadRepository>,
    contact_repo: Arc<dyn ContactRepository>,
    contacts: Arc<ContactService>,
    amo: Arc<dyn AmoTransport>,
    flight: Flight,
    flights: SingleFlight<Outcome<Lead>>,
}

impl LeadService {
    pub fn new(
        repo: Arc<dyn LeadRepository>,
        contact_repo: Arc<dyn ContactRepository>,
        rows: Arc<dyn SyncRowRepository>,
        contacts: Arc<ContactService>,
        amo: Arc<dyn AmoTransport>,
        settings: SyncSettings,
        logger: Logger,
    ) -> Self {
        LeadService {
            repo,
            contact_repo,
            contacts,
            amo,
            flight: Flight::new(rows, settings, logger),
            flights: SingleFlight::default(),
        }
    }

    pub async fn get(&self, id: i64, include_deleted: bool) -> Result<Lead, ServiceError> {
        self.repo
            .get(id, include_deleted)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    pub async fn list(&self, filter: LeadFilter) -> Result<Vec<Lead>, ServiceError> {
        Ok(self.repo.list(filter).await?)
    }

    pub async fn find_or_create(&self, input: LeadInput) -> Result<Saved<Lead>, ServiceError> {
        let contact = self.resolve_contact(input.contact.clone()).await?;
        let contact_row = contact.as_ref().map(Saved::record);
        let contact_id = contact_row.map(|c| c.id);
        let name = input.name.to_string();
        if let Some(found) = self.repo.find_match(&name, contact_id).await? {
            if found.is_synced() {
                return Ok(Saved::Found(found));
            }
        }
        let rules = LeadRules {
            repo: Arc::clone(&self.repo),
            amo: Arc::clone(&self.amo),
            new: NewLead {
                name: name.clone(),
                price: input.price,
                status_id: input.status_id,
                pipeline_id: input.pipeline_id,
                contact_id,
                contact_amocrm_id: contact_row.and_then(|c| c.amocrm_id),
            },
            contact_is_new: matches!(contact, Some(Saved::Created(_))),
            search: self.contacts.authority().search_amocrm().await,
        };
        // The contact is still on its way to AmoCRM, so the lead cannot be linked yet;
        // or AmoCRM is congested and could not answer within the inline budget.
        if contact_row.is_some_and(|c| !c.is_synced()) || self.amo.is_congested() {
            return self.flight.queue(&rules).await;
        }
        let key = format!(
            "{name}\u{0}{}",
            contact_id.map(|id| id.to_string()).unwrap_or_default()
        );
        let flight = self
            .flights
            .run(key, self.flight.clone().fly(rules), panicked);
        let stored = self.repo.find_match(&name, contact_id);
        self.flight
            .land(flight, stored, |id| self.repo.get(id, false))
            .await
    }

    /// The lead's contact, found or created first (its AmoCRM id is needed for the link).
    async fn resolve_contact(
        &self,
        contact: LeadContact,
    ) -> Result<Option<Saved<Contact>>, ServiceError> {
        match contact {
            LeadContact::None => Ok(None),
            LeadContact::New(input) => Ok(Some(self.contacts.find_or_create(input).await?)),
            LeadContact::Existing(id) => {
                let unknown = || {
                    ServiceError::Invalid(vec![FieldError::new(
                        "contact_id",
                        "no contact with this id",
                    )])
                };
                let contact = self
                    .contact_repo
                    .get(id, false)
                    .await?
                    .ok_or_else(unknown)?;
                if contact.is_synced() {
                    return Ok(Some(Saved::Found(contact)));
                }
                // A contact accepted earlier but still pending: try to finish it now.
                let input = ContactInput {
                    name: EntityName::parse(&contact.name)
                        .map_err(|e| ServiceError::internal(format!("stored contact name: {e}")))?,
                    phone: Phone::from_e164(contact.phone.as_deref().unwrap_or_default()).map_err(
                        |e| ServiceError::internal(format!("stored contact phone: {e}")),
                    )?,
                };
                Ok(Some(self.contacts.find_or_create(input).await?))
            }
        }
    }
}

/// A submission of a lead: claimed by its name and contact, linked to the
/// contact's AmoCRM id as resolved for this request.
struct LeadRules {
    repo: Arc<dyn LeadRepository>,
    amo: Arc<dyn AmoTransport>,
    new: NewLead,
    /// The contact was created in AmoCRM by this very request: no lead can be linked to it yet.
    contact_is_new: bool,
    /// Whether AmoCRM is searched by name before a first attempt creates (`AMO_DEDUP`).
    search: bool,
}

#[async_trait]
impl Rules for LeadRules {
    type Row = Lead;
    type New = NewAmoLead;
    type Amo = AmoLead;
    type Entity<'a> = LeadRows<'a>;

    fn entity(&self) -> LeadRows<'_> {
        Rows::of(&self.repo, &self.amo)
    }

    async fn claim(&self, lease: Duration) -> Result<Claim<Lead>, RepoError> {
        self.repo.claim(self.new.clone(), lease).await
    }

    fn searches(&self, row: &Lead) -> bool {
        !self.contact_is_new && self.entity().searches(row, self.search)
    }

    fn new_record(&self, row: &Lead) -> NewAmoLead {
        body(row, self.new.contact_amocrm_id)
    }
}

/// A lead's rules: "the same" lead has the exact name and is linked to the same
/// AmoCRM contact (or neither has one). Its contact, when new to AmoCRM too, is
/// created with it in one `leads/complex` item.
pub(crate) type LeadRows<'a> = Rows<'a, dyn LeadRepository + 'a>;

#[async_trait]
impl<'a> EntityRules for LeadRows<'a> {
    type Row = Lead;
    type New = NewAmoLead;
    type Amo = AmoLead;

    fn max_per_create(&self) -> usize {
        MAX_LEADS_PER_CREATE
    }

    fn new_record(&self, row: &Lead, link: Option<i64>) -> Result<NewAmoLead, String> {
        Ok(body(row, link))
    }

    async fn search(&self, new: &NewAmoLead) -> Result<Option<AmoLead>, AmoError> {
        let found = self.amo.find_lead_by_name(&new.name).await?;
        Ok(pick_lead(found, new.contact_id))
    }

    async fn create(&self, new: &NewAmoLead) -> Result<AmoLead, AmoError> {
        let id = self.amo.create_lead(new).await?;
        Ok(new.clone().into_created(id))
    }

    async fn create_many(&self, news: Vec<NewAmoLead>) -> Result<Vec<Option<i64>>, AmoError> {
        self.amo.create_leads(&news).await
    }

    fn created(&self, new: NewAmoLead, id: i64) -> AmoLead {
        new.into_created(id)
    }

    fn amo_id(&self, amo: &AmoLead) -> i64 {
        amo.id
    }

    async fn finish(&self, row: &Lead, amo: AmoLead) -> Result<Lead, RepoError> {
        self.repo.finish_sync(row.id, amo).await
    }
}

#[async_trait]
impl<'a, 'b> Joins<ContactRows<'a>> for LeadRows<'b> {
    async fn create_with(
        &self,
        items: Vec<(NewAmoLead, NewAmoContact)>,
    ) -> Result<Vec<Option<(i64, i64)>>, AmoError> {
        let created = self.amo.create_leads_with_contacts(&items).await?;
        Ok(created
            .into_iter()
            .map(|made| made.map(|made| (made.lead_id, made.contact_id)))
            .collect())
    }

    fn linked(&self, mut new: NewAmoLead, contact_amocrm_id: i64) -> NewAmoLead {
        new.contact_id = Some(contact_amocrm_id);
        new
    }
}

/// The lead as AmoCRM is sent it, linked to the AmoCRM contact `contact_amocrm_id`.
fn body(row: &Lead, contact_amocrm_id: Option<i64>) -> NewAmoLead {
    NewAmoLead {
        name: row.name.clone(),
        price: row.price,
        status_id: row.status_id,
        pipeline_id: row.pipeline_id,
        contact_id: contact_amocrm_id,
    }
}

/// Among AmoCRM leads with the exact name, the ones linked to the contact (any,
/// when no contact is given); the oldest wins, as for contacts.
fn pick_lead(matches: Vec<AmoLead>, contact_amocrm_id: Option<i64>) -> Option<AmoLead> {
    matches
        .into_iter()
        .filter(|lead| contact_amocrm_id.is_none_or(|id| lead.contact_ids.contains(&id)))
        .min_by_key(|lead| lead.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amo::MockAmoTransport;
    use crate::domain::{Region, SyncStatus};
    use crate::repositories::{
        Claim, MockContactRepository, MockLeadRepository, MockSyncRowRepository,
    };
    use crate::services::mirror::authority::tests::{all_facts, auto_with, lacking_one_fact};
    use crate::services::MirrorAuthority;
    use crate::settings::DedupMode;
    use mockall::predicate::eq;

    use super::super::contacts::tests::{at, contact, kind};

    fn lead(id: i64, amocrm_id: Option<i64>, contact_id: Option<i64>) -> Lead {
        Lead {
            id,
            amocrm_id,
            name: "Заказ".into(),
            price: Some(100),
            status_id: None,
            pipeline_id: None,
            contact_id,
            contact_amocrm_id: None,
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
            created_at: at(),
            updated_at: at(),
        }
    }

    fn amo_lead(id: i64, name: &str, contacts: &[i64]) -> AmoLead {
        AmoLead {
            id,
            name: name.into(),
            price: Some(7),
            status_id: Some(142),
            pipeline_id: Some(1),
            contact_ids: contacts.to_vec(),
            main_contact_id: contacts.first().copied(),
            updated_at: Some(1_800_000_000),
        }
    }

    fn input(contact: LeadContact) -> LeadInput {
        LeadInput {
            name: EntityName::parse("Заказ").expect("name"),
            price: Some(100),
            status_id: None,
            pipeline_id: None,
            contact,
        }
    }

    fn service(
        leads: MockLeadRepository,
        contacts: MockContactRepository,
        amo: MockAmoTransport,
    ) -> LeadService {
        service_deciding(
            leads,
            contacts,
            amo,
            MirrorAuthority::fixed(DedupMode::Remote),
        )
    }

    fn service_deciding(
        leads: MockLeadRepository,
        contacts: MockContactRepository,
        amo: MockAmoTransport,
        authority: MirrorAuthority,
    ) -> LeadService {
        let logger = Logger::root(slog::Discard, slog::o!());
        let contacts: Arc<dyn ContactRepository> = Arc::new(contacts);
        let amo: Arc<dyn AmoTransport> = Arc::new(amo);
        let settings = SyncSettings::default();
        let rows: Arc<dyn SyncRowRepository> = Arc::new(MockSyncRowRepository::new());
        let contact_service = Arc::new(ContactService::new(
            Arc::clone(&contacts),
            Arc::clone(&rows),
            Arc::clone(&amo),
            settings,
            Arc::new(authority),
            logger.clone(),
        ));
        LeadService::new(
            Arc::new(leads),
            contacts,
            rows,
            contact_service,
            amo,
            settings,
            logger,
        )
    }

    #[test]
    fn only_leads_linked_to_the_contact_count_and_the_oldest_wins() {
        let matches = vec![
            amo_lead(30, "Заказ", &[1]),
            amo_lead(20, "Заказ", &[2]),
            amo_lead(25, "Заказ", &[2, 1]),
        ];
        assert_eq!(pick_lead(matches.clone(), Some(1)).map(|l| l.id), Some(25));
        assert_eq!(pick_lead(matches.clone(), None).map(|l| l.id), Some(20));
        assert_eq!(pick_lead(matches, Some(3)), None);
    }

    #[tokio::test]
    async fn an_unknown_contact_id_is_a_field_error_and_nothing_is_stored() {
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_get()
            .with(eq(999), eq(false))
            .returning(|_, _| Ok(None));
        let mut leads = MockLeadRepository::new();
        leads.expect_claim().never();
        let err = service(leads, contacts, MockAmoTransport::uncongested())
            .find_or_create(input(LeadContact::Existing(999)))
            .await
            .expect_err("unknown contact");
        assert!(
            matches!(err, ServiceError::Invalid(ref f) if f[0].field == "contact_id"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_lead_of_another_contact_is_not_reused_and_the_new_lead_is_linked() {
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_get()
            .with(eq(4), eq(false))
            .returning(|_, _| Ok(Some(contact(4, Some(400)))));
        let mut leads = MockLeadRepository::new();
        leads
            .expect_find_match()
            .with(eq("Заказ"), eq(Some(4)))
            .returning(|_, _| Ok(None));
        leads
            .expect_claim()
            .withf(|new, _| new.contact_id == Some(4) && new.contact_amocrm_id == Some(400))
            .returning(|_, _| Ok(Claim::Leased(lead(11, None, Some(4)))));
        leads
            .expect_finish_sync()
            .withf(|id, amo| *id == 11 && amo.id == 9000 && amo.price == Some(100))
            .returning(|_, _| Ok(lead(11, Some(9000), Some(4))));
        let mut amo = MockAmoTransport::uncongested();
        amo.expect_find_lead_by_name()
            .returning(|_| Ok(vec![amo_lead(50, "Заказ", &[401])]));
        amo.expect_create_lead()
            .withf(|l| l.contact_id == Some(400) && l.name == "Заказ" && l.price == Some(100))
            .times(1)
            .returning(|_| Ok(9000));
        let out = service(leads, contacts, amo)
            .find_or_create(input(LeadContact::Existing(4)))
            .await
            .expect("ok");
        assert_eq!(
            (out.record().amocrm_id, kind(&out)),
            (Some(9000), "created")
        );
    }

    /// Repositories for a lead the mirror does not know, of the synced contact 4
    /// (AmoCRM 400), stored and leased as `lead_id`.
    fn new_lead_of_contact_4(lead_id: i64) -> (MockContactRepository, MockLeadRepository) {
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_get()
            .returning(|_, _| Ok(Some(contact(4, Some(400)))));
        let mut leads = MockLeadRepository::new();
        leads.expect_find_match().returning(|_, _| Ok(None));
        leads
            .expect_claim()
            .returning(move |_, _| Ok(Claim::Leased(lead(lead_id, None, Some(4)))));
        (contacts, leads)
    }

    #[tokio::test]
    async fn a_matching_amocrm_lead_is_mirrored_with_its_own_fields() {
        let (contacts, mut leads) = new_lead_of_contact_4(12);
        leads
            .expect_finish_sync()
            .withf(|id, amo| {
                *id == 12 && amo.id == 77 && amo.status_id == Some(142) && amo.price == Some(7)
            })
            .returning(|_, _| Ok(lead(12, Some(77), Some(4))));
        let mut amo = MockAmoTransport::uncongested();
        amo.expect_find_lead_by_name()
            .with(eq("Заказ"))
            .returning(|_| Ok(vec![amo_lead(77, "Заказ", &[400])]));
        amo.expect_create_lead().never();
        let out = service(leads, contacts, amo)
            .find_or_create(input(LeadContact::Existing(4)))
            .await
            .expect("ok");
        assert_eq!((out.record().amocrm_id, kind(&out)), (Some(77), "found"));
    }

    /// A new lead of the synced contact 4 (AmoCRM 400), created as 9000; `searches`:
    /// how often AmoCRM's search by name may be called (it finds nothing).
    async fn create_new_lead(authority: MirrorAuthority, searches: usize) {
        let (contacts, mut leads) = new_lead_of_contact_4(11);
        leads
            .expect_finish_sync()
            .times(1)
            .returning(|_, _| Ok(lead(11, Some(9000), Some(4))));
        let mut amo = MockAmoTransport::uncongested();
        amo.expect_find_lead_by_name()
            .times(searches)
            .returning(|_| Ok(vec![]));
        amo.expect_create_lead().times(1).returning(|_| Ok(9000));
        let out = service_deciding(leads, contacts, amo, authority)
            .find_or_create(input(LeadContact::Existing(4)))
            .await
            .expect("ok");
        assert_eq!(kind(&out), "created");
    }

    #[tokio::test]
    async fn leads_follow_the_dedup_mode_like_contacts() {
        create_new_lead(auto_with(all_facts()), 0).await;
        for ages in lacking_one_fact() {
            create_new_lead(auto_with(ages), 1).await;
        }
        create_new_lead(MirrorAuthority::fixed(DedupMode::Remote), 1).await;
        create_new_lead(MirrorAuthority::fixed(DedupMode::Mirror), 0).await;
    }

    #[tokio::test]
    async fn a_contact_created_by_this_request_skips_the_lead_search() {
        let mut contacts = MockContactRepository::new();
        contacts.expect_find_by_phone().returning(|_| Ok(None));
        contacts
            .expect_claim_by_phone()
            .returning(|_, _| Ok(Claim::Leased(contact(5, None))));
        contacts
            .expect_finish_sync()
            .returning(|_, _, _| Ok(contact(5, Some(500))));
        let mut leads = MockLeadRepository::new();
        leads.expect_find_match().returning(|_, _| Ok(None));
        leads
            .expect_claim()
            .returning(|_, _| Ok(Claim::Leased(lead(13, None, Some(5)))));
        leads
            .expect_finish_sync()
            .returning(|_, _| Ok(lead(13, Some(600), Some(5))));
        let mut amo = MockAmoTransport::uncongested();
        amo.expect_find_contact_by_phone().returning(|_| Ok(vec![]));
        amo.expect_create_contact().times(1).returning(|_| Ok(500));
        amo.expect_find_lead_by_name().never();
        amo.expect_create_lead()
            .withf(|l| l.contact_id == Some(500))
            .times(1)
            .returning(|_| Ok(600));
        let inline = ContactInput {
            name: EntityName::parse("Иван").expect("name"),
            phone: Phone::parse("+79161234567", Region::default()).expect("phone"),
        };
        let out = service(leads, contacts, amo)
            .find_or_create(input(LeadContact::New(inline)))
            .await
            .expect("ok");
        assert_eq!(kind(&out), "created");
    }
}
