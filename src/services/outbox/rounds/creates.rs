//! The creating half of a round: what the searches found missing gathers in a lane
//! per entity (or per entity with its new prerequisite) and goes to AmoCRM in
//! batches; each result ends on its record (synced, failed, buried or given back).

use std::sync::{Mutex, PoisonError};

use futures::future::BoxFuture;

use super::{record_of, RoundRunner};
use crate::amo::AmoError;
use crate::repositories::{Record, SyncRow};
use crate::services::find_or_create::{keep_pending, EntityRules, Joins};
use crate::services::outbox::batches::{send_halving, Created};

/// Records cleared for creation, gathering until they are sent together.
pub(super) trait Creates: Sync {
    /// Their create, when at least `early` have gathered (or a full request's worth);
    /// with `early` 0, whatever has gathered.
    fn take(&self, early: usize) -> Option<BoxFuture<'_, ()>>;
}

/// Takes what `cleared` holds once it reaches `early` (at most `max`).
fn take_from<T>(cleared: &Mutex<Vec<T>>, early: usize, max: usize) -> Option<Vec<T>> {
    let mut cleared = cleared.lock().unwrap_or_else(PoisonError::into_inner);
    if cleared.is_empty() || cleared.len() < early.min(max) {
        return None;
    }
    Some(std::mem::take(&mut *cleared))
}

/// One entity's records, created `max_per_create` per request.
pub(super) struct Lane<'r, E: EntityRules> {
    runner: &'r RoundRunner<'r>,
    pub(super) rules: &'r E,
    cleared: Mutex<Vec<(E::Row, E::New)>>,
}

impl<'r, E: EntityRules> Lane<'r, E> {
    pub(super) fn new(runner: &'r RoundRunner<'r>, rules: &'r E) -> Self {
        Lane {
            runner,
            rules,
            cleared: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn push(&self, item: (E::Row, E::New)) {
        let mut cleared = self.cleared.lock().unwrap_or_else(PoisonError::into_inner);
        cleared.push(item);
    }

    async fn send(&self, batch: Vec<(E::Row, E::New)>) {
        let (runner, rules) = (self.runner, self.rules);
        for chunk in batch.chunks(rules.max_per_create()) {
            let news: Vec<E::New> = chunk.iter().map(|(_, new)| new.clone()).collect();
            let results = send_halving(&news, |part| rules.create_many(part)).await;
            for ((row, new), result) in chunk.iter().zip(results) {
                match result {
                    Created::Yes(id) => {
                        let made = rules.created(new.clone(), id);
                        runner.finish(rules, row, made, true).await;
                    }
                    Created::Unanswered => runner.fail(record_of(row), &unanswered()).await,
                    Created::Failed(error) => runner.fail(record_of(row), &error).await,
                }
            }
        }
    }
}

impl<E: EntityRules> Creates for Lane<'_, E> {
    fn take(&self, early: usize) -> Option<BoxFuture<'_, ()>> {
        let batch = take_from(&self.cleared, early, self.rules.max_per_create())?;
        Some(Box::pin(self.send(batch)))
    }
}

/// A record of `E` and its prerequisite of `P`, with their bodies.
pub(super) type Pair<E, P> = (
    (<E as EntityRules>::Row, <P as EntityRules>::Row),
    (<E as EntityRules>::New, <P as EntityRules>::New),
);

/// Records of `E` created each with its new prerequisite of `P` (a lead with its
/// contact, by `leads/complex`).
pub(super) struct Joint<'r, E: Joins<P>, P: EntityRules> {
    runner: &'r RoundRunner<'r>,
    pub(super) rules: &'r E,
    pub(super) prerequisite: &'r P,
    cleared: Mutex<Vec<Pair<E, P>>>,
}

