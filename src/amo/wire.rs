//! Serde shapes of AmoCRM API v4 JSON, kept lenient on purpose: AmoCRM adds fields,
//! returns `null` for empty collections and invents new custom-field types, and none
//! of that may stop amosync from reading the parts it needs.

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use super::{AmoContact, AmoLead, AmoWebhook};

mod catalogue;
mod request;

pub use catalogue::{CustomFieldsEmbedded, FieldDefinitionDto, PipelineList, UsersEmbedded};

pub use request::{
    ComplexContactIn, ComplexEmbeddedIn, ContactLinkIn, CustomFieldIn, FieldValueIn,
    LeadEmbeddedIn, NewContactIn, NewLeadIn, WebhookDestinationIn, WebhookIn,
};

/// The PHONE multitext field, addressed by code so no account-specific id is needed.
pub const PHONE_FIELD_CODE: &str = "PHONE";

/// `null` and a missing key both become the type's default (an empty list, mostly).
fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// For optional parts of error bodies: a shape we do not expect is read as absent
/// instead of failing the whole body, because the error itself is what matters.
fn ok_or_none<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let raw = Value::deserialize(de)?;
    Ok(serde_json::from_value(raw).ok())
}

/// Strings and numbers both arrive where AmoCRM documents a string (`code`, `request_id`).
fn stringish<'de, D>(de: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(value_as_text(&Value::deserialize(de)?))
}

/// The text of a scalar JSON value; objects, arrays and `null` have none.
pub fn value_as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------- lists

