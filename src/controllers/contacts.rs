//! `/api/v1/contacts`: thin handlers over `ContactService`.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{NaiveDateTime, SecondsFormat};
use serde::{Deserialize, Serialize};
use validator::Validate;

use super::extract::{
    field_errors, page_params, paginate, query_flag, query_id, JsonBody, ShowQuery,
};
use crate::domain::{EntityName, FieldError, Phone, Region};
use crate::error::ApiError;
use crate::repositories::{Contact, ContactFilter};
use crate::services::{ContactInput, ContactService, Saved};

/// `{"name": "...", "phone": "..."}`; also the inline `contact` of a lead.
#[derive(Debug, Deserialize, Validate)]
pub struct ContactRequest {
    #[validate(required(message = "is required"))]
    pub name: Option<String>,
    #[validate(required(message = "is required"))]
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

#[derive(Debug, Serialize)]
pub struct ContactBody {
    pub id: i64,
    pub amocrm_id: Option<i64>,
    pub name: String,
    /// E.164; contacts that came from AmoCRM may have none.
    pub phone: Option<String>,
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
            name: c.name,
            phone: c.phone,
        }
    }
}

#[derive(Debug, Serialize)]
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

pub async fn create_contact(
    service: web::Data<ContactService>,
    region: web::Data<Region>,
    body: JsonBody<ContactRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.into_input(**region)?;
    let saved = service.find_or_create(input).await?;
    Ok(saved_response(
        saved,
        |c| format!("/api/v1/contacts/{}", c.id),
        ContactBody::from,
    ))
}

pub async fn get_contact(
    service: web::Data<ContactService>,
    id: web::Path<i64>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, ApiError> {
    let contact = service
        .get(id.into_inner(), query.include_deleted()?)
        .await?;
    Ok(HttpResponse::Ok().json(ContactBody::from(contact)))
}

#[derive(Debug, Deserialize)]
pub struct ContactListQuery {
    phone: Option<String>,
    name: Option<String>,
    amocrm_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    include_deleted: Option<String>,
}

pub async fn list_contacts(
    service: web::Data<ContactService>,
    region: web::Data<Region>,
    query: web::Query<ContactListQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let phone = query
        .phone
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .and_then(|raw| {
            Phone::parse(raw, **region)
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
    let (rows, next_cursor) = paginate(service.list(filter).await?, limit, |c| c.id);
    Ok(HttpResponse::Ok().json(Page {
        items: rows.into_iter().map(ContactBody::from).collect(),
        next_cursor,
    }))
}
