//! One background sync round over many records at once. AmoCRM has no search for
//! several phones or names in one call, so each record is searched for on its own;
//! what is missing is created together, up to the entity's batch per request
//! (contacts 250 per `POST /contacts`, leads 50 per `POST /leads`), and records
//! that bring a prerequisite not yet in AmoCRM (a lead's contact) together with it
//! (50 per `leads/complex`), matched back by `request_id`. Every 50 records the
//! searches have cleared go out while the rest are still searched; the remainder
//! follows the last search. The leases of all records are renewed while the round
//! runs.
//!
//! What each entity's records need (the search, the create body, the batched
//! create, the finish) is its `EntityRules`, the same the request-time flight uses;
//! this module only orders them: turns, halting, lease checks, early batches.
//! `Round::searches` is the table of entities a round carries.
//!
//! While rounds search, the worker's next round waits for this one's `Turn`, which
//! is passed on when only the last `SEARCHES_IN_FLIGHT` searches are left to start:
//! the next round is claimed and queues its searches at the rate limiter while this
//! one ends (its last searches, creates and writes), so the limiter never idles
//! between rounds.
//!
//! While the mirror is authoritative (`MirrorAuthority`) a record on its first attempt
//! is not searched for: the entity's mirror lookup answers instead (a contact is
//! looked up by phone), and what is missing goes straight into the batched creates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::NaiveDateTime;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use slog::Logger;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::creates::{Creates, Joint, Lane};
use super::lease_keeper::LeaseKeeper;
use crate::amo::{AmoError, AmoTransport};
use crate::lifecycle::Lifecycle;
use crate::repositories::{
    Contact, ContactRepository, Lead, LeadRepository, Record, SyncRow, SyncRowRepository,
};
use crate::services::find_or_create::{ContactRows, EntityRules, Joins, LeadRows, SyncSettings};
use crate::services::MirrorAuthority;

/// Searches in flight at once: enough to keep the rate limiter busy at any latency.
const SEARCHES_IN_FLIGHT: usize = 16;

/// Contacts cleared by their searches that are worth a create of their own while the
/// round goes on searching: AmoCRM's recommended batch. Each such create costs one
/// more call per 50 contacts (2 %), and saves them the wait for the round's end.
const CREATE_EARLY: usize = 50;

/// The right to claim a round and start its searches: one round at a time has it.
#[derive(Default)]
pub struct Turn(Mutex<Option<OwnedSemaphorePermit>>);

impl Turn {
    /// Waits for `turns` (a semaphore of one permit) when `take`, else holds nothing.
    pub async fn take(turns: &Arc<Semaphore>, take: bool) -> Turn {
        let permit = if take {
            Arc::clone(turns).acquire_owned().await.ok()
        } else {
            None
        };
        Turn(Mutex::new(permit))
    }

    /// Lets the next round start (also when the holder is dropped).
    pub fn pass(&self) {
        drop(self.0.lock().unwrap_or_else(PoisonError::into_inner).take());
    }

    #[cfg(test)]
    pub fn is_held(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// A round's searches, handed out one by one; passes the turn on as the last
/// `SEARCHES_IN_FLIGHT` are handed out, unless the round halted. (A named type, not
/// a closure, so the worker's future stays `Send`.)
struct PassingOn<'r, I> {
    searches: I,
    left: usize,
    turn: Option<&'r Turn>,
    halt: &'r AtomicBool,
}

impl<I: Iterator> Iterator for PassingOn<'_, I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let search = self.searches.next()?;
        // The next round's claim and first searches take a few seconds: started
        // now, they are at the limiter before this round's last searches are done.
        if self.left <= SEARCHES_IN_FLIGHT && !self.halt.load(Ordering::SeqCst) {
            if let Some(turn) = self.turn {
                turn.pass();
            }
        }
        self.left -= 1;
        Some(search)
    }
}

/// Records leased for one round.
#[derive(Debug, Default)]
pub struct Round {
    pub contacts: Vec<Contact>,
    pub leads: Vec<LeadItem>,
}

