//! Keeping the mirror true and knowing when it can be trusted: reconciliation walks
//! (`reconcile`), read-backs of untimed webhook events (`refetch`), the recovery
//! after a database restore (`restore`), the webhook subscription, and the
//! `authority` that decides whether AmoCRM is searched before a create.

pub(super) mod authority;
mod reconcile;
mod refetch;
mod restore;
mod subscription;

pub use authority::{MirrorAuthority, MirrorState};
pub use reconcile::{Imported, Reconciler, Upkeep, Walk};
pub use refetch::{RefetchConfig, Refetcher};
pub use restore::{AfterRestore, RECONCILE_MARGIN_SECS};
pub use subscription::{Subscribed, WebhookSubscription, MIRROR_EVENTS};
