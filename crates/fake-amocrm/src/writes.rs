//! Creating and updating contacts and leads: `POST`, `PATCH` and `POST /leads/complex`.
//!
//! A batch is a JSON array of at most 250 items (50 for complex leads) and is applied only
//! when every item is valid; otherwise the reply is 400 with one `validation-errors` entry per
//! failing item, keyed by its `request_id` (the item's index when none is sent).

use actix_web::HttpResponse;
use serde_json::{json, Value};

use crate::events::Action;
use crate::input::{self, request_id, require_name};
use crate::records::{Contact, Lead, DEFAULT_PIPELINE_ID, DEFAULT_STATUS_ID};
use crate::state::State;
use crate::wire::{
    bad_type, hal, not_choice, problem, push_error, self_link, validation_failed, Rejected,
};

const MAX_BATCH: usize = 250;
const MAX_COMPLEX: usize = 50;

/// The body as a non-empty array of at most `max` items.
fn batch(body: &[u8], max: usize) -> Result<Vec<Value>, Rejected> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if items.len() > max => {
            let detail = format!("Too many entities in request, max {max}");
            Err(Box::new(problem(400, &detail)))
        }
        Ok(Value::Array(items)) if !items.is_empty() => Ok(items),
        Ok(_) => Err(Box::new(problem(
            400,
            "Request body must be a non-empty array",
        ))),
        Err(_) => Err(Box::new(problem(400, "Request body is not valid JSON"))),
    }
}

/// Runs `parse` over every item; the parsed items with their request ids, or the 400 reply.
fn validate<T>(
    items: &[Value],
    mut parse: impl FnMut(&Value, &mut Vec<Value>) -> T,
) -> Result<Vec<(String, T)>, Rejected> {
    let (mut valid, mut failed) = (Vec::new(), Vec::new());
    for (i, item) in items.iter().enumerate() {
        let request_id = request_id(item, i);
        let mut errors = Vec::new();
        let parsed = parse(item, &mut errors);
        if errors.is_empty() {
            valid.push((request_id, parsed));
        } else {
            failed.push(json!({"request_id": request_id, "errors": errors}));
        }
    }
    if failed.is_empty() {
        Ok(valid)
    } else {
        Err(Box::new(validation_failed(failed)))
    }
}

fn created_reply(base: &str, entity: &str, rows: Vec<Value>) -> HttpResponse {
    let link = json!({"self": {"href": format!("{base}/api/v4/{entity}")}});
    hal(json!({"_links": link, "_embedded": {entity: rows}}))
}

fn created_row(base: &str, entity: &str, id: i64, request_id: String) -> Value {
    json!({"id": id, "request_id": request_id, "_links": self_link(base, entity, id)})
}

/// `POST /api/v4/contacts`.
pub(crate) fn create_contacts(s: &mut State, body: &[u8]) -> HttpResponse {
    s.create_requests += 1;
    let items = match batch(body, MAX_BATCH) {
        Ok(items) => items,
        Err(reply) => return *reply,
    };
    let valid = validate(&items, |item, errors| {
        let contact = input::contact(item, "", errors);
        Contact {
            name: require_name(contact.name, "", errors),
            phones: contact.phones.unwrap_or_default(),
            note: contact.note.flatten(),
            ..Contact::default()
        }
    });
    let valid = match valid {
        Ok(valid) => valid,
        Err(reply) => return *reply,
    };
    let base = s.base_url.clone();
    let mut rows = Vec::new();
    for (request_id, contact) in valid {
        s.contact_creates += 1;
        s.record_contact_arrival(&contact);
        let id = s.create_contact(contact);
        rows.push(created_row(&base, "contacts", id, request_id));
    }
    created_reply(&base, "contacts", rows)
}