impl Round {
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty() && self.leads.is_empty()
    }

    /// Every record the round holds, a prerequisite after the record that brought it.
    fn leases(&self) -> Vec<(Record, Option<NaiveDateTime>)> {
        let mut leases: Vec<_> = self.contacts.iter().map(lease_of).collect();
        for item in &self.leads {
            leases.push(lease_of(&item.row));
            if let Link::Pending(contact) = &item.contact {
                leases.push(lease_of(contact));
            }
        }
        leases
    }

    /// The table of entities: each record's search, in the order they are sent, and
    /// the lanes its creates gather in (in the order they are sent at the end).
    fn searches<'r>(
        self,
        runner: &'r RoundRunner<'r>,
        lanes: &'r Lanes<'r>,
        halt: &'r AtomicBool,
        search: bool,
    ) -> Vec<BoxFuture<'r, Plan<'r>>> {
        // Boxed one by one (not mapped lazily) so the worker's future stays `Send`.
        let mut searches: Vec<BoxFuture<'r, Plan<'r>>> = Vec::new();
        for row in self.contacts {
            searches.push(Box::pin(runner.plan(
                &lanes.contacts,
                row,
                None,
                halt,
                search,
            )));
        }
        for LeadItem { row, contact } in self.leads {
            let (lane, joint) = (&lanes.leads, &lanes.complex);
            searches.push(Box::pin(
                runner.plan_linked(lane, joint, row, contact, halt, search),
            ));
        }
        searches
    }
}

/// Where a round's cleared records gather, per entity (and per entity with its
/// prerequisite), until they are created together.
struct Lanes<'r> {
    contacts: Lane<'r, ContactRows<'r>>,
    leads: Lane<'r, LeadRows<'r>>,
    complex: Joint<'r, LeadRows<'r>, ContactRows<'r>>,
}

impl<'r> Lanes<'r> {
    fn new(runner: &'r RoundRunner<'r>, rules: &'r (ContactRows<'r>, LeadRows<'r>)) -> Self {
        let (contacts, leads) = rules;
        Lanes {
            contacts: Lane::new(runner, contacts),
            leads: Lane::new(runner, leads),
            complex: Joint::new(runner, leads, contacts),
        }
    }

    fn all(&self) -> [&dyn Creates; 3] {
        [&self.contacts, &self.leads, &self.complex]
    }
}

/// A lead and its contact.
pub type LeadItem = Linked<Lead, Contact>;

/// A lead's contact.
pub type LeadLink = Link<Contact>;

/// A record that links to a record of another entity (a lead to its contact).
#[derive(Debug)]
pub struct Linked<R, P> {
    pub row: R,
    pub contact: Link<P>,
}

/// What a record links to.
#[derive(Debug)]
pub enum Link<P> {
    /// This AmoCRM record, or none.
    Known(Option<i64>),
    /// A local record still pending; the round holds its lease too, and it is found
    /// or created first (or together with the record).
    Pending(P),
}

/// What searching told the round to do with a record.
enum Plan<'r> {
    /// Ends the record where the round settles its plans: a found record finished,
    /// a failure recorded, a broken record buried.
    Settle(BoxFuture<'r, ()>),
    /// Cleared for the batched create: `clear` puts it in its lane, unless the lease
    /// of one of `records` was lost meanwhile.
    Create(Vec<Record>, Box<dyn FnOnce() + Send + 'r>),
    /// Not searched (AmoCRM was failing for the searches before it, or the service
    /// drains): given back.
    Skipped(Vec<Record>),
}

/// What AmoCRM (or, instead of it, the mirror) holds for one record.
enum Lookup<E: EntityRules> {
    Found(E::Row, E::Amo),
    Missing(E::Row, E::New),
    Failed(Record, AmoError),
    /// The stored record cannot be sent at all (e.g. its phone no longer parses).
    Broken(Record, String),
    Skipped(Record),
}

/// What a round leaves for the worker to do.
#[derive(Debug, Default)]
pub struct RoundReport {
    /// A search failed for a reason that is not about its record (429, 5xx, timeout,
    /// access refused): the rest of the round was not sent.
    pub halted: bool,
    /// Records not searched: still leased, their jobs untouched and not counted.
    pub skipped: Vec<Record>,
}

pub struct RoundRunner<'a> {
    pub amo: &'a dyn AmoTransport,
    pub contacts: &'a dyn ContactRepository,
    pub leads: &'a dyn LeadRepository,
    pub rows: &'a dyn SyncRowRepository,
    pub settings: SyncSettings,
    /// Whether records are searched for in AmoCRM before they are created.
    pub authority: &'a MirrorAuthority,
    /// While the service drains, no new search starts: the rest is put back.
    pub lifecycle: Option<&'a Lifecycle>,
    /// Passed on once only the round's last searches are left to start, unless
    /// the round halted by then.
    pub turn: Option<&'a Turn>,
    pub logger: &'a Logger,
}

