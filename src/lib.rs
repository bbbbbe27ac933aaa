//! amosync: keeps a company's systems and its AmoCRM account in step through a
//! MySQL mirror. The binary is a thin shell; tests start the real app from here.

pub mod amo;
pub mod cause;
pub mod cli;
pub mod concurrency;
pub mod controllers;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod host;
pub mod lifecycle;
pub mod metrics;
pub mod redact;
pub mod repositories;
pub mod schema;
pub mod services;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod webhooks;
