//! Services own the rules. They depend on the repository traits and
//! `AmoTransport`, never on actix. They come in wings:
//!
//! - `find_or_create`: a submission found in the mirror or AmoCRM, else created there;
//! - `outbox`: the sync worker that finishes what requests could not;
//! - `inbox`: webhook deliveries accepted, stored and applied to the mirror;
//! - `mirror`: reconciliation, read-backs, restores, and when the mirror is trusted;
//!
//! and a few services of their own (the AmoCRM account's catalogue, idempotency keys,
//! AmoCRM's rate shared among instances, retention).

mod catalogue;
mod error;
mod find_or_create;
mod idempotency;
mod inbox;
mod leased;
mod mirror;
mod outbox;
mod rate_share;
mod retention;

pub use catalogue::{CatalogueConfig, CatalogueService, Refreshed, MIN_DEMAND_GAP};
pub use error::ServiceError;
pub use find_or_create::{
    ContactInput, ContactService, LeadContact, LeadInput, LeadService, Saved, SyncSettings, Synced,
    BUSY_POLL,
};
pub use idempotency::IdempotencyService;
pub use inbox::{
    to_batch, ExpectedAccount, GroupCommit, Intake, WebhookReceiver, WebhookWorker, WorkerConfig,
};
pub use mirror::{
    AfterRestore, Imported, MirrorAuthority, MirrorState, Reconciler, RefetchConfig, Refetcher,
    Subscribed, Upkeep, Walk, WebhookSubscription, MIRROR_EVENTS, RECONCILE_MARGIN_SECS,
};
pub use outbox::{JobService, OutboxStores, SyncWorker, SyncWorkerConfig};
pub use rate_share::RateShare;
pub use retention::{Pruned, Retention, RetentionConfig};