impl RoundRunner<'_> {
    /// Searches for every record, then creates what is missing; every record ends
    /// synced, pending with its failure recorded, untouched (lease lost), or skipped
    /// (reported, for the worker to put back).
    pub async fn run(&self, round: Round) -> RoundReport {
        let keeper = LeaseKeeper::new(self.rows, self.settings.lease);
        for (record, until) in round.leases() {
            keeper.hold(record, until);
        }
        tokio::select! {
            report = self.search_then_create(round, &keeper) => report,
            () = keeper.keep_renewing() => RoundReport::default(),
        }
    }

    async fn search_then_create(&self, round: Round, keeper: &LeaseKeeper<'_>) -> RoundReport {
        let rules = (
            ContactRows {
                repo: self.contacts,
                amo: self.amo,
            },
            LeadRows {
                repo: self.leads,
                amo: self.amo,
            },
        );
        let lanes = Lanes::new(self, &rules);
        // Set by the first search that fails for AmoCRM's reasons: the searches not yet
        // sent are skipped, instead of hundreds of calls meeting the same 429 or outage.
        let halt = AtomicBool::new(false);
        // One verdict for the whole round: its records are created together anyway.
        let search = self.authority.search_amocrm().await;
        let searches = round.searches(self, &lanes, &halt, search);
        let mut report = RoundReport::default();
        self.work(searches, &lanes.all(), keeper, &halt, search, &mut report)
            .await;
        report
    }

    /// Settles the plans as the searches come back, sending a lane's creates early
    /// while searches go on, and the rest after the last search.
    async fn work<'r>(
        &self,
        searches: Vec<BoxFuture<'r, Plan<'r>>>,
        lanes: &[&'r dyn Creates],
        keeper: &LeaseKeeper<'_>,
        halt: &AtomicBool,
        search: bool,
        report: &mut RoundReport,
    ) {
        let searches = PassingOn {
            left: searches.len(),
            searches: searches.into_iter(),
            turn: self.turn,
            halt,
        };
        let mut plans = futures::stream::iter(searches).buffer_unordered(SEARCHES_IN_FLIGHT);
        // Creates of what the searches have cleared so far, sent while the rest are
        // searched: the first records of a long round reach AmoCRM seconds after their
        // search, not after the round's last one.
        let mut creating: FuturesUnordered<BoxFuture<'r, ()>> = FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                Some(()) = creating.next(), if !creating.is_empty() => {}
                plan = plans.next() => {
                    let Some(plan) = plan else { break };
                    match plan {
                        Plan::Settle(settle) => settle.await,
                        Plan::Skipped(records) => report.skipped.extend(records),
                        // Someone else holds the record now: they search and create, not us.
                        Plan::Create(records, _) if records.iter().any(|r| keeper.lost(*r)) => {}
                        Plan::Create(_, clear) => clear(),
                    }
                    // Without searches the plans come at once: one full batch is cheaper.
                    if !search {
                        continue;
                    }
                    creating.extend(lanes.iter().filter_map(|&lane| lane.take(CREATE_EARLY)));
                }
            }
        }
        while creating.next().await.is_some() {}
        report.halted = halt.load(Ordering::SeqCst);
        for &lane in lanes {
            if let Some(create) = lane.take(0) {
                create.await;
            }
        }
    }

    /// Whether searches not yet sent should be skipped.
    fn stopping(&self, halt: &AtomicBool) -> bool {
        halt.load(Ordering::SeqCst) || self.lifecycle.is_some_and(Lifecycle::is_draining)
    }

    /// Searches AmoCRM for `row` (linked to `link`), or asks the mirror instead when
    /// this attempt does not search.
    async fn look_up<E: EntityRules>(
        &self,
        rules: &E,
        row: E::Row,
        link: Option<i64>,
        halt: &AtomicBool,
        search: bool,
    ) -> Lookup<E> {
        if self.stopping(halt) {
            return Lookup::Skipped(record_of(&row));
        }
        let new = match rules.new_record(&row, link) {
            Ok(new) => new,
            Err(why) => return Lookup::Broken(record_of(&row), why),
        };
        if !rules.searches(&row, search) {
            return match rules.mirrored(&row, &new).await {
                Ok(Some(found)) => Lookup::Found(row, found),
                Ok(None) => Lookup::Missing(row, new),
                // Given back untouched: the next round looks again.
                Err(error) => {
                    let record = record_of(&row);
                    slog::warn!(self.logger, "could not look a record up in the mirror";
                        "entity" => record.entity.as_str(), "record.id" => record.id,
                        "error" => error.to_string());
                    Lookup::Skipped(record)
                }
            };
        }
        match rules.search(&new).await {
            Ok(Some(found)) => Lookup::Found(row, found),
            Ok(None) => Lookup::Missing(row, new),
            Err(error) => {
                halt_unless_rejection(halt, &error);
                Lookup::Failed(record_of(&row), error)
            }
        }
    }

    /// One record's search and what it leaves to do.
    async fn plan<'r, E: EntityRules>(
        &'r self,
        lane: &'r Lane<'r, E>,
        row: E::Row,
        link: Option<i64>,
        halt: &'r AtomicBool,
        search: bool,
    ) -> Plan<'r> {
        match self.look_up(lane.rules, row, link, halt, search).await {
            Lookup::Found(row, found) => Plan::Settle(Box::pin(async move {
                self.finish(lane.rules, &row, found, false).await;
            })),
            Lookup::Missing(row, new) => {
                let records = vec![record_of(&row)];
                Plan::Create(records, Box::new(move || lane.push((row, new))))
            }
            Lookup::Failed(record, error) => {
                Plan::Settle(Box::pin(async move { self.fail(record, &error).await }))
            }
            Lookup::Broken(record, why) => {
                Plan::Settle(Box::pin(async move { self.bury(record, &why).await }))
            }
            Lookup::Skipped(record) => Plan::Skipped(vec![record]),
        }
    }

    /// A record that links to another: a pending prerequisite is looked up first;
    /// found, it is finished and the record searched for linked to it; missing, both
    /// are created together.
    async fn plan_linked<'r, E, P>(
        &'r self,
        lane: &'r Lane<'r, E>,
        joint: &'r Joint<'r, E, P>,
        row: E::Row,
        link: Link<P::Row>,
        halt: &'r AtomicBool,
        search: bool,
    ) -> Plan<'r>
    where
        E: Joins<P>,
        P: EntityRules,
    {
        let pending = match link {
            Link::Known(id) => return self.plan(lane, row, id, halt, search).await,
            Link::Pending(pending) => pending,
        };
        let record = record_of(&row);
        let prerequisite = joint.prerequisite;
        let link = match self
            .look_up(prerequisite, pending, None, halt, search)
            .await
        {
            Lookup::Found(pending, found) => {
                let id = prerequisite.amo_id(&found);
                self.finish(prerequisite, &pending, found, false).await;
                id
            }
            // No record can be linked to one AmoCRM does not have yet.
            Lookup::Missing(pending, pending_new) => {
                let records = vec![record, record_of(&pending)];
                return match joint.rules.new_record(&row, None) {
                    Ok(new) => Plan::Create(
                        records,
                        Box::new(move || joint.push(((row, pending), (new, pending_new)))),
                    ),
                    Err(why) => Plan::Settle(Box::pin(async move {
                        self.bury(records[0], &why).await;
                        self.give_back(records[1]).await;
                    })),
                };
            }
            Lookup::Failed(pending, error) => {
                return Plan::Settle(Box::pin(async move {
                    self.fail(record, &error).await;
                    self.give_back(pending).await;
                }))
            }
            Lookup::Broken(pending, why) => {
                // The prerequisite's own job buries it; the record waits for it as before.
                self.bury(pending, &why).await;
                let its = pending.entity.as_str();
                let error = AmoError::InvalidResponse(format!("its {its}: {why}"));
                return Plan::Settle(Box::pin(async move { self.fail(record, &error).await }));
            }
            Lookup::Skipped(pending) => return Plan::Skipped(vec![record, pending]),
        };
        self.plan(lane, row, Some(link), halt, search).await
    }
}

fn record_of<T: SyncRow>(row: &T) -> Record {
    Record::new(T::ENTITY, row.record_id())
}

fn lease_of<T: SyncRow>(row: &T) -> (Record, Option<NaiveDateTime>) {
    (record_of(row), row.lease_until())
}

/// A refusal is about one record; anything else (429, 5xx, timeout, access) is about
/// AmoCRM, and will meet the rest of the round too.
fn halt_unless_rejection(halt: &AtomicBool, error: &AmoError) {
    if !error.is_rejection() {
        halt.store(true, Ordering::SeqCst);
    }
}

mod creates;

#[cfg(test)]
mod tests;
