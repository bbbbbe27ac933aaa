//! Drop-in routes of the earlier Node service: `POST /contacts/create` and
//! `POST /leads/create` take the same bodies and answer `201 {"id"}` on creation,
//! `409` (problem+json carrying the existing `id`) when the record already existed.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::contacts::ContactRequest;
use super::entity::EntityRequest;
use super::extract::JsonBody;
use super::leads::LeadRequest;
use super::problems::{JsonBodyErrors, LegacyCreateErrors};
use crate::error::ApiError;
use crate::services::Saved;
use crate::state::AppState;

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
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 202, description = "Stored and queued for AmoCRM", body = Created),
        JsonBodyErrors, LegacyCreateErrors,
    ),
)]
pub async fn create_contact_legacy(
    state: web::Data<AppState>,
    body: JsonBody<ContactRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = EntityRequest::into_input(body.0, state.region)?;
    let (id, saved) = shape(state.contacts.find_or_create(input).await?, |r| r.id);
    created_or_conflict(id, saved)
}

#[utoipa::path(
    post, path = "/leads/create", tag = "legacy",
    summary = "Create a lead (the earlier Node service's route)",
    request_body = LeadRequest,
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 202, description = "Stored and queued for AmoCRM", body = Created),
        JsonBodyErrors, LegacyCreateErrors,
    ),
)]
pub async fn create_lead_legacy(
    state: web::Data<AppState>,
    body: JsonBody<LeadRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = EntityRequest::into_input(body.0, state.region)?;
    let (id, saved) = shape(state.leads.find_or_create(input).await?, |r| r.id);
    created_or_conflict(id, saved)
}
