//! Request bodies amosync sends to AmoCRM API v4 (create contacts and leads, manage
//! webhooks). Borrowed fields: bodies are built, serialized and dropped at once.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct FieldValueIn<'a> {
    pub value: &'a str,
    pub enum_code: &'a str,
}

#[derive(Debug, Serialize)]
pub struct CustomFieldIn<'a> {
    pub field_code: &'a str,
    pub values: Vec<FieldValueIn<'a>>,
}

#[derive(Debug, Serialize)]
pub struct NewContactIn<'a> {
    pub name: &'a str,
    pub custom_fields_values: Vec<CustomFieldIn<'a>>,
    pub request_id: &'a str,
}

#[derive(Debug, Serialize)]
pub struct ContactLinkIn {
    pub id: i64,
    pub is_main: bool,
}

#[derive(Debug, Serialize)]
pub struct LeadEmbeddedIn {
    pub contacts: Vec<ContactLinkIn>,
}

/// Absent numbers are left out, not sent as `null`: AmoCRM then applies its defaults
/// (e.g. the first stage of the main pipeline). `E` is what `_embedded` carries: links
/// to existing contacts (`POST /leads`), or a new contact (`leads/complex`).
#[derive(Debug, Serialize)]
pub struct NewLeadIn<'a, E = LeadEmbeddedIn> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<i64>,
    #[serde(rename = "_embedded", skip_serializing_if = "Option::is_none")]
    pub embedded: Option<E>,
    pub request_id: &'a str,
}

/// A new contact inside a complex lead. `first_name` repeats the full name: the
/// endpoint's own examples name contacts by first and last name.
#[derive(Debug, Serialize)]
pub struct ComplexContactIn<'a> {
    pub name: &'a str,
    pub first_name: &'a str,
    pub custom_fields_values: Vec<CustomFieldIn<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ComplexEmbeddedIn<'a> {
    pub contacts: [ComplexContactIn<'a>; 1],
}

#[derive(Debug, Serialize)]
pub struct WebhookIn<'a> {
    pub destination: &'a str,
    pub settings: &'a [String],
}

#[derive(Debug, Serialize)]
pub struct WebhookDestinationIn<'a> {
    pub destination: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_new_lead_omits_absent_numbers_instead_of_sending_null() {
        let body = serde_json::to_value(NewLeadIn::<LeadEmbeddedIn> {
            name: "L",
            price: None,
            status_id: Some(5),
            pipeline_id: None,
            embedded: None,
            request_id: "r",
        })
        .expect("serialize");
        assert_eq!(
            body,
            json!({"name": "L", "status_id": 5, "request_id": "r"})
        );
    }
}
