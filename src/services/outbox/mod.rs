//! The outbox: every pending record has a sync job. The `worker` claims due jobs,
//! takes their records' leases (kept alive by the `lease_keeper`) and runs one
//! search-then-create round over them (`rounds`), sending creates in `batches`;
//! `jobs` is the operator's view of the queue.

mod batches;
mod jobs;
mod lease_keeper;
mod rounds;
mod worker;

pub use jobs::JobService;
pub use worker::{OutboxStores, SyncWorker, SyncWorkerConfig};
