//! The creating half of a round: what the searches found missing goes to AmoCRM in
//! batches, each result ends on its record (synced, failed, buried or given back).

use super::RoundRunner;
use crate::amo::{
    AmoError, AmoLead, CreatedWithContact, NewAmoContact, NewAmoLead, MAX_CONTACTS_PER_CREATE,
    MAX_LEADS_PER_CREATE,
};
use crate::repositories::{Contact, Entity, Lead, Record};
use crate::services::find_or_create::keep_pending;
use crate::services::outbox::batches::{send_halving, Created};

impl RoundRunner<'_> {
    pub(super) async fn create_contacts(&self, batch: Vec<(Contact, NewAmoContact)>) {
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
                        self.fail(Record::new(Entity::Contact, row.id), &unanswered())
                            .await;
                    }
                    Created::Failed(error) => {
                        self.fail(Record::new(Entity::Contact, row.id), &error)
                            .await
                    }
                }
            }
        }
    }

    pub(super) async fn create_leads(&self, batch: Vec<(Lead, NewAmoLead)>) {
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
                    Created::Unanswered => {
                        self.fail(Record::new(Entity::Lead, row.id), &unanswered())
                            .await
                    }
                    Created::Failed(error) => {
                        self.fail(Record::new(Entity::Lead, row.id), &error).await
                    }
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    pub(super) async fn create_leads_with_contacts(
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
                        self.fail(Record::new(Entity::Lead, row.id), &unanswered())
                            .await;
                        self.give_back(Record::new(Entity::Contact, contact.id))
                            .await;
                    }
                    Created::Failed(error) => {
                        self.fail(Record::new(Entity::Lead, row.id), &error).await;
                        self.give_back(Record::new(Entity::Contact, contact.id))
                            .await;
                    }
                }
            }
        }
    }

    pub(super) async fn finish_contact(
        &self,
        row: &Contact,
        amocrm_id: i64,
        name: &str,
        created: bool,
    ) {
        match self.contacts.finish_sync(row.id, amocrm_id, name).await {
            Ok(record) => slog::info!(self.logger, "contact synced";
                "contact.id" => record.id, "contact.amocrm_id" => amocrm_id, "amo.created" => created),
            // The lease lapses and the next round finds the AmoCRM record by its search.
            Err(error) => slog::error!(self.logger, "could not store a synced contact";
                "contact.id" => row.id, "contact.amocrm_id" => amocrm_id, "error" => error.to_string()),
        }
    }

    pub(super) async fn finish_lead(&self, row: &Lead, amo: AmoLead, created: bool) {
        let amocrm_id = amo.id;
        match self.leads.finish_sync(row.id, amo).await {
            Ok(record) => slog::info!(self.logger, "lead synced";
                "lead.id" => record.id, "lead.amocrm_id" => amocrm_id, "amo.created" => created),
            Err(error) => slog::error!(self.logger, "could not store a synced lead";
                "lead.id" => row.id, "lead.amocrm_id" => amocrm_id, "error" => error.to_string()),
        }
    }

    /// Records the failure on the record and its job (backoff, or dead when refused).
    pub(super) async fn fail(&self, record: Record, error: &AmoError) {
        let why = error.to_string();
        let (retry, permanent) = (self.settings.retry, error.is_rejection());
        let recorded = self.rows.record_failure(record, &why, retry, permanent);
        keep_pending(self.logger, record, error.clone(), recorded).await;
    }

    /// A record that cannot be sent as stored: its job is dead at once, visible to operators.
    pub(super) async fn bury(&self, record: Record, why: &str) {
        let retry = self.settings.retry;
        let buried = self.rows.record_failure(record, why, retry, true).await;
        slog::error!(self.logger, "a stored record cannot be synced, its job is dead";
            "entity" => record.entity.as_str(), "record.id" => record.id, "error" => why,
            "recorded" => buried.is_ok());
    }

    /// A contact brought along by a lead that failed: its own job tries it again.
    pub(super) async fn give_back(&self, record: Record) {
        if let Err(error) = self.rows.release(record).await {
            slog::warn!(self.logger, "could not release a lease; it lapses by itself";
                "record.id" => record.id, "error" => error.to_string());
        }
    }
}

fn unanswered() -> AmoError {
    AmoError::InvalidResponse("AmoCRM's reply did not name this record".into())
}
