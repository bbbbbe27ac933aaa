//! Request-time find-or-create: a submission is stored (pending) with its sync job,
//! then found in AmoCRM or created there within the request's inline budget, else
//! handed to the outbox worker. Concurrent submissions of one record share one
//! flight; the record's lease makes that hold across instances.

//!
//! `flight` holds the protocol, once; `contacts` and `leads` hold each entity's
//! rules (what "the same record" means, how it is searched for and created) and its
//! service (reads, and when a submission is queued rather than flown).

mod contacts;
mod flight;
mod leads;

pub(crate) use contacts::pick_contact;
pub use contacts::{ContactInput, ContactService};
pub use flight::BUSY_POLL;
pub(crate) use flight::{keep_pending, Flight};
pub(crate) use leads::pick_lead;
pub use leads::{LeadContact, LeadInput, LeadService};

use std::time::Duration;

use crate::repositories::RetryPolicy;

/// How long a claim on a pending record is exclusive, unless configured. Longer than
/// any single AmoCRM round (searches page through results, each call has its own
/// timeout); after a crash, the record waits this long before anyone retries it.
pub const SYNC_LEASE: Duration = Duration::from_secs(90);

/// A record and whether this request created it in AmoCRM.
#[derive(Debug, Clone, PartialEq)]
pub struct Synced<T> {
    pub record: T,
    pub created: bool,
}

/// How a find-or-create ended, as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Saved<T> {
    /// Created in AmoCRM by this request.
    Created(T),
    /// Already in the mirror or in AmoCRM.
    Found(T),
    /// Stored locally and queued: AmoCRM did not confirm it within the inline budget
    /// (slow, rate-limited, failing). The sync worker finishes it.
    Accepted(T),
}

impl<T> Saved<T> {
    pub fn record(&self) -> &T {
        match self {
            Saved::Created(r) | Saved::Found(r) | Saved::Accepted(r) => r,
        }
    }

    pub fn into_record(self) -> T {
        match self {
            Saved::Created(r) | Saved::Found(r) | Saved::Accepted(r) => r,
        }
    }
}

/// How hard a request tries AmoCRM itself before handing over to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// How long a request waits for AmoCRM before answering 202 (`SYNC_INLINE_BUDGET_MS`).
    pub inline_budget: Duration,
    pub retry: RetryPolicy,
    /// How long a record's claim is exclusive (`SYNC_LEASE_SECS`).
    pub lease: Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            inline_budget: Duration::from_millis(1500),
            retry: RetryPolicy::default(),
            lease: SYNC_LEASE,
        }
    }
}
