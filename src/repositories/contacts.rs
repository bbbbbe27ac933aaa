//! Contacts in the mirror: lookups, the claim that makes find-or-create safe under
//! concurrency, and the sync bookkeeping.

use std::time::Duration;

use async_trait::async_trait;
use diesel::mysql::MysqlConnection;
use diesel::prelude::*;

use super::db::{retry_deadlocks, with_named_lock, Db};
use super::jobs::{self, Entity};
use super::models::{Claim, Contact, NewContact, Window};
use super::sync_rows::{claim_found, fold_into, mirrored_table, take_lease, Record};
use super::sync_state::{lock_name, CLAIM_LOCK_TIMEOUT_SECS};
use super::RepoError;
use crate::domain::{AmoId, LocalId, SyncStatus};
use crate::schema::{contact_merges, contacts, leads};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactFilter {
    /// E.164, already normalised.
    pub phone: Option<String>,
    pub name: Option<String>,
    pub amocrm_id: Option<i64>,
    pub window: Window,
}

impl ContactFilter {
    /// The rows `list` would return for this filter, picked from `rows` (all rows of
    /// the filter's phone, in id order). Names are not compared here: the database
    /// compares them by collation, so a list with a name goes to `list`.
    pub fn select(&self, rows: Vec<Contact>) -> Vec<Contact> {
        let Window {
            after_id,
            limit,
            include_deleted,
        } = self.window;
        let limit = usize::try_from(limit).unwrap_or(0);
        rows.into_iter()
            .filter(|row| include_deleted || row.deleted_at.is_none())
            .filter(|row| self.amocrm_id.is_none_or(|id| row.amocrm_id == Some(id)))
            .filter(|row| after_id.is_none_or(|after| row.id > after))
            .take(limit)
            .collect()
    }
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait ContactRepository: Send + Sync {
    /// One row; soft-deleted rows only when `include_deleted`.
    async fn get(&self, id: i64, include_deleted: bool) -> Result<Option<Contact>, RepoError>;

    /// The rows with these ids, deleted ones included, in no particular order.
    async fn get_many(&self, ids: Vec<i64>) -> Result<Vec<Contact>, RepoError>;

    /// Every row holding one of these E.164 phones, deleted ones included, by id.
    async fn with_phones(&self, phones: Vec<String>) -> Result<Vec<(String, Contact)>, RepoError>;

    /// The row a folded contact id now answers with (see `finish_sync`).
    async fn merged_into(&self, id: i64) -> Result<Option<i64>, RepoError>;

    /// The contact holding this E.164 phone (synced first, then the oldest).
    async fn find_by_phone(&self, phone: &str) -> Result<Option<Contact>, RepoError>;

    /// Finds the row for `new.phone` or inserts it as pending, and leases it to the
    /// caller unless it is synced or leased to someone else. One caller at a time
    /// per phone, across instances (MySQL named lock around check-and-insert).
    async fn claim_by_phone(
        &self,
        new: NewContact,
        lease: Duration,
    ) -> Result<Claim<Contact>, RepoError>;

    /// Marks the row synced with its AmoCRM id. When another row already mirrors
    /// that AmoCRM contact, the pending row is folded into it and that row returned.
    async fn finish_sync(
        &self,
        id: LocalId,
        amocrm_id: AmoId,
        name: &str,
    ) -> Result<Contact, RepoError>;

    /// Takes the lease of a pending row for a background retry; `None` when it is
    /// synced, deleted, or leased to someone else right now.
    async fn lease(&self, id: i64, lease: Duration) -> Result<Option<Contact>, RepoError>;

    async fn list(&self, filter: ContactFilter) -> Result<Vec<Contact>, RepoError>;
}

mirrored_table!(MysqlContactRepository, contacts, Contact);

/// Runs under the per-phone named lock, which is what keeps two claimers apart.
fn claim(
    conn: &mut MysqlConnection,
    new: &NewContact,
    lease: Duration,
) -> Result<Claim<Contact>, RepoError> {
    conn.transaction(|conn| {
        let found = active()
            .filter(contacts::phone.eq(&new.phone))
            .order((
                contacts::sync_status.eq(SyncStatus::Synced.as_str()).desc(),
                contacts::id.asc(),
            ))
            .select(Contact::as_select())
            .first(conn)
            .optional()?;
        let insert = |conn: &mut MysqlConnection, until| {
            diesel::insert_into(contacts::table)
                .values((
                    contacts::name.eq(&new.name),
                    contacts::phone.eq(&new.phone),
                    contacts::sync_status.eq(SyncStatus::Pending.as_str()),
                    contacts::sync_lease_until.eq(until),
                ))
                .execute(conn)
        };
        claim_found(conn, found, lease, insert, load)
    })
}

fn finish(
    conn: &mut MysqlConnection,
    id: LocalId,
    amocrm_id: AmoId,
    name: &str,
) -> Result<Contact, RepoError> {
    let (id, amocrm_id) = (id.get(), amocrm_id.get());
    conn.transaction(|conn| {
        let updated = diesel::update(contacts::table.find(id))
            .set((
                contacts::amocrm_id.eq(amocrm_id),
                contacts::name.eq(name),
                contacts::sync_status.eq(SyncStatus::Synced.as_str()),
                contacts::sync_error.eq(None::<String>),
                contacts::sync_lease_until.eq(None::<chrono::NaiveDateTime>),
                contacts::sync_attempts.eq(contacts::sync_attempts + 1),
            ))
            .execute(conn)
            .map_err(RepoError::from);
        match updated {
            Ok(_) => {
                jobs::complete(conn, Entity::Contact, id)?;
                load(conn, id)
            }
            Err(RepoError::Conflict(_)) => {
                // The AmoCRM contact is mirrored already (it holds several phones, or
                // a webhook brought it in): ours folds into that row.
                let twin: i64 = contacts::table
                    .filter(contacts::amocrm_id.eq(amocrm_id))
                    .select(contacts::id)
                    .first(conn)?;
                merge(conn, id, twin)?;
                fold_into(conn, Record::new(Entity::Contact, id), twin)?;
                load(conn, twin)
            }
            Err(other) => Err(other),
        }
    })
}

/// Records that `id` was folded into `into`: its id was handed out (a 202's
/// `Location`) and its phone is one of the person's, so both keep finding `into`.
/// Leads linked to it, and earlier merges into it, follow.
fn merge(conn: &mut MysqlConnection, id: i64, into: i64) -> Result<(), RepoError> {
    let phone: Option<String> = contacts::table
        .find(id)
        .select(contacts::phone)
        .first(conn)
        .optional()?
        .flatten();
    diesel::replace_into(contact_merges::table)
        .values((
            contact_merges::contact_id.eq(id),
            contact_merges::merged_into.eq(into),
            contact_merges::phone.eq(phone.unwrap_or_default()),
        ))
        .execute(conn)?;
    diesel::update(contact_merges::table.filter(contact_merges::merged_into.eq(id)))
        .set(contact_merges::merged_into.eq(into))
        .execute(conn)?;
    diesel::update(leads::table.filter(leads::contact_id.eq(id)))
        .set(leads::contact_id.eq(into))
        .execute(conn)?;
    Ok(())
}

#[async_trait]
impl ContactRepository for MysqlContactRepository {
    async fn get(&self, id: i64, include_deleted: bool) -> Result<Option<Contact>, RepoError> {
        self.db
            .run(move |conn| one(conn, id, include_deleted))
            .await
    }