#[derive(Debug, Default, Deserialize)]
pub struct Href {
    pub href: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Links {
    #[serde(rename = "self")]
    pub this: Option<Href>,
    pub next: Option<Href>,
}

/// `{_page, _links{self,next}, _embedded{…}}`; there is no total count.
#[derive(Debug, Deserialize)]
#[serde(bound = "E: Deserialize<'de> + Default")]
pub struct ListPage<E> {
    #[serde(rename = "_page")]
    pub page: Option<u32>,
    #[serde(rename = "_links", default, deserialize_with = "null_as_default")]
    pub links: Links,
    #[serde(rename = "_embedded", default, deserialize_with = "null_as_default")]
    pub embedded: E,
}

impl<E> ListPage<E> {
    pub fn has_next(&self) -> bool {
        self.links.next.as_ref().is_some_and(|n| n.href.is_some())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ContactsEmbedded {
    #[serde(default, deserialize_with = "null_as_default")]
    pub contacts: Vec<ContactDto>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LeadsEmbedded {
    #[serde(default, deserialize_with = "null_as_default")]
    pub leads: Vec<LeadDto>,
}

#[derive(Debug, Default, Deserialize)]
pub struct WebhooksEmbedded {
    #[serde(default, deserialize_with = "null_as_default")]
    pub webhooks: Vec<WebhookDto>,
}

/// `GET /api/v4/webhooks` answers `{_total_items, _embedded{webhooks}}`.
#[derive(Debug, Deserialize)]
pub struct WebhookList {
    #[serde(rename = "_total_items")]
    pub total_items: Option<u64>,
    #[serde(rename = "_embedded", default, deserialize_with = "null_as_default")]
    pub embedded: WebhooksEmbedded,
}

// ---------------------------------------------------------------- entities

#[derive(Debug, Deserialize)]
pub struct FieldValueDto {
    /// A string for phones, but numbers, booleans and objects exist for other types.
    #[serde(default)]
    pub value: Value,
    pub enum_id: Option<i64>,
    #[serde(default, deserialize_with = "stringish")]
    pub enum_code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CustomFieldDto {
    pub field_id: Option<i64>,
    pub field_name: Option<String>,
    pub field_code: Option<String>,
    /// Kept as text: new types (`tracking_data`, …) must not break parsing.
    pub field_type: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<FieldValueDto>,
}

#[derive(Debug, Deserialize)]
pub struct ContactDto {
    pub id: i64,
    pub name: Option<String>,
    pub updated_at: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub custom_fields_values: Vec<CustomFieldDto>,
}

impl ContactDto {
    /// Every value of the PHONE field, as typed by the managers.
    pub fn phone_values(&self) -> Vec<String> {
        self.custom_fields_values
            .iter()
            .filter(|f| {
                f.field_code
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(PHONE_FIELD_CODE))
            })
            .flat_map(|f| f.values.iter().filter_map(|v| value_as_text(&v.value)))
            .collect()
    }
}

impl From<ContactDto> for AmoContact {
    fn from(dto: ContactDto) -> Self {
        AmoContact {
            id: dto.id,
            phones: dto.phone_values(),
            name: dto.name.unwrap_or_default(),
            updated_at: dto.updated_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LinkedContactDto {
    pub id: i64,
    pub is_main: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LeadEmbeddedDto {
    #[serde(default, deserialize_with = "null_as_default")]
    pub contacts: Vec<LinkedContactDto>,
}

#[derive(Debug, Deserialize)]
pub struct LeadDto {
    pub id: i64,
    pub name: Option<String>,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub updated_at: Option<i64>,
    #[serde(rename = "_embedded", default, deserialize_with = "null_as_default")]
    pub embedded: LeadEmbeddedDto,
}

impl From<LeadDto> for AmoLead {
    fn from(dto: LeadDto) -> Self {
        let contacts = dto.embedded.contacts;
        AmoLead {
            id: dto.id,
            name: dto.name.unwrap_or_default(),
            price: dto.price,
            status_id: dto.status_id,
            pipeline_id: dto.pipeline_id,
            main_contact_id: contacts
                .iter()
                .find(|c| c.is_main == Some(true))
                .map(|c| c.id),
            contact_ids: contacts.iter().map(|c| c.id).collect(),
            updated_at: dto.updated_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct WebhookDto {
    pub id: i64,
    pub destination: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub settings: Vec<String>,
    pub disabled: Option<bool>,
    pub sort: Option<i64>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

impl From<WebhookDto> for AmoWebhook {
    fn from(dto: WebhookDto) -> Self {
        AmoWebhook {
            id: dto.id,
            destination: dto.destination.unwrap_or_default(),
            settings: dto.settings,
            disabled: dto.disabled.unwrap_or(false),
        }
    }
}

// ---------------------------------------------------------------- create

/// AmoCRM echoes `request_id` as a string, but the complex endpoint uses an array.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    One(String),
    Number(i64),
    Many(Vec<String>),
}

impl RequestId {
    pub fn contains(&self, wanted: &str) -> bool {
        match self {
            RequestId::One(s) => s == wanted,
            RequestId::Number(n) => n.to_string() == wanted,
            RequestId::Many(all) => all.iter().any(|s| s == wanted),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CreatedDto {
    pub id: i64,
    #[serde(default, deserialize_with = "ok_or_none")]
    pub request_id: Option<RequestId>,
}

/// `_embedded.contacts` or `_embedded.leads` of a create answer.
#[derive(Debug, Default, Deserialize)]
pub struct CreatedEmbedded {
    #[serde(default, deserialize_with = "null_as_default")]
    pub contacts: Vec<CreatedDto>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub leads: Vec<CreatedDto>,
}

#[derive(Debug, Deserialize)]
pub struct CreatedList {
    #[serde(rename = "_embedded", default, deserialize_with = "null_as_default")]
    pub embedded: CreatedEmbedded,
}

/// One item of the bare array `leads/complex` answers with.
#[derive(Debug, Deserialize)]
pub struct ComplexCreatedDto {
    pub id: i64,
    #[serde(default, deserialize_with = "ok_or_none")]
    pub contact_id: Option<i64>,
    #[serde(default, deserialize_with = "ok_or_none")]
    pub request_id: Option<RequestId>,
}

// ---------------------------------------------------------------- errors

#[derive(Debug, Deserialize)]
pub struct ValidationErrorDto {
    #[serde(default, deserialize_with = "stringish")]
    pub code: Option<String>,
    #[serde(default, deserialize_with = "stringish")]
    pub path: Option<String>,
    #[serde(default, deserialize_with = "stringish")]
    pub detail: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ValidationItemDto {
    #[serde(default, deserialize_with = "stringish")]
    pub request_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub errors: Vec<ValidationErrorDto>,
}

/// `application/problem+json`, with AmoCRM's `validation-errors` extension.
#[derive(Debug, Deserialize)]
pub struct ProblemDto {
    #[serde(default, deserialize_with = "ok_or_none")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "ok_or_none")]
    pub detail: Option<String>,
    #[serde(rename = "validation-errors", default, deserialize_with = "ok_or_none")]
    pub validation_errors: Option<Vec<ValidationItemDto>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_contact_with_null_custom_fields_and_unknown_keys_parses() {
        let dto: ContactDto = serde_json::from_value(json!({
            "id": 7, "name": "Иван", "custom_fields_values": null, "whatever": {"x": 1},
            "_embedded": {"tags": []}
        }))
        .expect("lenient contact");
        let contact = AmoContact::from(dto);
        assert_eq!((contact.id, contact.name.as_str()), (7, "Иван"));
        assert!(contact.phones.is_empty());
    }

    #[test]
    fn only_phone_values_are_collected_and_unknown_field_types_do_not_break_parsing() {
        let dto: ContactDto = serde_json::from_value(json!({
            "id": 1, "updated_at": 1700000000,
            "custom_fields_values": [
                {"field_id": 1, "field_code": "EMAIL", "field_type": "multitext",
                 "values": [{"value": "a@b.c", "enum_code": "WORK"}]},
                {"field_id": 2, "field_code": null, "field_type": "tracking_data",
                 "values": [{"value": {"nested": true}}]},
                {"field_id": 3, "field_code": "PHONE", "field_type": "multitext",
                 "values": [{"value": "+7 916 123-45-67", "enum_id": 5, "enum_code": "WORK"},
                            {"value": 89161234500i64, "enum_code": "MOB"}]},
                {"field_id": 4, "field_code": "PHONE", "values": null}
            ]
        }))
        .expect("mixed custom fields");
        assert_eq!(dto.phone_values(), vec!["+7 916 123-45-67", "89161234500"]);
    }

    #[test]
    fn a_lead_with_null_price_and_embedded_contacts_maps_the_main_contact() {
        let dto: LeadDto = serde_json::from_value(json!({
            "id": 9, "name": "Order 1", "price": null, "status_id": 142, "pipeline_id": 3,
            "_embedded": {"contacts": [{"id": 11, "is_main": false}, {"id": 12, "is_main": true}]}
        }))
        .expect("lead");
        let lead = AmoLead::from(dto);
        assert_eq!(lead.price, None);
        assert_eq!(lead.contact_ids, vec![11, 12]);
        assert_eq!(lead.main_contact_id, Some(12));
        assert_eq!(lead.status_id, Some(142));
    }

    #[test]
    fn request_id_may_be_a_string_a_number_or_an_array() {
        let list: CreatedList = serde_json::from_value(json!({"_embedded": {"leads": [
            {"id": 1, "request_id": "abc"}, {"id": 2, "request_id": ["x", "def"]},
            {"id": 3, "request_id": 0}, {"id": 4}, {"id": 5, "request_id": {"odd": 1}}
        ]}}))
        .expect("created list");
        let ids = &list.embedded.leads;
        assert!(ids[0]
            .request_id
            .as_ref()
            .is_some_and(|r| r.contains("abc")));
        assert!(ids[1]
            .request_id
            .as_ref()
            .is_some_and(|r| r.contains("def")));
        assert!(ids[2].request_id.as_ref().is_some_and(|r| r.contains("0")));
        assert!(ids[3].request_id.is_none() && ids[4].request_id.is_none());
    }

    #[test]
    fn a_list_page_knows_whether_a_next_page_is_announced() {
        let with_next: ListPage<ContactsEmbedded> = serde_json::from_value(json!({
            "_page": 1, "_links": {"self": {"href": "s"}, "next": {"href": "n"}},
            "_embedded": {"contacts": [{"id": 1}]}
        }))
        .expect("page");
        assert!(with_next.has_next());
        assert_eq!(with_next.embedded.contacts.len(), 1);
        let last: ListPage<LeadsEmbedded> =
            serde_json::from_value(json!({"_page": 2, "_links": {"self": {"href": "s"}}}))
                .expect("last page");
        assert!(!last.has_next() && last.embedded.leads.is_empty());
    }

    #[test]
    fn a_problem_body_with_an_unexpected_validation_shape_still_yields_its_detail() {
        let p: ProblemDto = serde_json::from_value(json!({
            "title": "Bad Request", "status": 400, "detail": "oops", "validation-errors": {"x": 1}
        }))
        .expect("problem");
        assert_eq!(p.detail.as_deref(), Some("oops"));
        assert!(p.validation_errors.is_none());
    }
}
