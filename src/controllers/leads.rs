//! `/api/v1/leads`: thin handlers over `LeadService`.

use serde::{Deserialize, Serialize};
use validator::Validate;

use super::contacts::ContactRequest;
use super::entity::{
    entity_operations, text_filter, EntityRequest, ListQuery, Paging, RecordFields,
};
use super::extract::{field_errors, optional_integer, query_id};
use crate::domain::{EntityName, FieldError, Region};
use crate::error::ApiError;
use crate::repositories::{Lead, LeadFilter};
use crate::services::{LeadContact, LeadInput};

entity_operations! {
    service: leads, body: LeadBody(Lead), tag: "leads",
    create: create_lead(LeadRequest) at "/api/v1/leads",
        "Find or create a lead (same name and contact = same lead)";
    show: get_lead at "/api/v1/leads/{id}", "One lead", "The lead", NoSuchLead;
    list: list_leads(LeadListQuery), "List leads (keyset pages)";
}

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

impl EntityRequest for LeadRequest {
    type Input = LeadInput;

    fn into_input(self, region: Region) -> Result<LeadInput, ApiError> {
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
    #[serde(flatten)]
    pub record: RecordFields,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub contact_id: Option<i64>,
}

impl From<Lead> for LeadBody {
    fn from(l: Lead) -> Self {
        LeadBody {
            record: RecordFields::of(&l),
            price: l.price,
            status_id: l.status_id,
            pipeline_id: l.pipeline_id,
            contact_id: l.contact_id,
        }
    }
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
}

impl ListQuery for LeadListQuery {
    type Filter = LeadFilter;

    fn filter(&self, _: Region, paging: Paging, errors: &mut Vec<FieldError>) -> LeadFilter {
        LeadFilter {
            name: text_filter(self.name.as_deref()),
            status_id: query_id("status_id", self.status_id.as_deref(), errors),
            contact_id: query_id("contact_id", self.contact_id.as_deref(), errors),
            window: paging.window(),
        }
    }
}
