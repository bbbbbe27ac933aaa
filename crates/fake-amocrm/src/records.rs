//! The account's records as plain values (contacts, leads, companies), the ids of its fields,
//! enums, statuses and user, and the clock. Everything else reads these; they read nothing.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) const PHONE_FIELD_ID: i64 = 111;
pub(crate) const NOTE_FIELD_ID: i64 = 333;
pub(crate) const LEAD_COMMENT_FIELD_ID: i64 = 444;
/// A date field of leads: set when the lead is won or lost.
pub(crate) const CLOSED_DATE_FIELD_ID: i64 = 555;
/// Phone enum codes with the enum ids of this fake account.
pub(crate) const PHONE_ENUMS: [(&str, i64); 6] = [
    ("WORK", 222),
    ("WORKDD", 223),
    ("MOB", 224),
    ("FAX", 225),
    ("HOME", 226),
    ("OTHER", 227),
];
pub(crate) const DEFAULT_STATUS_ID: i64 = 10_101;
pub(crate) const DEFAULT_PIPELINE_ID: i64 = 2_020;
pub(crate) const WON_STATUS_ID: i64 = 142;
pub(crate) const LOST_STATUS_ID: i64 = 143;
pub(crate) const RESPONSIBLE_USER_ID: i64 = 8_370_001;

#[derive(Clone, Default)]
pub(crate) struct Contact {
    pub id: i64,
    pub name: String,
    /// The value as sent, with an index into `PHONE_ENUMS`.
    pub phones: Vec<(String, usize)>,
    pub note: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted: bool,
}

#[derive(Clone, Default)]
pub(crate) struct Lead {
    pub id: i64,
    pub name: String,
    pub price: Option<i64>,
    pub status_id: i64,
    pub pipeline_id: i64,
    /// The main contact first.
    pub contact_ids: Vec<i64>,
    pub comment: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub deleted: bool,
}

#[derive(Clone, Default)]
pub(crate) struct Company {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted: bool,
}

/// Unix seconds.
pub(crate) fn now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
    since_epoch.map_or(0, |d| d.as_secs() as i64)
}

/// Phones as given, all with the first enum (`WORK`).
pub(crate) fn plain_phones<S: AsRef<str>>(phones: &[S]) -> Vec<(String, usize)> {
    phones.iter().map(|p| (p.as_ref().to_owned(), 0)).collect()
}
