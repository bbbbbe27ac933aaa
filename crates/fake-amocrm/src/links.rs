//! Links between a lead and its contacts: `POST /leads/{id}/link`, `/unlink`, `GET /links`.
//!
//! The body is `[{"to_entity_id":<contact>,"to_entity_type":"contacts","metadata":{"is_main":true}}]`.
//! Linking answers the links it made; unlinking answers 204. Only contacts can be linked here,
//! since this fake keeps no companies or catalogs. Each change counts as an update of the lead.

use actix_web::HttpResponse;
use serde_json::{json, Value};

use crate::state::State;
use crate::wire::{hal, link_json, no_content, not_choice, problem, validation_failed, Rejected};

/// The contacts named by a link body, with their `is_main` flags.
fn targets(s: &State, body: &[u8]) -> Result<Vec<(i64, bool)>, Rejected> {
    let items = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if !items.is_empty() => items,
        Ok(_) => {
            return Err(Box::new(problem(
                400,
                "Request body must be a non-empty array",
            )))
        }
        Err(_) => return Err(Box::new(problem(400, "Request body is not valid JSON"))),
    };
    let (mut found, mut failed) = (Vec::new(), Vec::new());
    for (i, item) in items.iter().enumerate() {
        let mut errors = Vec::new();
        if item["to_entity_type"] != "contacts" {
            not_choice(&mut errors, "to_entity_type".into());
        }
        let id = item["to_entity_id"].as_i64();
        match id.filter(|id| s.contact(*id).is_some()) {
            Some(id) if errors.is_empty() => {
                found.push((
                    id,
                    item.pointer("/metadata/is_main") == Some(&Value::Bool(true)),
                ));
            }
            Some(_) => {}
            None => not_choice(&mut errors, "to_entity_id".into()),
        }
        if !errors.is_empty() {
            failed.push(json!({"request_id": i.to_string(), "errors": errors}));
        }
    }
    if failed.is_empty() {
        Ok(found)
    } else {
        Err(Box::new(validation_failed(failed)))
    }
}

fn links_of(s: &State, lead_id: i64) -> Vec<Value> {
    let Some(lead) = s.lead(lead_id) else {
        return Vec::new();
    };
    let link = |(i, id): (usize, &i64)| link_json(lead_id, *id, i == 0);
    lead.contact_ids.iter().enumerate().map(link).collect()
}

/// `POST /api/v4/leads/{id}/link`.
pub(crate) fn link(s: &mut State, lead_id: i64, body: &[u8]) -> HttpResponse {
    if s.lead(lead_id).is_none() {
        return problem(404, "Not Found");
    }
    let targets = match targets(s, body) {
        Ok(targets) => targets,
        Err(reply) => return *reply,
    };
    for (contact_id, main) in &targets {
        s.relink(lead_id, *contact_id, Some(*main));
    }
    let links = links_of(s, lead_id);
    let made = |l: &&Value| targets.iter().any(|(id, _)| l["to_entity_id"] == *id);
    let made: Vec<Value> = links.iter().filter(made).cloned().collect();
    hal(json!({"_embedded": {"links": made}}))
}

/// `POST /api/v4/leads/{id}/unlink`.
pub(crate) fn unlink(s: &mut State, lead_id: i64, body: &[u8]) -> HttpResponse {
    if s.lead(lead_id).is_none() {
        return problem(404, "Not Found");
    }
    let targets = match targets(s, body) {
        Ok(targets) => targets,
        Err(reply) => return *reply,
    };
    for (contact_id, _) in targets {
        let linked = s
            .lead(lead_id)
            .is_some_and(|l| l.contact_ids.contains(&contact_id));
        if linked {
            s.relink(lead_id, contact_id, None);
        }
    }
    no_content()
}

/// `GET /api/v4/leads/{id}/links`; 204 when the lead has none.
pub(crate) fn list(s: &State, lead_id: i64) -> HttpResponse {
    let links = links_of(s, lead_id);
    if links.is_empty() {
        return no_content();
    }
    let href = format!("{}/api/v4/leads/{lead_id}/links", s.base_url);
    hal(json!({"_links": {"self": {"href": href}}, "_embedded": {"links": links}}))
}