/// Existing contacts to link from `_embedded.contacts`; the one marked `is_main` goes first.
fn linked_contacts(s: &State, item: &Value, errors: &mut Vec<Value>) -> Vec<i64> {
    let mut ids = Vec::new();
    match item.pointer("/_embedded/contacts") {
        None | Some(Value::Null) => {}
        Some(Value::Array(links)) => {
            for (j, link) in links.iter().enumerate() {
                let (id, main) = (link["id"].as_i64(), link["is_main"] == true);
                match id.filter(|id| s.contact(*id).is_some()) {
                    Some(id) if main => ids.insert(0, id),
                    Some(id) => ids.push(id),
                    None => not_choice(errors, format!("_embedded.contacts.{j}.id")),
                }
            }
        }
        Some(_) => bad_type(errors, "_embedded.contacts".into(), "array"),
    }
    ids
}

fn new_lead(input: input::LeadInput, contact_ids: Vec<i64>, name: String) -> Lead {
    let patch = input.patch;
    Lead {
        name,
        price: patch.price,
        status_id: patch.status_id.unwrap_or(DEFAULT_STATUS_ID),
        pipeline_id: patch.pipeline_id.unwrap_or(DEFAULT_PIPELINE_ID),
        contact_ids,
        comment: input.comment.flatten(),
        ..Lead::default()
    }
}

/// `POST /api/v4/leads`.
pub(crate) fn create_leads(s: &mut State, body: &[u8]) -> HttpResponse {
    s.create_requests += 1;
    let items = match batch(body, MAX_BATCH) {
        Ok(items) => items,
        Err(reply) => return *reply,
    };
    let valid = validate(&items, |item, errors| {
        let contact_ids = linked_contacts(s, item, errors);
        let mut lead = input::lead(item, errors);
        let name = require_name(lead.patch.name.take(), "", errors);
        new_lead(lead, contact_ids, name)
    });
    let valid = match valid {
        Ok(valid) => valid,
        Err(reply) => return *reply,
    };
    let base = s.base_url.clone();
    let mut rows = Vec::new();
    for (request_id, lead) in valid {
        s.lead_creates += 1;
        let id = s.create_lead(lead);
        rows.push(created_row(&base, "leads", id, request_id));
    }
    created_reply(&base, "leads", rows)
}

/// `PATCH /api/v4/{contacts|leads}` with an array of items carrying ids, or
/// `PATCH /api/v4/{entity}/{id}` with one object, which is answered at the root.
pub(crate) fn update(s: &mut State, body: &[u8], entity: &str, one: Option<i64>) -> HttpResponse {
    let items = match one {
        Some(id) => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(mut item)) => {
                item.insert("id".into(), id.into());
                vec![Value::Object(item)]
            }
            Ok(_) => return problem(400, "Request body must be an object"),
            Err(_) => return problem(400, "Request body is not valid JSON"),
        },
        None => match batch(body, MAX_BATCH) {
            Ok(items) => items,
            Err(reply) => return *reply,
        },
    };
    let contacts = entity == "contacts";
    let valid = validate(&items, |item, errors| {
        let id = input::id(item, errors);
        let known = if contacts {
            s.contact(id).is_some()
        } else {
            s.lead(id).is_some()
        };
        if errors.is_empty() && !known {
            not_choice(errors, "id".into());
        }
        let contact = contacts.then(|| input::contact(item, "", errors));
        let lead = (!contacts).then(|| input::lead(item, errors));
        (id, contact, lead)
    });
    let valid = match valid {
        Ok(valid) => valid,
        Err(reply) => return *reply,
    };
    let base = s.base_url.clone();
    let mut rows = Vec::new();
    for (request_id, (id, contact, lead)) in valid {
        let updated_at = match (contact, lead) {
            (Some(c), _) => s.update_contact(id, c.name, c.phones, c.note),
            (None, Some(l)) => s.update_lead(id, l.patch, l.comment),
            (None, None) => None,
        };
        let mut row = json!({"id": id, "updated_at": updated_at,
            "_links": self_link(&base, entity, id)});
        if one.is_none() {
            row["request_id"] = request_id.into();
        }
        rows.push(row);
    }
    match (one, rows.pop()) {
        (Some(_), Some(row)) => hal(row),
        (_, last) => {
            rows.extend(last);
            let link = json!({"self": {"href": format!("{base}/api/v4/{entity}")}});
            hal(json!({"_links": link, "_embedded": {entity: rows}}))
        }
    }
}

