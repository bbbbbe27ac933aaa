//! Applying AmoCRM's view to the mirror in batches: multi-row upserts keyed by
//! `amocrm_id`, where a row only takes values that are at least as new as what it
//! holds (`amo_updated_at`), so late or repeated deliveries change nothing.
//!
//! Names: AmoCRM allows records without a name (leads made from chats get `''`). A
//! change that carries a name, empty included, sets it when newer; one that carries
//! none (`None`: short status events) leaves the stored name. An empty stored name is
//! shown as `name: null` by the API.

use async_trait::async_trait;
use diesel::Connection;

use super::db::{retry_deadlocks, Db};
use super::refetch::RefetchEntity;
use super::RepoError;

mod apply;

use apply::apply;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactChange {
    pub amocrm_id: i64,
    /// `None` when the event does not carry a name; the stored one stays.
    pub name: Option<String>,
    /// E.164, or none when the contact has no usable phone.
    pub phone: Option<String>,
    pub changed_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadChange {
    pub amocrm_id: i64,
    /// `None` for events that do not carry it (status changes); the stored value stays.
    pub name: Option<String>,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub contact_amocrm_id: Option<i64>,
    pub changed_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyChange {
    pub amocrm_id: i64,
    /// `None` when the event does not carry a name; the stored one stays.
    pub name: Option<String>,
    pub responsible_user_id: Option<i64>,
    pub changed_at: i64,
}

/// A delete or restore of one record. AmoCRM's delete events carry only the id:
/// without a time of their own they apply as they come (AmoCRM sends them in order),
/// rather than losing to an `updated_at` stamped a moment ahead of our clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    pub amocrm_id: i64,
    pub changed_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorBatch {
    pub contacts: Vec<ContactChange>,
    pub leads: Vec<LeadChange>,
    pub companies: Vec<CompanyChange>,
    pub contact_deletes: Vec<Removal>,
    pub contact_restores: Vec<Removal>,
    pub lead_deletes: Vec<Removal>,
    pub lead_restores: Vec<Removal>,
    pub company_deletes: Vec<Removal>,
    pub company_restores: Vec<Removal>,
    /// `(lead amocrm_id, contact amocrm_id)` from contacts' `linked_leads_id`.
    pub links: Vec<(i64, i64)>,
    /// Records to read back from AmoCRM: their events carried no change time.
    pub refetch: Vec<(RefetchEntity, i64)>,
}

impl MirrorBatch {
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
            && self.leads.is_empty()
            && self.companies.is_empty()
            && self.removals().all(|removals| removals.is_empty())
            && self.links.is_empty()
            && self.refetch.is_empty()
    }

    fn removals(&self) -> impl Iterator<Item = &Vec<Removal>> {
        [
            &self.contact_deletes,
            &self.contact_restores,
            &self.lead_deletes,
            &self.lead_restores,
            &self.company_deletes,
            &self.company_restores,
        ]
        .into_iter()
    }

    /// Sorts every list by the row it locks (stable: a record's changes keep their
    /// order). Transactions that lock rows in one order wait for each other instead
    /// of deadlocking, and the worker applies overlapping batches side by side.
    fn in_lock_order(&mut self) {
        self.contacts.sort_by_key(|c| c.amocrm_id);
        self.leads.sort_by_key(|l| l.amocrm_id);
        self.companies.sort_by_key(|c| c.amocrm_id);
        for removals in [
            &mut self.contact_deletes,
            &mut self.contact_restores,
            &mut self.lead_deletes,
            &mut self.lead_restores,
            &mut self.company_deletes,
            &mut self.company_restores,
        ] {
            removals.sort_by_key(|r| r.amocrm_id);
        }
        self.links.sort_by_key(|(lead, _)| *lead);
        self.refetch.sort_unstable();
        self.refetch.dedup();
    }

    pub fn extend(&mut self, other: MirrorBatch) {
        self.contacts.extend(other.contacts);
        self.leads.extend(other.leads);
        self.contact_deletes.extend(other.contact_deletes);
        self.contact_restores.extend(other.contact_restores);
        self.lead_deletes.extend(other.lead_deletes);
        self.lead_restores.extend(other.lead_restores);
        self.companies.extend(other.companies);
        self.company_deletes.extend(other.company_deletes);
        self.company_restores.extend(other.company_restores);
        self.links.extend(other.links);
        self.refetch.extend(other.refetch);
    }
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait MirrorRepository: Send + Sync {
    /// Applies the whole batch in one transaction; returns the statements it took.
    async fn apply(&self, batch: MirrorBatch) -> Result<usize, RepoError>;

    /// `apply`, marking the webhook inbox rows the batch came from processed in the
    /// same transaction: a delivery counts as processed exactly when its changes are
    /// in, and the batch costs one commit.
    async fn apply_deliveries(
        &self,
        batch: MirrorBatch,
        inbox_ids: Vec<i64>,
    ) -> Result<usize, RepoError>;
}

pub struct MysqlMirrorRepository {
    db: Db,
}

impl MysqlMirrorRepository {
    pub fn new(db: Db) -> Self {
        MysqlMirrorRepository { db }
    }
}

#[async_trait]
impl MirrorRepository for MysqlMirrorRepository {
    async fn apply(&self, mut batch: MirrorBatch) -> Result<usize, RepoError> {
        if batch.is_empty() {
            return Ok(0);
        }
        batch.in_lock_order();
        self.db
            .run(move |conn| {
                retry_deadlocks(conn, |conn| conn.transaction(|conn| apply(conn, &batch)))
            })
            .await
    }

    async fn apply_deliveries(
        &self,
        mut batch: MirrorBatch,
        inbox_ids: Vec<i64>,
    ) -> Result<usize, RepoError> {
        batch.in_lock_order();
        self.db
            .run(move |conn| {
                retry_deadlocks(conn, |conn| {
                    conn.transaction(|conn| {
                        let statements = apply(conn, &batch)?;
                        super::inbox::mark_processed(conn, &inbox_ids)?;
                        Ok(statements + 1)
                    })
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(amocrm_id: i64, name: &str) -> ContactChange {
        ContactChange {
            amocrm_id,
            name: Some(name.into()),
            phone: None,
            changed_at: 1,
        }
    }

    #[test]
    fn lock_order_sorts_by_record_and_keeps_each_records_changes_in_order() {
        let mut batch = MirrorBatch {
            contacts: vec![
                contact(9, "a"),
                contact(3, "b"),
                contact(9, "c"),
                contact(1, "d"),
            ],
            links: vec![(20, 1), (10, 2), (20, 3)],
            ..MirrorBatch::default()
        };
        batch.in_lock_order();
        let contacts: Vec<_> = batch
            .contacts
            .iter()
            .map(|c| (c.amocrm_id, c.name.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(contacts, [(1, "d"), (3, "b"), (9, "a"), (9, "c")]);
        assert_eq!(batch.links, [(10, 2), (20, 1), (20, 3)]);
    }
}
