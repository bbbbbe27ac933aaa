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
use crate::services::{ContactService, LeadService, Synced};

#[derive(Serialize)]
struct Created {
    id: i64,
}

fn created_or_conflict(id: i64, created: bool) -> Result<HttpResponse, ApiError> {
    if created {
        Ok(HttpResponse::Created().json(Created { id }))
    } else {
        Err(ApiError::AlreadyExists { id })
    }
}

pub async fn create_contact_legacy(
    service: web::Data<ContactService>,
    region: web::Data<Region>,
    body: JsonBody<ContactRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.into_input(**region)?;
    let Synced { record, created } = service.find_or_create(input).await?;
    created_or_conflict(record.id, created)
}

pub async fn create_lead_legacy(
    service: web::Data<LeadService>,
    region: web::Data<Region>,
    body: JsonBody<LeadRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.parse(**region)?;
    let Synced { record, created } = service.find_or_create(input).await?;
    created_or_conflict(record.id, created)
}
