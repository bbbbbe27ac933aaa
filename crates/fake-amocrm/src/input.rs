//! Reading contact and lead items from API bodies, with AmoCRM's validation errors.
//!
//! Each error names its path inside the item (`custom_fields_values.0.field_code`), so a batch
//! reply can point at the failing field. Custom fields are matched by `field_code` or `field_id`,
//! phone enums by `enum_code` or `enum_id`; anything unknown is `NotSupportedChoice`. Sending a
//! field replaces all of its values; `values: null` clears it.

use serde_json::Value;

use crate::records::{LEAD_COMMENT_FIELD_ID, NOTE_FIELD_ID, PHONE_ENUMS, PHONE_FIELD_ID};
use crate::state::LeadPatch;
use crate::wire::{bad_type, not_choice, push_error};

/// A contact's fields as sent; `None` means "not sent".
#[derive(Default)]
pub(crate) struct ContactInput {
    pub name: Option<String>,
    pub phones: Option<Vec<(String, usize)>>,
    pub note: Option<Option<String>>,
}

#[derive(Default)]
pub(crate) struct LeadInput {
    pub patch: LeadPatch,
    pub comment: Option<Option<String>>,
}

/// The item's `request_id`, or its index when it sent none.
pub(crate) fn request_id(item: &Value, index: usize) -> String {
    match &item["request_id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => index.to_string(),
    }
}

/// `name`, or `first_name` and `last_name` joined when no name is sent.
pub(crate) fn name(item: &Value, at: &str, errors: &mut Vec<Value>) -> Option<String> {
    match &item["name"] {
        Value::String(name) => Some(name.clone()),
        Value::Null => {
            let parts = ["first_name", "last_name"].map(|k| item[k].as_str().unwrap_or_default());
            let joined = parts.join(" ").trim().to_owned();
            Some(joined).filter(|n| !n.is_empty())
        }
        _ => {
            bad_type(errors, format!("{at}name"), "string");
            None
        }
    }
}

pub(crate) fn require_name(name: Option<String>, at: &str, errors: &mut Vec<Value>) -> String {
    if name.is_none() {
        let blank = "This value should not be blank.";
        push_error(errors, "NotBlank", format!("{at}name"), blank);
    }
    name.unwrap_or_default()
}

/// The `id` an update item must carry.
pub(crate) fn id(item: &Value, errors: &mut Vec<Value>) -> i64 {
    let id = item["id"].as_i64();
    if id.is_none() {
        bad_type(errors, "id".into(), "int");
    }
    id.unwrap_or_default()
}

fn fields<'a>(item: &'a Value, at: &str, errors: &mut Vec<Value>) -> &'a [Value] {
    match &item["custom_fields_values"] {
        Value::Null => &[],
        Value::Array(fields) => fields.as_slice(),
        _ => {
            bad_type(errors, format!("{at}custom_fields_values"), "array");
            &[]
        }
    }
}

/// The field's values as text; `None` for `values: null`.
fn values(field: &Value, at: &str, errors: &mut Vec<Value>) -> Option<Vec<(String, Value)>> {
    let values = match &field["values"] {
        Value::Null => return None,
        Value::Array(values) => values,
        _ => {
            bad_type(errors, format!("{at}.values"), "array");
            return Some(Vec::new());
        }
    };
    let mut texts = Vec::new();
    for (k, v) in values.iter().enumerate() {
        match &v["value"] {
            Value::String(s) => texts.push((s.clone(), v.clone())),
            Value::Number(n) => texts.push((n.to_string(), v.clone())),
            _ => bad_type(errors, format!("{at}.values.{k}.value"), "string"),
        }
    }
    Some(texts)
}

/// `at` prefixes every error path, e.g. `_embedded.contacts.0.` inside a complex lead.
pub(crate) fn contact(item: &Value, at: &str, errors: &mut Vec<Value>) -> ContactInput {
    let mut input = ContactInput {
        name: name(item, at, errors),
        ..ContactInput::default()
    };
    for (j, field) in fields(item, at, errors).iter().enumerate() {
        let at = format!("{at}custom_fields_values.{j}");
        let code = Some(&field["field_code"]).filter(|c| !c.is_null());
        let is_phone = match (code, field["field_id"].as_i64()) {
            (Some(code), _) if code.as_str() == Some("PHONE") => true,
            (None, Some(PHONE_FIELD_ID)) => true,
            (None, Some(NOTE_FIELD_ID)) => false,
            (Some(_), _) => {
                not_choice(errors, format!("{at}.field_code"));
                continue;
            }
            (None, _) => {
                not_choice(errors, format!("{at}.field_id"));
                continue;
            }
        };
        let values = values(field, &at, errors).unwrap_or_default();
        if !is_phone {
            input.note = Some(values.into_iter().last().map(|(text, _)| text));
            continue;
        }
        let mut phones = Vec::new();
        for (k, (text, v)) in values.into_iter().enumerate() {
            let given = |key: &str| Some(&v[key]).filter(|c| !c.is_null());
            let by_code = given("enum_code").map(|c| PHONE_ENUMS.iter().position(|e| c == e.0));
            let by_id = given("enum_id").map(|c| PHONE_ENUMS.iter().position(|e| c == e.1));
            let (bad_key, found) = match (by_code, by_id) {
                (Some(found), _) => ("enum_code", found),
                (None, Some(found)) => ("enum_id", found),
                (None, None) => ("", Some(0)),
            };
            match found {
                Some(e) => phones.push((text, e)),
                None => not_choice(errors, format!("{at}.values.{k}.{bad_key}")),
            }
        }
        input.phones = Some(phones);
    }
    input
}

fn optional_int(item: &Value, key: &str, errors: &mut Vec<Value>) -> Option<i64> {
    let int = Some(&item[key]).filter(|v| !v.is_null())?.as_i64();
    if int.is_none() {
        bad_type(errors, key.to_owned(), "int");
    }
    int
}

/// A lead's own fields; contacts are read by the caller, since each endpoint treats them apart.
pub(crate) fn lead(item: &Value, errors: &mut Vec<Value>) -> LeadInput {
    let mut input = LeadInput::default();
    input.patch.name = name(item, "", errors);
    input.patch.price = optional_int(item, "price", errors);
    input.patch.status_id = optional_int(item, "status_id", errors);
    input.patch.pipeline_id = optional_int(item, "pipeline_id", errors);
    for (j, field) in fields(item, "", errors).iter().enumerate() {
        let at = format!("custom_fields_values.{j}");
        if field["field_id"].as_i64() != Some(LEAD_COMMENT_FIELD_ID) {
            not_choice(errors, format!("{at}.field_id"));
            continue;
        }
        let values = values(field, &at, errors).unwrap_or_default();
        input.comment = Some(values.into_iter().last().map(|(text, _)| text));
    }
    input
}
