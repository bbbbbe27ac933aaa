//! `/api/v1/leads`: thin handlers over `LeadService`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use validator::Validate;

use super::contacts::{saved_response, timestamp, ContactRequest, Page};
use super::extract::{
    field_errors, flag_schema, optional_integer, page_params, paginate, query_flag, query_id,
    JsonBody, ShowQuery,
};
use super::openapi::problems::{FindOrCreateErrors, JsonBodyErrors, NoSuchLead, ReadErrors};
use crate::domain::{EntityName, FieldError, Region};
use crate::error::ApiError;
use crate::repositories::{Lead, LeadFilter};
use crate::services::{LeadContact, LeadInput};
use crate::state::AppState;

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct LeadRequest {
    /// 1 to 255 characters once surrounding whitespace is trimmed, with no control
    /// characters inside (the `pattern` says exactly this).
    #[validate(required(message = "is required"))]
    #[schema(required = true, value_type = String)]
    pub name: Option<String>,
    #[validate(range(min = 0, message = "must not be negative"))]
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub price: Option<i64>,
    #[validate(range(min = 1, message = "must be a positive AmoCRM id"))]
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub status_id: Option<i64>,
    #[validate(range(min = 1, message = "must be a positive AmoCRM id"))]
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub pipeline_id: Option<i64>,
    #[validate(range(min = 1, message = "must be a positive id"))]
    #[schema(minimum = 1)]
    /// amosync's id of an existing contact (or give `contact`, not both).
    #[serde(default, deserialize_with = "optional_integer")]
    pub contact_id: Option<i64>,
    /// A contact to find or create and link.
    pub contact: Option<ContactRequest>,
}

impl LeadRequest {
    pub fn parse(&self, region: Region) -> Result<LeadInput, ApiError> {
        let mut errors = self
            .validate()
            .err()
            .map(|e| field_errors(&e))
            .unwrap_or_default();
        let name = self.name.as_deref().and_then(|raw| {
            EntityName::parse(raw)
                .map_err(|e| errors.push(FieldError::new("name", e.to_string())))
                .ok()
        });
        let contact = match (&self.contact_id, &self.contact) {
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "contact",
                    "give either contact_id or contact, not both",
                ));
                None
            }
            (Some(id), None) => Some(LeadContact::Existing(*id)),
            (None, Some(inline)) => inline
                .parse(region, "contact.", &mut errors)
                .map(LeadContact::New),
            (None, None) => Some(LeadContact::None),
        };
        match (name, contact) {
            (Some(name), Some(contact)) if errors.is_empty() => Ok(LeadInput {
                name,
                price: self.price,
                status_id: self.status_id,
                pipeline_id: self.pipeline_id,
                contact,
            }),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeadBody {
    pub id: i64,
    pub amocrm_id: Option<i64>,
    /// `null` when the record has no name in AmoCRM (leads made from chats and
    /// forms often have none); never an empty string.
    pub name: Option<String>,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub contact_id: Option<i64>,
    #[schema(value_type = String)]
    pub sync_status: &'static str,
    pub created_at: String,
    pub updated_at: String,
    /// Set when AmoCRM deleted the record (shown only with `include_deleted=true`).
    pub deleted_at: Option<String>,
}

impl From<Lead> for LeadBody {
    fn from(l: Lead) -> Self {
        LeadBody {
            id: l.id,
            amocrm_id: l.amocrm_id,
            price: l.price,
            status_id: l.status_id,
            pipeline_id: l.pipeline_id,
            contact_id: l.contact_id,
            sync_status: l.status().as_str(),
            created_at: timestamp(l.created_at),
            deleted_at: l.deleted_at.map(timestamp),
            updated_at: timestamp(l.updated_at),
            name: crate::domain::present_name(l.name),
        }
    }
}

#[utoipa::path(
    post, path = "/api/v1/leads", tag = "leads",
    summary = "Find or create a lead (same name and contact = same lead)",
    request_body = LeadRequest,
    responses(
        (status = 201, description = "Created in AmoCRM", body = LeadBody, headers(("Location" = String))),
        (status = 200, description = "Already existed (locally or in AmoCRM)", body = LeadBody),
        (status = 202, description = "Stored and queued: AmoCRM did not answer in time", body = LeadBody, headers(("Location" = String))),
        JsonBodyErrors, FindOrCreateErrors,
    ),
)]
pub async fn create_lead(
    state: web::Data<AppState>,
    body: JsonBody<LeadRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.parse(state.region)?;
    let saved = state.leads.find_or_create(input).await?;
    Ok(saved_response(
        saved,
        |l| format!("/api/v1/leads/{}", l.id),
        LeadBody::from,
    ))
}

#[utoipa::path(
    get, path = "/api/v1/leads/{id}", tag = "leads",
    summary = "One lead",
    params(("id" = i64, Path, description = "amosync's id"), ShowQuery),
    responses(
        (status = 200, description = "The lead", body = LeadBody),
        NoSuchLead, ReadErrors,
    ),
)]
pub async fn get_lead(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, ApiError> {
    let lead = state
        .leads
        .get(id.into_inner(), query.include_deleted()?)
        .await?;
    Ok(HttpResponse::Ok().json(LeadBody::from(lead)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeadListQuery {
    /// Exact name.
    name: Option<String>,
    #[param(value_type = Option<i64>, minimum = 1)]
    status_id: Option<String>,
    #[param(value_type = Option<i64>, minimum = 1)]
    contact_id: Option<String>,
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    /// `true` shows records deleted in AmoCRM.
    #[param(schema_with = flag_schema)]
    include_deleted: Option<String>,
}

#[utoipa::path(
    get, path = "/api/v1/leads", tag = "leads",
    summary = "List leads (keyset pages)",
    params(LeadListQuery),
    responses(
        (status = 200, description = "One page; pass next_cursor back as cursor", body = Page<LeadBody>),
        ReadErrors,
    ),
)]
pub async fn list_leads(
    state: web::Data<AppState>,
    query: web::Query<LeadListQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let status_id = query_id("status_id", query.status_id.as_deref(), &mut errors);
    let contact_id = query_id("contact_id", query.contact_id.as_deref(), &mut errors);
    let (limit, after_id) =
        page_params(query.limit.as_deref(), query.cursor.as_deref(), &mut errors);
    let include_deleted = query_flag(
        "include_deleted",
        query.include_deleted.as_deref(),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let filter = LeadFilter {
        name: query
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        status_id,
        contact_id,
        after_id,
        limit: limit + 1,
        include_deleted,
    };
    let (rows, next_cursor) = paginate(state.leads.list(filter).await?, limit, |l| l.id);
    Ok(HttpResponse::Ok().json(Page {
        items: rows.into_iter().map(LeadBody::from).collect(),
        next_cursor,
    }))
}
