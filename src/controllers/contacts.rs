//! `/api/v1/contacts`: thin handlers over `ContactService`.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{NaiveDateTime, SecondsFormat};
use serde::{Deserialize, Serialize};
use validator::Validate;

use super::extract::{
    field_errors, flag_schema, page_params, paginate, query_flag, query_id, JsonBody, ShowQuery,
};
use super::openapi::problems::{FindOrCreateErrors, JsonBodyErrors, NoSuchContact, ReadErrors};
use crate::domain::{EntityName, FieldError, Phone, Region};
use crate::error::ApiError;
use crate::repositories::{Contact, ContactFilter};
use crate::services::{ContactInput, Saved};
use crate::state::AppState;

/// `{"name": "...", "phone": "..."}`; also the inline `contact` of a lead.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct ContactRequest {
    /// 1 to 255 characters once surrounding whitespace is trimmed, with no control
    /// characters inside (the `pattern` says exactly this).
    #[validate(required(message = "is required"))]
    #[schema(required = true, value_type = String, example = "Иван Петров")]
    pub name: Option<String>,
    /// Any common spelling; stored as E.164.
    #[validate(required(message = "is required"))]
    #[schema(required = true, value_type = String, example = "8 (916) 123-45-67", pattern = "^[+]?[0-9 ()./-]{5,40}$")]
    pub phone: Option<String>,
}

impl ContactRequest {
    /// Parses into domain types; `prefix` names the object in error paths (`contact.`).
    pub fn parse(
        &self,
        region: Region,
        prefix: &str,
        errors: &mut Vec<FieldError>,
    ) -> Option<ContactInput> {
        if let Err(e) = self.validate() {
            errors.extend(
                field_errors(&e)
                    .into_iter()
                    .map(|f| FieldError::new(format!("{prefix}{}", f.field), f.message)),
            );
            return None;
        }
        let name = EntityName::parse(self.name.as_deref().unwrap_or_default())
            .map_err(|e| errors.push(FieldError::new(format!("{prefix}name"), e.to_string())))
            .ok();
        let phone = Phone::parse(self.phone.as_deref().unwrap_or_default(), region)
            .map_err(|e| errors.push(FieldError::new(format!("{prefix}phone"), e.to_string())))
            .ok();
        Some(ContactInput {
            name: name?,
            phone: phone?,
        })
    }

