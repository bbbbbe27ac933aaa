//! Keeps the leases of every record a sync round holds. A round of many records can
//! wait long on the rate limiter; each lease is renewed every third of its length.
//! A record whose renewal fails is lost: someone else may be working on it now, so
//! the round must not create it in AmoCRM.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::NaiveDateTime;

use crate::repositories::{ContactRepository, LeadRepository};

/// A record a round holds the lease of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Held {
    Contact(i64),
    Lead(i64),
}

impl Held {
    pub fn contact(id: i64) -> Self {
        Held::Contact(id)
    }

    pub fn lead(id: i64) -> Self {
        Held::Lead(id)
    }

    pub fn id(self) -> i64 {
        match self {
            Held::Contact(id) | Held::Lead(id) => id,
        }
    }

    pub fn entity_name(self) -> &'static str {
        match self {
            Held::Contact(_) => "contact",
            Held::Lead(_) => "lead",
        }
    }
}

pub struct LeaseKeeper<'a> {
    contacts: &'a dyn ContactRepository,
    leads: &'a dyn LeadRepository,
    lease: Duration,
    /// Each held record and the end of its lease as last written.
    held: Mutex<HashMap<Held, NaiveDateTime>>,
    lost: Mutex<HashSet<Held>>,
}

impl<'a> LeaseKeeper<'a> {
    pub fn new(
        contacts: &'a dyn ContactRepository,
        leads: &'a dyn LeadRepository,
        lease: Duration,
    ) -> Self {
        LeaseKeeper {
            contacts,
            leads,
            lease,
            held: Mutex::new(HashMap::new()),
            lost: Mutex::new(HashSet::new()),
        }
    }

    /// Starts keeping a record leased until `until`; one without a lease end is lost.
    pub fn hold(&self, record: Held, until: Option<NaiveDateTime>) {
        match until {
            Some(until) => {
                self.held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(record, until);
            }
            None => self.mark_lost(record),
        }
    }

    pub fn lost(&self, record: Held) -> bool {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&record)
    }

    /// Renews every held lease every third of the lease; never returns.
    pub async fn keep_renewing(&self) {
        loop {
            tokio::time::sleep(self.lease / 3).await;
            self.renew_all().await;
        }
    }

    async fn renew_all(&self) {
        let held: Vec<(Held, NaiveDateTime)> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(record, until)| (*record, *until))
            .collect();
        for (record, until) in held {
            let renewed = match record {
                Held::Contact(id) => self.contacts.renew_lease(id, until, self.lease).await,
                Held::Lead(id) => self.leads.renew_lease(id, until, self.lease).await,
            };
            match renewed {
                Ok(Some(next)) => {
                    self.held
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(record, next);
                }
                // Lapsed, finished, or the database is unreachable: stop claiming it.
                Ok(None) | Err(_) => self.mark_lost(record),
            }
        }
    }

    fn mark_lost(&self, record: Held) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&record);
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(record);
    }
}