    async fn get_many(&self, ids: Vec<i64>) -> Result<Vec<Contact>, RepoError> {
        self.db
            .run(move |conn| {
                Ok(contacts::table
                    .filter(contacts::id.eq_any(ids))
                    .select(Contact::as_select())
                    .load(conn)?)
            })
            .await
    }

    async fn with_phones(&self, phones: Vec<String>) -> Result<Vec<(String, Contact)>, RepoError> {
        self.db
            .run(move |conn| {
                let own: Vec<Contact> = contacts::table
                    .filter(contacts::phone.eq_any(&phones))
                    .order(contacts::id.asc())
                    .select(Contact::as_select())
                    .load(conn)?;
                // Phones folded into another row (AmoCRM holds them on that contact).
                let merged: Vec<(String, Contact)> = contact_merges::table
                    .inner_join(contacts::table.on(contacts::id.eq(contact_merges::merged_into)))
                    .filter(contact_merges::phone.eq_any(&phones))
                    .order(contacts::id.asc())
                    .select((contact_merges::phone, Contact::as_select()))
                    .load(conn)?;
                let own = own
                    .into_iter()
                    .filter_map(|row| Some((row.phone.clone()?, row)));
                Ok(own.chain(merged).collect())
            })
            .await
    }

    async fn merged_into(&self, id: i64) -> Result<Option<i64>, RepoError> {
        self.db
            .run(move |conn| {
                Ok(contact_merges::table
                    .find(id)
                    .select(contact_merges::merged_into)
                    .first(conn)
                    .optional()?)
            })
            .await
    }

