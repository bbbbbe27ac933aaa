//! The webhook inbox: a delivery is checked and stored raw before AmoCRM gets its
//! answer (`receiver`, through one `group_commit` for many), and applied to the
//! mirror later by the `worker`; `intake` tells the worker when the receiver is busy.

mod group_commit;
mod intake;
mod receiver;
mod worker;

pub use group_commit::GroupCommit;
pub use intake::Intake;
pub use receiver::{ExpectedAccount, WebhookReceiver};
pub use worker::{to_batch, WebhookWorker, WorkerConfig};