impl<'r, E: Joins<P>, P: EntityRules> Joint<'r, E, P> {
    pub(super) fn new(runner: &'r RoundRunner<'r>, rules: &'r E, prerequisite: &'r P) -> Self {
        Joint {
            runner,
            rules,
            prerequisite,
            cleared: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn push(&self, item: Pair<E, P>) {
        let mut cleared = self.cleared.lock().unwrap_or_else(PoisonError::into_inner);
        cleared.push(item);
    }

    async fn send(&self, batch: Vec<Pair<E, P>>) {
        let (runner, rules, prerequisite) = (self.runner, self.rules, self.prerequisite);
        for chunk in batch.chunks(rules.max_per_create()) {
            let news: Vec<(E::New, P::New)> = chunk.iter().map(|(_, new)| new.clone()).collect();
            let results = send_halving(&news, |part| rules.create_with(part)).await;
            for (((row, pending), (new, pending_new)), result) in chunk.iter().zip(results) {
                let error = match result {
                    Created::Yes((id, link)) => {
                        let made = prerequisite.created(pending_new.clone(), link);
                        runner.finish(prerequisite, pending, made, true).await;
                        let made = rules.created(rules.linked(new.clone(), link), id);
                        runner.finish(rules, row, made, true).await;
                        continue;
                    }
                    Created::Unanswered => unanswered(),
                    Created::Failed(error) => error,
                };
                runner.fail(record_of(row), &error).await;
                runner.give_back(record_of(pending)).await;
            }
        }
    }
}

impl<E: Joins<P>, P: EntityRules> Creates for Joint<'_, E, P> {
    fn take(&self, early: usize) -> Option<BoxFuture<'_, ()>> {
        let batch = take_from(&self.cleared, early, self.rules.max_per_create())?;
        Some(Box::pin(self.send(batch)))
    }
}

impl RoundRunner<'_> {
    /// Marks the row synced with what AmoCRM holds (`created`: by this round).
    pub(super) async fn finish<E: EntityRules>(
        &self,
        rules: &E,
        row: &E::Row,
        amo: E::Amo,
        created: bool,
    ) {
        let (record, amocrm_id) = (record_of(row), rules.amo_id(&amo));
        let entity = record.entity.as_str();
        match rules.finish(row, amo).await {
            Ok(finished) => slog::info!(self.logger, "record synced";
                "entity" => entity, "record.id" => finished.record_id(),
                "record.amocrm_id" => amocrm_id, "amo.created" => created),
            // The lease lapses and the next round finds the AmoCRM record by its search.
            Err(error) => slog::error!(self.logger, "could not store a synced record";
                "entity" => entity, "record.id" => record.id, "record.amocrm_id" => amocrm_id,
                "error" => error.to_string()),
        }
    }

    /// Records the failure on the record and its job (backoff, or dead when refused).
    pub(super) async fn fail(&self, record: Record, error: &AmoError) {
        let why = error.to_string();
        let (retry, permanent) = (self.settings.retry, error.is_rejection());
        let recorded = self.rows.record_failure(record, &why, retry, permanent);
        keep_pending(self.logger, record, error.clone(), recorded).await;
    }

    /// A record that cannot be sent as stored: its job is dead at once, visible to operators.
    pub(super) async fn bury(&self, record: Record, why: &str) {
        let retry = self.settings.retry;
        let buried = self.rows.record_failure(record, why, retry, true).await;
        slog::error!(self.logger, "a stored record cannot be synced, its job is dead";
            "entity" => record.entity.as_str(), "record.id" => record.id, "error" => why,
            "recorded" => buried.is_ok());
    }

    /// A prerequisite brought along by a record that failed: its own job tries it again.
    pub(super) async fn give_back(&self, record: Record) {
        if let Err(error) = self.rows.release(record).await {
            slog::warn!(self.logger, "could not release a lease; it lapses by itself";
                "record.id" => record.id, "error" => error.to_string());
        }
    }
}

fn unanswered() -> AmoError {
    AmoError::InvalidResponse("AmoCRM's reply did not name this record".into())
}
