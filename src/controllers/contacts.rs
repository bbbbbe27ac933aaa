//! `/api/v1/contacts`: thin handlers over `ContactService`.

use serde::{Deserialize, Serialize};
use validator::Validate;

use super::entity::{
    entity_operations, text_filter, EntityRequest, ListQuery, Paging, RecordFields,
};
use super::extract::{field_errors, query_id};
use crate::domain::{EntityName, FieldError, Phone, Region};
use crate::error::ApiError;
use crate::repositories::{Contact, ContactFilter};
use crate::services::ContactInput;

entity_operations! {
    service: contacts, body: ContactBody(Contact), tag: "contacts",
    create: create_contact(ContactRequest) at "/api/v1/contacts",
        "Find or create a contact by phone";
    show: get_contact at "/api/v1/contacts/{id}", "One contact",
        "The contact; for an id merged into an existing contact (AmoCRM held the person under another phone), that contact, with its own id",
        NoSuchContact;
    list: list_contacts(ContactListQuery), "List contacts (keyset pages)";
}

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
}

impl EntityRequest for ContactRequest {
    type Input = ContactInput;

    /// The whole body as a contact: a 422 listing every wrong field otherwise.
    fn into_input(self, region: Region) -> Result<ContactInput, ApiError> {
        let mut errors = Vec::new();
        match self.parse(region, "", &mut errors) {
            Some(input) if errors.is_empty() => Ok(input),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactBody {
    #[serde(flatten)]
    pub record: RecordFields,
    /// E.164; contacts that came from AmoCRM may have none.
    pub phone: Option<String>,
}

impl From<Contact> for ContactBody {
    fn from(c: Contact) -> Self {
        ContactBody {
            record: RecordFields::of(&c),
            phone: c.phone,
        }
    }
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
}

impl ListQuery for ContactListQuery {
    type Filter = ContactFilter;

    fn filter(
        &self,
        region: Region,
        paging: Paging,
        errors: &mut Vec<FieldError>,
    ) -> ContactFilter {
        let phone = self
            .phone
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .and_then(|raw| {
                Phone::parse(raw, region)
                    .map_err(|e| errors.push(FieldError::new("phone", e.to_string())))
                    .ok()
            });
        ContactFilter {
            phone: phone.map(|p| p.as_e164().to_owned()),
            name: text_filter(self.name.as_deref()),
            amocrm_id: query_id("amocrm_id", self.amocrm_id.as_deref(), errors),
            window: paging.window(),
        }
    }
}
