//! amosync: keeps a company's systems and its AmoCRM account in step through a
//! MySQL mirror. The binary is a thin shell; tests start the real app from here.

pub mod amo;
pub mod domain;
pub mod repositories;
pub mod schema;
pub mod services;