    /// The whole body as a contact: a 422 listing every wrong field otherwise.
    pub fn into_input(self, region: Region) -> Result<ContactInput, ApiError> {
        let mut errors = Vec::new();
        match self.parse(region, "", &mut errors) {
            Some(input) if errors.is_empty() => Ok(input),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactBody {
    pub id: i64,
    pub amocrm_id: Option<i64>,
    /// `null` when the record has no name in AmoCRM (leads made from chats and
    /// forms often have none); never an empty string.
    pub name: Option<String>,
    /// E.164; contacts that came from AmoCRM may have none.
    pub phone: Option<String>,
    /// `pending` until AmoCRM has confirmed the record, then `synced`.
    #[schema(value_type = String)]
    pub sync_status: &'static str,
    pub created_at: String,
    pub updated_at: String,
    /// Set when AmoCRM deleted the record (shown only with `include_deleted=true`).
    pub deleted_at: Option<String>,
}

pub fn timestamp(at: NaiveDateTime) -> String {
    at.and_utc().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl From<Contact> for ContactBody {
    fn from(c: Contact) -> Self {
        ContactBody {
            id: c.id,
            amocrm_id: c.amocrm_id,
            sync_status: c.status().as_str(),
            created_at: timestamp(c.created_at),
            deleted_at: c.deleted_at.map(timestamp),
            updated_at: timestamp(c.updated_at),
            name: crate::domain::present_name(c.name),
            phone: c.phone,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// 201 + `Location` when this request created the record in AmoCRM, 200 when it
/// existed, 202 + `Location` when it is stored and queued for AmoCRM.
pub fn saved_response<T, B: Serialize>(
    saved: Saved<T>,
    location: impl Fn(&T) -> String,
    body: impl Fn(T) -> B,
) -> HttpResponse {
    match saved {
        Saved::Created(r) => HttpResponse::Created()
            .insert_header((header::LOCATION, location(&r)))
            .json(body(r)),
        Saved::Found(r) => HttpResponse::Ok().json(body(r)),
        Saved::Accepted(r) => HttpResponse::Accepted()
            .insert_header((header::LOCATION, location(&r)))
            .json(body(r)),
    }
}

#[utoipa::path(
    post, path = "/api/v1/contacts", tag = "contacts",
    summary = "Find or create a contact by phone",
    request_body = ContactRequest,
    responses(
        (status = 201, description = "Created in AmoCRM", body = ContactBody, headers(("Location" = String))),
        (status = 200, description = "Already existed (locally or in AmoCRM)", body = ContactBody),
        (status = 202, description = "Stored and queued: AmoCRM did not answer in time", body = ContactBody, headers(("Location" = String))),
        JsonBodyErrors, FindOrCreateErrors,
    ),
)]
pub async fn create_contact(
    state: web::Data<AppState>,
    body: JsonBody<ContactRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.into_input(state.region)?;
    let saved = state.contacts.find_or_create(input).await?;
    Ok(saved_response(
        saved,
        |c| format!("/api/v1/contacts/{}", c.id),
        ContactBody::from,
    ))
}

#[utoipa::path(
    get, path = "/api/v1/contacts/{id}", tag = "contacts",
    summary = "One contact",
    params(("id" = i64, Path, description = "amosync's id"), ShowQuery),
    responses(
        (status = 200, description = "The contact; for an id merged into an existing contact (AmoCRM held the person under another phone), that contact, with its own id", body = ContactBody),
        NoSuchContact, ReadErrors,
    ),
)]
pub async fn get_contact(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, ApiError> {
    let contact = state
        .contacts
        .get(id.into_inner(), query.include_deleted()?)
        .await?;
    Ok(HttpResponse::Ok().json(ContactBody::from(contact)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactListQuery {
    /// Any spelling of the phone (as in the contact body); matched as E.164. Blank is no filter.
    #[param(pattern = "^(\\s*|[+]?[0-9 ()./-]{5,40})$")]
    phone: Option<String>,
    name: Option<String>,
    #[param(value_type = Option<i64>, minimum = 1)]
    amocrm_id: Option<String>,
    /// 1–500, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    /// `true` shows records deleted in AmoCRM.
    #[param(schema_with = flag_schema)]
    include_deleted: Option<String>,
}

#[utoipa::path(
    get, path = "/api/v1/contacts", tag = "contacts",
    summary = "List contacts (keyset pages)",
    params(ContactListQuery),
    responses(
        (status = 200, description = "One page; pass next_cursor back as cursor", body = Page<ContactBody>),
        ReadErrors,
    ),
)]
pub async fn list_contacts(
    state: web::Data<AppState>,
    query: web::Query<ContactListQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let phone = query
        .phone
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .and_then(|raw| {
            Phone::parse(raw, state.region)
                .map_err(|e| errors.push(FieldError::new("phone", e.to_string())))
                .ok()
        });
    let amocrm_id = query_id("amocrm_id", query.amocrm_id.as_deref(), &mut errors);
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
    let filter = ContactFilter {
        phone: phone.map(|p| p.as_e164().to_owned()),
        name: query
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        amocrm_id,
        after_id,
        limit: limit + 1,
        include_deleted,
    };
    let (rows, next_cursor) = paginate(state.contacts.list(filter).await?, limit, |c| c.id);
    Ok(HttpResponse::Ok().json(Page {
        items: rows.into_iter().map(ContactBody::from).collect(),
        next_cursor,
    }))
}
