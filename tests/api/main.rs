//! Integration tests: the real app on port 0, a fresh MySQL database per test,
//! and an HTTP fake of AmoCRM on loopback. One binary keeps link time down.

/// The library's fake AmoCRM, started in-process for each test.
mod fake_amo {
    pub use fake_amocrm::{FakeAmo, FakeConfig};
}
mod helpers;
#[path = "../common/noise.rs"]
mod noise;
#[path = "../support/mod.rs"]
mod support;

mod amo_errors;
mod auth_and_health;
mod backup_restore;
mod batching;
mod catalogue;
mod contacts;
mod dedup;
mod echo_race;
mod idempotency;
mod inbox;
mod input_errors;
mod leads;
mod leases;
mod legacy_routes;
mod log_secrets;
mod merges;
mod metrics;
mod oauth;
mod openapi;
mod outage;
mod rate_share;
mod real_deliveries;
mod reconcile;
mod retention;
mod scopes;
mod sync_status;
mod webhook_events;
mod webhook_subscription;
mod webhooks;
