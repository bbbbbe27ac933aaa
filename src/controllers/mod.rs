//! HTTP: routes and thin handlers. Handlers parse input into domain types, call
//! one service method and shape the response; errors go through `ApiError`.

pub(crate) mod amocrm;
mod auth;
pub mod compression;
pub(crate) mod contacts;
pub(crate) mod demo;
pub(crate) mod docs;
mod entity;
mod extract;
pub(crate) mod headers;
pub(crate) mod health;
mod idempotency;
pub(crate) mod leads;
pub(crate) mod legacy;
pub(crate) mod metrics;
pub mod observe;
pub mod openapi;
pub mod problems;
pub mod routes;
pub(crate) mod sync_jobs;
pub(crate) mod webhooks;

pub use webhooks::HookBody;

pub use routes::{configure as routes, not_found};
