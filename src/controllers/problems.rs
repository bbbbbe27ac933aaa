//! The error responses operations share, each set written once: every one is
//! `application/problem+json` with the `ProblemDetails` schema (`error::Problem`).
//! The 401 and 403 of token-guarded routes are not here: the route table adds them
//! with the scope the route enforces.

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::ToSchema;

use crate::error::{Problem, PROBLEM_JSON};

/// One problem+json response with this description.
pub fn problem(description: &str) -> RefOr<Response> {
    let schema = Ref::from_schema_name(Problem::name());
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
        .into()
}

/// A named set of problem responses, for `#[utoipa::path(responses(...))]`.
macro_rules! problems {
    ($($(#[$doc:meta])* $set:ident { $($status:literal => $description:expr),+ $(,)? })*) => {$(
        $(#[$doc])*
        pub struct $set;

        impl utoipa::IntoResponses for $set {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([$(($status.to_string(), problem($description))),+])
            }
        }
    )*};
}

const DB_DOWN: &str = "Database unavailable (Retry-After)";
const AMO_DOWN: &str =
    "AmoCRM unavailable, rate-limited, or refusing access (amocrm_*), or the database is down";

problems! {
    /// A JSON body `JsonBody` refused before it was parsed.
    JsonBodyErrors {
        400 => "Malformed JSON",
        413 => "Body larger than MAX_BODY_BYTES",
        415 => "Not application/json",
    }
    /// Find-or-create of a contact or lead under `/api/v1`.
    FindOrCreateErrors {
        409 => "Idempotency-Key still in flight (idempotency_in_progress)",
        422 => "Invalid field, or Idempotency-Key reused with another body",
        502 => "AmoCRM refused the record (amocrm_rejected, with the stored id)",
        503 => DB_DOWN,
    }
    /// The earlier Node service's create routes: an existing record is a 409.
    LegacyCreateErrors {
        409 => "Already existed (already_exists, with its id), or Idempotency-Key in flight",
        422 => "Invalid field, or Idempotency-Key reused with another body",
        502 => "AmoCRM refused the record (amocrm_rejected, with the stored id)",
        503 => DB_DOWN,
    }
    /// Reads of the mirror and the outbox.
    ReadErrors {
        422 => "Invalid field or query parameter (errors name them)",
        503 => DB_DOWN,
    }
    NoSuchContact {
        404 => "No such contact (or deleted in AmoCRM)",
    }
    NoSuchLead {
        404 => "No such lead (or deleted in AmoCRM)",
    }
    NoSuchJob {
        404 => "No such job",
        503 => DB_DOWN,
    }
    /// AmoCRM's webhook delivery.
    DeliveryErrors {
        400 => "Empty, or not a payload (invalid JSON, keys nested too deep or in conflict)",
        403 => "From another AmoCRM account",
        404 => "Wrong secret, or webhooks are off",
        413 => "Larger than WEBHOOK_MAX_BODY_BYTES",
        415 => "Neither form-encoded nor JSON",
        503 => DB_DOWN,
    }
    /// Managing amosync's webhook subscription calls AmoCRM.
    AmoErrors {
        503 => AMO_DOWN,
    }
    SubscribeErrors {
        409 => "SERVER_URL or WEBHOOK_SECRET not set (not_configured), or Idempotency-Key in flight",
        422 => "Idempotency-Key reused with another body",
    }
    UnsubscribeErrors {
        409 => "SERVER_URL or WEBHOOK_SECRET not set (not_configured)",
    }
    NotReady {
        503 => "Not ready: database down, migrations pending, or shutting down (not_ready)",
    }
    MetricsErrors {
        401 => "METRICS_TOKEN is set and was not presented",
        403 => "No METRICS_TOKEN is set and the client is outside the internal networks",
    }
}
