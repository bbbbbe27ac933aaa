//! Keeps the leases of every record a sync round holds. A round of many records can
//! wait long on the rate limiter; each lease is renewed every third of its length.
//! A record whose renewal fails is lost: someone else may be working on it now, so
//! the round must not create it in AmoCRM.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::NaiveDateTime;

use crate::repositories::{Record, SyncRowRepository};

pub struct LeaseKeeper<'a> {
    rows: &'a dyn SyncRowRepository,
    lease: Duration,
    /// Each held record and the end of its lease as last written.
    held: Mutex<HashMap<Record, NaiveDateTime>>,
    lost: Mutex<HashSet<Record>>,
}

impl<'a> LeaseKeeper<'a> {
    pub fn new(rows: &'a dyn SyncRowRepository, lease: Duration) -> Self {
        LeaseKeeper {
            rows,
            lease,
            held: Mutex::new(HashMap::new()),
            lost: Mutex::new(HashSet::new()),
        }
    }

    /// Starts keeping a record leased until `until`; one without a lease end is lost.
    pub fn hold(&self, record: Record, until: Option<NaiveDateTime>) {
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

    pub fn lost(&self, record: Record) -> bool {
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
        let held: Vec<(Record, NaiveDateTime)> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(record, until)| (*record, *until))
            .collect();
        if held.is_empty() {
            return;
        }
        match self.rows.renew_leases(held.clone(), self.lease).await {
            Ok(rows) => {
                for (record, until) in rows {
                    match until {
                        Some(next) => self.keep(record, next),
                        // Lapsed or finished: someone else may be working on it now.
                        None => self.mark_lost(record),
                    }
                }
            }
            // The database is unreachable: stop claiming any of them.
            Err(_) => held
                .into_iter()
                .for_each(|(record, _)| self.mark_lost(record)),
        }
    }

    fn keep(&self, record: Record, until: NaiveDateTime) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(record, until);
    }

    fn mark_lost(&self, record: Record) {
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
    use crate::repositories::{Entity, MockSyncRowRepository, RepoError};

    fn at(secs: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0)
            .map(|d| d.naive_utc())
            .expect("ts")
    }

    fn contact(id: i64) -> Record {
        Record::new(Entity::Contact, id)
    }

    fn lead(id: i64) -> Record {
        Record::new(Entity::Lead, id)
    }

    #[tokio::test]
    async fn one_renewal_round_keeps_what_it_still_holds_and_gives_up_the_rest() {
        let mut rows = MockSyncRowRepository::new();
        rows.expect_renew_leases()
            .withf(|held, _| {
                let mut asked: Vec<(Entity, i64)> =
                    held.iter().map(|(r, _)| (r.entity, r.id)).collect();
                asked.sort_by_key(|(entity, id)| (entity.as_str(), *id));
                asked
                    == [
                        (Entity::Contact, 1),
                        (Entity::Contact, 2),
                        (Entity::Lead, 3),
                    ]
            })
            .times(1)
            .returning(|_, _| {
                Ok(vec![
                    (contact(1), Some(at(90))),
                    (contact(2), None),
                    (lead(3), Some(at(90))),
                ])
            });
        let keeper = LeaseKeeper::new(&rows, Duration::from_secs(90));
        keeper.hold(contact(1), Some(at(0)));
        keeper.hold(contact(2), Some(at(0)));
        keeper.hold(lead(3), Some(at(0)));
        keeper.hold(lead(4), None);

        keeper.renew_all().await;

        assert!(!keeper.lost(contact(1)), "renewed");
        assert!(keeper.lost(contact(2)), "lapsed");
        assert!(!keeper.lost(lead(3)), "a lead renewed with the contacts");
        assert!(keeper.lost(lead(4)), "never had a lease end");
    }

    #[tokio::test]
    async fn an_unreachable_database_gives_up_every_held_record() {
        let mut rows = MockSyncRowRepository::new();
        rows.expect_renew_leases()
            .times(1)
            .returning(|_, _| Err(RepoError::Unavailable("pool timed out".into())));
        let keeper = LeaseKeeper::new(&rows, Duration::from_secs(90));
        keeper.hold(contact(1), Some(at(0)));
        keeper.hold(lead(3), Some(at(0)));

        keeper.renew_all().await;

        assert!(keeper.lost(contact(1)));
        assert!(keeper.lost(lead(3)));
    }
}