    async fn find_by_phone(&self, phone: &str) -> Result<Option<Contact>, RepoError> {
        let phone = phone.to_owned();
        self.db
            .run(move |conn| {
                let own = active()
                    .filter(contacts::phone.eq(&phone))
                    .order((
                        contacts::sync_status.eq(SyncStatus::Synced.as_str()).desc(),
                        contacts::id.asc(),
                    ))
                    .select(Contact::as_select())
                    .first(conn)
                    .optional()?;
                if own.is_some() {
                    return Ok(own);
                }
                // A phone folded into another row: that row is the person's.
                Ok(contact_merges::table
                    .inner_join(contacts::table.on(contacts::id.eq(contact_merges::merged_into)))
                    .filter(contact_merges::phone.eq(&phone))
                    .filter(contacts::deleted_at.is_null())
                    .order(contacts::id.asc())
                    .select(Contact::as_select())
                    .first(conn)
                    .optional()?)
            })
            .await
    }

    async fn claim_by_phone(
        &self,
        new: NewContact,
        lease: Duration,
    ) -> Result<Claim<Contact>, RepoError> {
        self.db
            .run(move |conn| {
                let lock = lock_name("contact", &new.phone);
                with_named_lock(conn, &lock, CLAIM_LOCK_TIMEOUT_SECS, |conn| {
                    retry_deadlocks(conn, |conn| claim(conn, &new, lease))
                })
            })
            .await
    }

    async fn finish_sync(
        &self,
        id: LocalId,
        amocrm_id: AmoId,
        name: &str,
    ) -> Result<Contact, RepoError> {
        let name = name.to_owned();
        self.db
            .run(move |conn| retry_deadlocks(conn, |conn| finish(conn, id, amocrm_id, &name)))
            .await
    }

    async fn lease(&self, id: i64, lease: Duration) -> Result<Option<Contact>, RepoError> {
        self.db
            .run(move |conn| take_lease(conn, id, lease, load))
            .await
    }

    async fn list(&self, filter: ContactFilter) -> Result<Vec<Contact>, RepoError> {
        self.db
            .run(move |conn| {
                page(conn, filter.window, |mut query| {
                    if let Some(phone) = filter.phone {
                        query = query.filter(contacts::phone.eq(phone));
                    }
                    if let Some(name) = filter.name {
                        query = query.filter(contacts::name.eq(name));
                    }
                    if let Some(amocrm_id) = filter.amocrm_id {
                        query = query.filter(contacts::amocrm_id.eq(amocrm_id));
                    }
                    query
                })
            })
            .await
    }
}
