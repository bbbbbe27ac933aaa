//! What one entity knows about its rows, whoever sends them to AmoCRM: the flight
//! (one submission, inside a request) and the outbox worker's rounds (many rows at
//! once) both take it from here. A flight's `Rules` add only how a submission is
//! claimed; a round adds only how its records take turns, halt and batch.

use std::sync::Arc;

use async_trait::async_trait;

use crate::amo::{AmoError, AmoTransport};
use crate::repositories::{RepoError, SyncRow};
use crate::services::mirror::authority::searched;

/// An entity's rules over its repository (`R`) and the AmoCRM client.
pub(crate) struct Rows<'a, R: ?Sized> {
    pub repo: &'a R,
    pub amo: &'a dyn AmoTransport,
}

impl<'a, R: ?Sized> Rows<'a, R> {
    /// The rules over a service's own repository and transport.
    pub fn of(repo: &'a Arc<R>, amo: &'a Arc<dyn AmoTransport>) -> Self {
        Rows { repo, amo: &**amo }
    }
}

/// One entity's rules for a stored row.
#[async_trait]
pub trait EntityRules: Send + Sync {
    /// The local row.
    type Row: SyncRow + std::fmt::Debug;
    /// The record as AmoCRM is sent it (the create body); it is searched for by it too.
    type New: Clone + Send + Sync + 'static;
    /// What AmoCRM holds for the record, found or created.
    type Amo: Send;

    /// Most records one batched create may carry.
    fn max_per_create(&self) -> usize;

    /// The body to send for `row`, linked to the AmoCRM record `link` (a lead's
    /// contact); `Err(why)` when the stored row cannot be sent at all.
    fn new_record(&self, row: &Self::Row, link: Option<i64>) -> Result<Self::New, String>;

    /// Whether this attempt searches AmoCRM (`search`: the `AMO_DEDUP` verdict). A
    /// retry searches even when the mirror is trusted: an ambiguous failure (a
    /// timeout after AmoCRM did create the record) must find it, not make a second.
    fn searches(&self, row: &Self::Row, search: bool) -> bool {
        searched(search, row.attempts())
    }

    /// The record as AmoCRM already holds it, if it does.
    async fn search(&self, new: &Self::New) -> Result<Option<Self::Amo>, AmoError>;

    /// When AmoCRM is not searched: the record as the mirror already holds it (a
    /// webhook or reconciliation may have brought it in since the row was stored).
    async fn mirrored(
        &self,
        _row: &Self::Row,
        _new: &Self::New,
    ) -> Result<Option<Self::Amo>, RepoError> {
        Ok(None)
    }

    /// Creates one record (a request's flight).
    async fn create(&self, new: &Self::New) -> Result<Self::Amo, AmoError>;

    /// Creates up to `max_per_create` records in one request: each one's AmoCRM id
    /// in input order, `None` where the reply does not name it.
    async fn create_many(&self, news: Vec<Self::New>) -> Result<Vec<Option<i64>>, AmoError>;

    /// The record as AmoCRM holds it once it was created under `id`.
    fn created(&self, new: Self::New, id: i64) -> Self::Amo;

    /// The AmoCRM id of what AmoCRM holds.
    fn amo_id(&self, amo: &Self::Amo) -> i64;

    /// Marks the row synced with what AmoCRM holds.
    async fn finish(&self, row: &Self::Row, amo: Self::Amo) -> Result<Self::Row, RepoError>;
}

/// An entity whose record links to one of entity `P` (a lead's contact) and can be
/// created together with it when `P`'s record is new too.
#[async_trait]
pub trait Joins<P: EntityRules>: EntityRules {
    /// Creates up to `max_per_create` records, each with its new `P` record linked:
    /// `(id, P's id)` per item in input order, `None` where the reply does not name it.
    async fn create_with(
        &self,
        items: Vec<(Self::New, P::New)>,
    ) -> Result<Vec<Option<(i64, i64)>>, AmoError>;

    /// The body as sent once its `P` record has the AmoCRM id `link`.
    fn linked(&self, new: Self::New, link: i64) -> Self::New;
}
