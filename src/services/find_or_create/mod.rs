//! Request-time find-or-create: a submission is stored (pending) with its sync job,
//! then found in AmoCRM or created there within the request's inline budget, else
//! handed to the outbox worker. Concurrent submissions of one record share one
//! flight; the record's lease makes that hold across instances.

//!
//! `flight` holds the protocol, once; `entity` what the protocol and the outbox
//! worker's rounds ask of an entity (`EntityRules`); `contacts` and `leads` hold
//! each entity's rules (what "the same record" means, how it is searched for,
//! created and finished), a submission's `Rules` (its claim) and its service
//! (reads, and when a submission is queued rather than flown).

mod contacts;
mod entity;
mod flight;
mod leads;

pub(crate) use contacts::ContactRows;
pub use contacts::{ContactInput, ContactService};
pub(crate) use entity::{EntityRules, Joins};
pub use flight::BUSY_POLL;
pub(crate) use flight::{keep_pending, Flight};
pub(crate) use leads::LeadRows;
pub use leads::{LeadContact, LeadInput, LeadService};

use std::time::Duration;

use crate::repositories::RetryPolicy;
use crate::settings;

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

/// How hard a request (or the worker) tries AmoCRM: the settings' sync section, its
/// retry fields read as the policy the repositories apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// How long a request waits for AmoCRM before answering 202 (`SYNC_INLINE_BUDGET_MS`).
    pub inline_budget: Duration,
    pub retry: RetryPolicy,
    /// How long a record's claim is exclusive (`SYNC_LEASE_SECS`).
    pub lease: Duration,
}

impl From<settings::Sync> for SyncSettings {
    fn from(sync: settings::Sync) -> Self {
        SyncSettings {
            inline_budget: sync.inline_budget,
            retry: RetryPolicy::new(sync.retry_base, sync.max_attempts),
            lease: sync.lease,
        }
    }
}

/// The settings' defaults: an unset environment.
impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings::from(settings::Sync::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_section_reaches_the_services_whole() {
        let section = settings::Sync {
            inline_budget: Duration::from_millis(700),
            max_attempts: 4,
            lease: Duration::from_secs(40),
            retry_base: Duration::from_secs(3),
        };
        let sync = SyncSettings::from(section);
        assert_eq!(sync.lease, Duration::from_secs(40));
        assert_eq!(sync.inline_budget, Duration::from_millis(700));
        assert_eq!(sync.retry, RetryPolicy::new(Duration::from_secs(3), 4));
        assert_eq!(
            SyncSettings::default().lease,
            settings::Sync::default().lease
        );
    }
}
