//! Domain-free machinery for concurrent callers: a batcher that coalesces calls
//! into one round trip, and single-flight that lets concurrent callers of one key
//! share one execution. Neither knows about AmoCRM or the database; the batcher is
//! generic over its caller's error.

mod batcher;
mod single_flight;

pub use batcher::{BatchFailure, BatchLimits, Batcher};
pub use single_flight::SingleFlight;
