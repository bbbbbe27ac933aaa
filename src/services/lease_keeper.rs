//! Keeps the leases of every record a sync round holds. A round of many records can
//! wait long on the rate limiter; each lease is renewed every third of its length.
//! A record whose renewal fails is lost: someone else may be working on it now, so
//! the round must not create it in AmoCRM.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::NaiveDateTime;

use crate::repositories::{ContactRepository, LeadRepository, RepoError};

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
        let (mut contacts, mut leads) = (Vec::new(), Vec::new());
        for (record, until) in self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            match record {
                Held::Contact(id) => contacts.push((*id, *until)),
                Held::Lead(id) => leads.push((*id, *until)),
            }
        }
        if !contacts.is_empty() {
            let asked: Vec<i64> = contacts.iter().map(|(id, _)| *id).collect();
            let answer = self.contacts.renew_leases(contacts, self.lease).await;
            self.apply(Held::Contact, &asked, answer);
        }
        if !leads.is_empty() {
            let asked: Vec<i64> = leads.iter().map(|(id, _)| *id).collect();
            let answer = self.leads.renew_leases(leads, self.lease).await;
            self.apply(Held::Lead, &asked, answer);
        }
    }

    fn apply(
        &self,
        held: fn(i64) -> Held,
        asked: &[i64],
        answer: Result<Vec<(i64, Option<NaiveDateTime>)>, RepoError>,
    ) {
        match answer {
            Ok(rows) => {
                for (id, until) in rows {
                    match until {
                        Some(next) => self.keep(held(id), next),
                        // Lapsed or finished: someone else may be working on it now.
                        None => self.mark_lost(held(id)),
                    }
                }
            }
            // The database is unreachable: stop claiming any of them.
            Err(_) => asked.iter().for_each(|id| self.mark_lost(held(*id))),
        }
    }

    fn keep(&self, record: Held, until: NaiveDateTime) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(record, until);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repositories::{MockContactRepository, MockLeadRepository, RepoError};

    fn at(secs: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0)
            .map(|d| d.naive_utc())
            .expect("ts")
    }

    #[tokio::test]
    async fn one_renewal_round_keeps_what_it_still_holds_and_gives_up_the_rest() {
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_renew_leases()
            .withf(|held, _| {
                let mut ids: Vec<i64> = held.iter().map(|(id, _)| *id).collect();
                ids.sort();
                ids == [1, 2]
            })
            .times(1)
            .returning(|_, _| Ok(vec![(1, Some(at(90))), (2, None)]));
        let mut leads = MockLeadRepository::new();
        leads
            .expect_renew_leases()
            .times(1)
            .returning(|_, _| Err(RepoError::Unavailable("pool timed out".into())));
        let keeper = LeaseKeeper::new(&contacts, &leads, Duration::from_secs(90));
        keeper.hold(Held::contact(1), Some(at(0)));
        keeper.hold(Held::contact(2), Some(at(0)));
        keeper.hold(Held::lead(3), Some(at(0)));
        keeper.hold(Held::lead(4), None);

        keeper.renew_all().await;

        assert!(!keeper.lost(Held::contact(1)), "renewed");
        assert!(keeper.lost(Held::contact(2)), "lapsed");
        assert!(keeper.lost(Held::lead(3)), "database unreachable");
        assert!(keeper.lost(Held::lead(4)), "never had a lease end");
    }
}
