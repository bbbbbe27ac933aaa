//! Drop-in routes of the earlier Node service: `POST /contacts/create` and
//! `POST /leads/create` take the same bodies and answer `201 {"id"}` on creation,
//! `409` (problem+json carrying the existing `id`) when the record already existed.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::contacts::ContactRequest;
use super::extract::JsonBody;
use super::leads::LeadRequest;
use crate::domain::Region;
use crate::error::ApiError;
use crate::openapi::ProblemDetails;
use crate::services::{ContactService, LeadService, Saved};

#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    id: i64,
}

/// 201 when created, 202 when stored and queued for AmoCRM, 409 when it existed.
fn created_or_conflict(id: i64, saved: Saved<()>) -> Result<HttpResponse, ApiError> {
    match saved {
        Saved::Created(()) => Ok(HttpResponse::Created().json(Created { id })),
        Saved::Accepted(()) => Ok(HttpResponse::Accepted().json(Created { id })),
        Saved::Found(()) => Err(ApiError::AlreadyExists { id }),
    }
}

fn shape<T>(saved: Saved<T>, id_of: impl Fn(&T) -> i64) -> (i64, Saved<()>) {
    let id = id_of(saved.record());
    let unit = match saved {
        Saved::Created(_) => Saved::Created(()),
        Saved::Found(_) => Saved::Found(()),
        Saved::Accepted(_) => Saved::Accepted(()),
    };
    (id, unit)
}

#[utoipa::path(
    post, path = "/contacts/create", tag = "legacy",
    summary = "Create a contact (the earlier Node service's route)",
    request_body = ContactRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response to repeats for 24 h", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 202, description = "Stored and queued for AmoCRM", body = Created),
        (status = 409, description = "Already existed (already_exists, with its id), or Idempotency-Key in flight", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than MAX_BODY_BYTES", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the `write` scope (insufficient_scope)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, or Idempotency-Key reused with another body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 502, description = "AmoCRM refused the record (amocrm_rejected, with the stored id)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable (Retry-After)", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["write"]))
)]
pub async fn create_contact_legacy(
    service: web::Data<ContactService>,
    region: web::Data<Region>,
    body: JsonBody<ContactRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.into_input(**region)?;
    let (id, saved) = shape(service.find_or_create(input).await?, |r| r.id);
    created_or_conflict(id, saved)
}

#[utoipa::path(
    post, path = "/leads/create", tag = "legacy",
    summary = "Create a lead (the earlier Node service's route)",
    request_body = LeadRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response to repeats for 24 h", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 202, description = "Stored and queued for AmoCRM", body = Created),
        (status = 409, description = "Already existed (already_exists, with its id), or Idempotency-Key in flight", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 400, description = "Malformed JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than MAX_BODY_BYTES", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the `write` scope (insufficient_scope)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, or Idempotency-Key reused with another body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 502, description = "AmoCRM refused the record (amocrm_rejected, with the stored id)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable (Retry-After)", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["write"]))
)]
pub async fn create_lead_legacy(
    service: web::Data<LeadService>,
    region: web::Data<Region>,
    body: JsonBody<LeadRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.parse(**region)?;
    let (id, saved) = shape(service.find_or_create(input).await?, |r| r.id);
    created_or_conflict(id, saved)
}
