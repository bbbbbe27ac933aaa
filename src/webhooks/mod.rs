//! AmoCRM webhooks: parsing deliveries (form-urlencoded v2 layout, or the same
//! shape as JSON) into events.

mod event;
mod payload;

pub use event::{
    Account, Action, CompanyEvent, ContactEvent, Delivery, EventKind, LeadEvent, PayloadError,
};
pub use payload::{check_delivery, parse_delivery, WEBHOOK_KEY_PATTERN};
