//! Rows of the mirror as Diesel reads and writes them.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::jobs::Entity;
use crate::domain::SyncStatus;
use crate::schema::{contacts, leads};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = contacts, check_for_backend(diesel::mysql::Mysql))]
pub struct Contact {
    pub id: i64,
    pub amocrm_id: Option<i64>,
    pub name: String,
    pub phone: Option<String>,
    /// Parsed as the row is read: an unknown value fails the query.
    #[diesel(deserialize_as = String)]
    pub sync_status: SyncStatus,
    pub sync_attempts: i32,
    pub sync_error: Option<String>,
    pub sync_lease_until: Option<NaiveDateTime>,
    pub amo_updated_at: Option<i64>,
    pub deleted_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = leads, check_for_backend(diesel::mysql::Mysql))]
pub struct Lead {
    pub id: i64,
    pub amocrm_id: Option<i64>,
    pub name: String,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub contact_amocrm_id: Option<i64>,
    /// Parsed as the row is read: an unknown value fails the query.
    #[diesel(deserialize_as = String)]
    pub sync_status: SyncStatus,
    pub sync_attempts: i32,
    pub sync_error: Option<String>,
    pub sync_lease_until: Option<NaiveDateTime>,
    pub amo_updated_at: Option<i64>,
    pub deleted_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Which rows of a list a page reads: keyset paging by id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Keyset cursor: only ids greater than this.
    pub after_id: Option<i64>,
    pub limit: i64,
    /// Rows AmoCRM deleted too.
    pub include_deleted: bool,
}

/// What the sync protocol reads of any mirrored row: which record it is, whether
/// it is synced, and its lease and attempts.
pub trait SyncRow: Clone + Send + Sync + 'static {
    const ENTITY: Entity;

    fn record_id(&self) -> i64;
    fn amocrm_id(&self) -> Option<i64>;
    /// As stored: empty when AmoCRM holds no name.
    fn name(&self) -> &str;
    fn sync_status(&self) -> SyncStatus;
    fn created_at(&self) -> NaiveDateTime;
    fn updated_at(&self) -> NaiveDateTime;
    /// When AmoCRM deleted the record.
    fn deleted_at(&self) -> Option<NaiveDateTime>;
    fn lease_until(&self) -> Option<NaiveDateTime>;
    fn attempts(&self) -> i32;
    fn synced(&self) -> bool;
}

/// Every mirrored row has the same sync columns; this maps them once per row type.
macro_rules! sync_row {
    ($row:ty, $entity:expr) => {
        impl $row {
            pub fn is_synced(&self) -> bool {
                self.sync_status == SyncStatus::Synced && self.amocrm_id.is_some()
            }
        }

        impl SyncRow for $row {
            const ENTITY: Entity = $entity;

            fn record_id(&self) -> i64 {
                self.id
            }

            fn amocrm_id(&self) -> Option<i64> {
                self.amocrm_id
            }

            fn name(&self) -> &str {
                &self.name
            }

            fn sync_status(&self) -> SyncStatus {
                self.sync_status
            }

            fn created_at(&self) -> NaiveDateTime {
                self.created_at
            }

            fn updated_at(&self) -> NaiveDateTime {
                self.updated_at
            }

            fn deleted_at(&self) -> Option<NaiveDateTime> {
                self.deleted_at
            }

            fn lease_until(&self) -> Option<NaiveDateTime> {
                self.sync_lease_until
            }

            fn attempts(&self) -> i32 {
                self.sync_attempts
            }

            fn synced(&self) -> bool {
                self.is_synced()
            }
        }
    };
}

sync_row!(Contact, Entity::Contact);
sync_row!(Lead, Entity::Lead);

#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = contacts)]
pub struct NewContact {
    pub name: String,
    pub phone: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = leads)]
pub struct NewLead {
    pub name: String,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub contact_amocrm_id: Option<i64>,
}

/// The result of asking for the right to sync a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim<T> {
    /// A synced row already exists: nothing to do.
    Existing(T),
    /// The caller holds the lease and must talk to AmoCRM.
    Leased(T),
    /// Another worker holds a live lease on the pending row.
    Busy(T),
}