enum ComplexContact {
    None,
    Existing(i64),
    New(Contact),
}

/// The one contact a complex lead may carry: an existing `{id}` or a new contact.
fn complex_contact(s: &State, item: &Value, errors: &mut Vec<Value>) -> ComplexContact {
    let contact = match item.pointer("/_embedded/contacts") {
        None | Some(Value::Null) => return ComplexContact::None,
        Some(Value::Array(contacts)) if contacts.is_empty() => return ComplexContact::None,
        Some(Value::Array(contacts)) if contacts.len() == 1 => &contacts[0],
        Some(Value::Array(_)) => {
            let detail = "A lead can carry at most one contact.";
            push_error(
                errors,
                "CountNotSupported",
                "_embedded.contacts".into(),
                detail,
            );
            return ComplexContact::None;
        }
        Some(_) => {
            bad_type(errors, "_embedded.contacts".into(), "array");
            return ComplexContact::None;
        }
    };
    if !contact["id"].is_null() {
        return match contact["id"].as_i64().filter(|id| s.contact(*id).is_some()) {
            Some(id) => ComplexContact::Existing(id),
            None => {
                not_choice(errors, "_embedded.contacts.0.id".into());
                ComplexContact::None
            }
        };
    }
    let input = input::contact(contact, "_embedded.contacts.0.", errors);
    ComplexContact::New(Contact {
        name: input.name.unwrap_or_default(),
        phones: input.phones.unwrap_or_default(),
        note: input.note.flatten(),
        ..Contact::default()
    })
}

/// `POST /api/v4/leads/complex`: leads with at most one new or existing contact each, answered
/// with a bare array. Companies are not kept by this fake, so `company_id` is always null, and
/// duplicate control is off, so nothing is ever `merged`.
pub(crate) fn complex(s: &mut State, body: &[u8]) -> HttpResponse {
    s.create_requests += 1;
    let items = match batch(body, MAX_COMPLEX) {
        Ok(items) => items,
        Err(reply) => return *reply,
    };
    let valid = validate(&items, |item, errors| {
        let contact = complex_contact(s, item, errors);
        (input::lead(item, errors), contact)
    });
    let valid = match valid {
        Ok(valid) => valid,
        Err(reply) => return *reply,
    };
    let mut rows = Vec::new();
    for (request_id, (mut lead, contact)) in valid {
        let (contact_id, new_contact) = match contact {
            ComplexContact::None => (None, false),
            ComplexContact::Existing(id) => (Some(id), false),
            ComplexContact::New(contact) => {
                s.contact_creates += 1;
                s.record_contact_arrival(&contact);
                (Some(s.insert_contact(contact)), true)
            }
        };
        let name = lead.patch.name.take();
        let contact_ids = contact_id.into_iter().collect();
        let id = s.insert_lead(new_lead(lead, contact_ids, String::new()));
        s.lead_creates += 1;
        let default_name = format!("Сделка #{id}");
        if let Some(stored) = s.leads.iter_mut().find(|l| l.id == id) {
            stored.name = name.filter(|n| !n.is_empty()).unwrap_or(default_name);
        }
        // Both exist before either event is taken, so the contact's event lists the lead.
        if let Some(cid) = contact_id.filter(|_| new_contact) {
            s.notify_contact(Action::Add, cid);
        }
        s.notify_lead(Action::Add, id, None);
        rows.push(
            json!({"id": id, "contact_id": contact_id, "company_id": null,
            "request_id": [request_id], "merged": false}),
        );
    }
    hal(Value::Array(rows))
}
