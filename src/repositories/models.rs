//! Rows of the mirror as Diesel reads and writes them.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::{contacts, leads};

/// Where a row stands with AmoCRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Accepted locally; AmoCRM has not confirmed it yet.
    Pending,
    /// Has its `amocrm_id`.
    Synced,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Pending => "pending",
            SyncStatus::Synced => "synced",
        }
    }

    pub fn parse(raw: &str) -> SyncStatus {
        if raw == "synced" {
            SyncStatus::Synced
        } else {
            SyncStatus::Pending
        }
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = contacts, check_for_backend(diesel::mysql::Mysql))]
pub struct Contact {
    pub id: i64,
    pub amocrm_id: Option<i64>,
    pub name: String,
    pub phone: Option<String>,
    pub sync_status: String,
    pub sync_attempts: i32,
    pub sync_error: Option<String>,
    pub sync_lease_until: Option<NaiveDateTime>,
    pub amo_updated_at: Option<i64>,
    pub deleted_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Contact {
    pub fn status(&self) -> SyncStatus {
        SyncStatus::parse(&self.sync_status)
    }
    pub fn is_synced(&self) -> bool {
        self.status() == SyncStatus::Synced && self.amocrm_id.is_some()
    }
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
    pub sync_status: String,
    pub sync_attempts: i32,
    pub sync_error: Option<String>,
    pub sync_lease_until: Option<NaiveDateTime>,
    pub amo_updated_at: Option<i64>,
    pub deleted_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Lead {
    pub fn status(&self) -> SyncStatus {
        SyncStatus::parse(&self.sync_status)
    }
    pub fn is_synced(&self) -> bool {
        self.status() == SyncStatus::Synced && self.amocrm_id.is_some()
    }
}

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
