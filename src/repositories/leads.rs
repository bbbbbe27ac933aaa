//! Leads in the mirror. A lead's identity is its exact name plus, when one is
//! given, its contact: AmoCRM allows many leads with one name.

use std::time::Duration;

use async_trait::async_trait;
use diesel::mysql::MysqlConnection;
use diesel::prelude::*;

use super::db::{retry_deadlocks, with_named_lock, Db};
use super::jobs::{self, Entity};
use super::models::{Claim, Lead, NewLead, Window};
use super::sync_rows::{claim_found, fold_into, mirrored_table, take_lease, Record};
use super::sync_state::{lock_name, CLAIM_LOCK_TIMEOUT_SECS};
use super::RepoError;
use crate::amo::AmoLead;
use crate::domain::SyncStatus;
use crate::schema::leads;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadFilter {
    pub name: Option<String>,
    pub status_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub window: Window,
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait LeadRepository: Send + Sync {
    /// One row; soft-deleted rows only when `include_deleted`.
    async fn get(&self, id: i64, include_deleted: bool) -> Result<Option<Lead>, RepoError>;

    /// The lead named exactly `name` and, when `contact_id` is given, linked to it.
    async fn find_match(
        &self,
        name: &str,
        contact_id: Option<i64>,
    ) -> Result<Option<Lead>, RepoError>;

    /// Like `ContactRepository::claim_by_phone`, keyed by name and `new.contact_id`.
    async fn claim(&self, new: NewLead, lease: Duration) -> Result<Claim<Lead>, RepoError>;

    /// Marks the row synced with AmoCRM's view of the lead (folding it into an
    /// existing row that already mirrors the same AmoCRM lead).
    async fn finish_sync(&self, id: i64, amo: AmoLead) -> Result<Lead, RepoError>;

    /// Takes the lease of a pending row for a background retry; `None` when it is
    /// synced, deleted, or leased to someone else right now.
    async fn lease(&self, id: i64, lease: Duration) -> Result<Option<Lead>, RepoError>;

    async fn list(&self, filter: LeadFilter) -> Result<Vec<Lead>, RepoError>;
}

mirrored_table!(MysqlLeadRepository, leads, Lead);

fn matching(
    name: &str,
    contact_id: Option<i64>,
) -> leads::BoxedQuery<'static, diesel::mysql::Mysql> {
    let mut query = active().filter(leads::name.eq(name.to_owned()));
    if let Some(contact_id) = contact_id {
        query = query.filter(leads::contact_id.eq(contact_id));
    }
    query.order((
        leads::sync_status.eq(SyncStatus::Synced.as_str()).desc(),
        leads::id.asc(),
    ))
}

/// Runs under the per-identity named lock, which is what keeps two claimers apart.
fn claim(
    conn: &mut MysqlConnection,
    new: &NewLead,
    lease: Duration,
) -> Result<Claim<Lead>, RepoError> {
    conn.transaction(|conn| {
        let found = matching(&new.name, new.contact_id)
            .select(Lead::as_select())
            .first(conn)
            .optional()?;
        let insert = |conn: &mut MysqlConnection, until| {
            diesel::insert_into(leads::table)
                .values((
                    new,
                    leads::sync_status.eq(SyncStatus::Pending.as_str()),
                    leads::sync_lease_until.eq(until),
                ))
                .execute(conn)
        };
        claim_found(conn, found, lease, insert, load)
    })
}

fn finish(conn: &mut MysqlConnection, id: i64, amo: &AmoLead) -> Result<Lead, RepoError> {
    conn.transaction(|conn| {
        let updated = diesel::update(leads::table.find(id))
            .set((
                leads::amocrm_id.eq(amo.id),
                leads::name.eq(&amo.name),
                leads::price.eq(amo.price),
                leads::status_id.eq(amo.status_id),
                leads::pipeline_id.eq(amo.pipeline_id),
                leads::amo_updated_at.eq(amo.updated_at),
                leads::sync_status.eq(SyncStatus::Synced.as_str()),
                leads::sync_error.eq(None::<String>),
                leads::sync_lease_until.eq(None::<chrono::NaiveDateTime>),
                leads::sync_attempts.eq(leads::sync_attempts + 1),
            ))
            .execute(conn)
            .map_err(RepoError::from);
        match updated {
            Ok(_) => {
                jobs::complete(conn, Entity::Lead, id)?;
                load(conn, id)
            }
            Err(RepoError::Conflict(_)) => {
                // The AmoCRM lead is mirrored already: ours folds into that row.
                let twin: i64 = leads::table
                    .filter(leads::amocrm_id.eq(amo.id))
                    .select(leads::id)
                    .first(conn)?;
                fold_into(conn, Record::new(Entity::Lead, id), twin)?;
                load(conn, twin)
            }
            Err(other) => Err(other),
        }
    })
}

/// The named-lock key: the same name with and without a contact are different identities.
fn claim_key(new: &NewLead) -> String {
    match new.contact_id {
        Some(contact_id) => format!("{}\u{0}{contact_id}", new.name),
        None => format!("{}\u{0}-", new.name),
    }
}

#[async_trait]
impl LeadRepository for MysqlLeadRepository {
    async fn get(&self, id: i64, include_deleted: bool) -> Result<Option<Lead>, RepoError> {
        self.db
            .run(move |conn| one(conn, id, include_deleted))
            .await
    }

    async fn find_match(
        &self,
        name: &str,
        contact_id: Option<i64>,
    ) -> Result<Option<Lead>, RepoError> {
        let name = name.to_owned();
        self.db
            .run(move |conn| {
                Ok(matching(&name, contact_id)
                    .select(Lead::as_select())
                    .first(conn)
                    .optional()?)
            })
            .await
    }

    async fn claim(&self, new: NewLead, lease: Duration) -> Result<Claim<Lead>, RepoError> {
        self.db
            .run(move |conn| {
                let lock = lock_name("lead", &claim_key(&new));
                with_named_lock(conn, &lock, CLAIM_LOCK_TIMEOUT_SECS, |conn| {
                    retry_deadlocks(conn, |conn| claim(conn, &new, lease))
                })
            })
            .await
    }

    async fn finish_sync(&self, id: i64, amo: AmoLead) -> Result<Lead, RepoError> {
        self.db
            .run(move |conn| retry_deadlocks(conn, |conn| finish(conn, id, &amo)))
            .await
    }

    async fn lease(&self, id: i64, lease: Duration) -> Result<Option<Lead>, RepoError> {
        self.db
            .run(move |conn| take_lease(conn, id, lease, load))
            .await
    }

    async fn list(&self, filter: LeadFilter) -> Result<Vec<Lead>, RepoError> {
        self.db
            .run(move |conn| {
                page(conn, filter.window, |mut query| {
                    if let Some(name) = filter.name {
                        query = query.filter(leads::name.eq(name));
                    }
                    if let Some(status_id) = filter.status_id {
                        query = query.filter(leads::status_id.eq(status_id));
                    }
                    if let Some(contact_id) = filter.contact_id {
                        query = query.filter(leads::contact_id.eq(contact_id));
                    }
                    query
                })
            })
            .await
    }
}
