//! Operator routes under `/_fake/`, without a bearer: inspect the account and change it as a
//! user in AmoCRM's interface would, so webhooks fire; inject failures and latency; mint
//! authorization codes.
//!
//! Changes made here fire the same webhook events as changes through the API.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::companies::NoteTarget;
use crate::records::{plain_phones, Contact, Lead, DEFAULT_PIPELINE_ID, DEFAULT_STATUS_ID};
use crate::state::{LeadPatch, Shared, State};
use crate::wire::{contact_json, lead_json, no_content, problem, respond, webhook_json, Rejected};

#[derive(Deserialize)]
struct NewContact {
    name: String,
    #[serde(default)]
    phones: Vec<String>,
}

#[derive(Deserialize)]
struct ContactChanges {
    name: Option<String>,
    phones: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct NewLead {
    name: String,
    price: Option<i64>,
    status_id: Option<i64>,
    pipeline_id: Option<i64>,
    #[serde(default)]
    contact_ids: Vec<i64>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct Note {
    text: String,
}

#[derive(Deserialize)]
struct Fail {
    status: Option<u16>,
}

#[derive(Deserialize)]
struct Latency {
    ms: u64,
}

fn json_reply(status: StatusCode, body: Value) -> HttpResponse {
    respond(status, "application/json", body.to_string())
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Rejected> {
    let invalid = |e: serde_json::Error| Box::new(problem(400, &format!("Invalid body: {e}")));
    serde_json::from_slice(body).map_err(invalid)
}

/// The first contact id that does not name a live contact.
fn unknown_contact(s: &State, ids: &[i64]) -> Option<i64> {
    ids.iter().copied().find(|id| s.contact(*id).is_none())
}

pub(crate) fn handle(req: &HttpRequest, rest: &str, body: &[u8], shared: &Shared) -> HttpResponse {
    match run(req, rest, body, shared) {
        Ok(reply) => reply,
        Err(reply) => *reply,
    }
}

fn run(
    req: &HttpRequest,
    rest: &str,
    body: &[u8],
    shared: &Shared,
) -> Result<HttpResponse, Rejected> {
    let segments: Vec<&str> = rest.split('/').collect();
    let id = |segment: &str| {
        segment
            .parse::<i64>()
            .map_err(|_| Box::new(problem(404, "Not Found")))
    };
    let missing = || Box::new(problem(404, "Not Found"));
    let mut s = shared.lock();
    let reply = match (req.method().as_str(), segments.as_slice()) {
        ("GET", ["state"]) => json_reply(StatusCode::OK, snapshot(shared, &s)),
        ("POST", ["contacts"]) => {
            let new: NewContact = parse(body)?;
            let contact = Contact {
                name: new.name,
                phones: plain_phones(&new.phones),
                ..Contact::default()
            };
            let id = s.create_contact(contact);
            created(s.contact(id).map(|c| contact_json(&s, c, true)))
        }
        ("PATCH", ["contacts", one]) => {
            let changes: ContactChanges = parse(body)?;
            let id = id(one)?;
            let phones = changes.phones.as_deref().map(plain_phones);
            s.update_contact(id, changes.name, phones, None)
                .ok_or_else(missing)?;
            ok(s.contact(id).map(|c| contact_json(&s, c, true)))
        }
        ("DELETE", ["contacts", one]) => gone(s.set_contact_deleted(id(one)?, true)),
        ("POST", ["contacts", one, "restore"]) => gone(s.set_contact_deleted(id(one)?, false)),
        ("POST", ["leads"]) => {
            let new: NewLead = parse(body)?;
            if let Some(bad) = unknown_contact(&s, &new.contact_ids) {
                return Err(Box::new(problem(400, &format!("Unknown contact {bad}"))));
            }
            let lead = Lead {
                name: new.name,
                price: new.price,
                status_id: new.status_id.unwrap_or(DEFAULT_STATUS_ID),
                pipeline_id: new.pipeline_id.unwrap_or(DEFAULT_PIPELINE_ID),
                contact_ids: new.contact_ids,
                ..Lead::default()
            };
            let id = s.create_lead(lead);
            created(s.lead(id).map(|l| lead_json(&s, l, true)))
        }
        ("PATCH", ["leads", one]) => {
            let patch: LeadPatch = parse(body)?;
            let id = id(one)?;
            let linked = patch.contact_ids.as_deref().unwrap_or_default();
            if let Some(bad) = unknown_contact(&s, linked) {
                return Err(Box::new(problem(400, &format!("Unknown contact {bad}"))));
            }
            s.update_lead(id, patch, None).ok_or_else(missing)?;
            ok(s.lead(id).map(|l| lead_json(&s, l, true)))
        }
        ("DELETE", ["leads", one]) => gone(s.set_lead_deleted(id(one)?, true)),
        ("POST", ["leads", one, "restore"]) => gone(s.set_lead_deleted(id(one)?, false)),
        ("POST", ["companies"]) => {
            let id = s.create_company(parse::<Named>(body)?.name);
            json_reply(StatusCode::CREATED, json!({"id": id}))
        }
        ("PATCH", ["companies", one]) => {
            let name = parse::<Named>(body)?.name;
            gone(s.rename_company(id(one)?, name))
        }
        ("DELETE", ["companies", one]) => gone(s.set_company_deleted(id(one)?, true)),
        ("POST", ["companies", one, "restore"]) => gone(s.set_company_deleted(id(one)?, false)),
        ("POST", [entity @ ("contacts" | "leads"), one, "notes"]) => {
            let text = parse::<Note>(body)?.text;
            let id = id(one)?;
            let target = match *entity {
                "contacts" => NoteTarget::Contact(id),
                _ => NoteTarget::Lead(id),
            };
            let note = s.add_note(target, &text).ok_or_else(missing)?;
            json_reply(StatusCode::CREATED, json!({"id": note}))
        }
        ("POST", ["fail"]) => {
            s.fail = parse::<Fail>(body)?.status;
            no_content()
        }
        ("POST", ["latency"]) => {
            s.latency = std::time::Duration::from_millis(parse::<Latency>(body)?.ms);
            no_content()
        }
        ("POST", ["oauth", "code"]) => {
            let code = s.tokens.issue_code();
            json_reply(StatusCode::OK, json!({"code": code}))
        }
        ("POST", ["unblock"]) => {
            s.limiter.unblock();
            no_content()
        }
        _ => problem(404, "Not Found"),
    };
    Ok(reply)
}

fn created(row: Option<Value>) -> HttpResponse {
    row.map_or_else(
        || problem(404, "Not Found"),
        |row| json_reply(StatusCode::CREATED, row),
    )
}

fn ok(row: Option<Value>) -> HttpResponse {
    row.map_or_else(
        || problem(404, "Not Found"),
        |row| json_reply(StatusCode::OK, row),
    )
}

fn gone(changed: bool) -> HttpResponse {
    if changed {
        no_content()
    } else {
        problem(404, "Not Found")
    }
}

/// Everything an operator wants to see at a glance, deleted rows included.
fn snapshot(shared: &Shared, s: &State) -> Value {
    let contacts: Vec<Value> = s
        .contacts
        .iter()
        .map(|c| contact_json(s, c, true))
        .collect();
    let leads: Vec<Value> = s.leads.iter().map(|l| lead_json(s, l, true)).collect();
    let webhooks: Vec<Value> = s
        .webhooks
        .iter()
        .map(|w| {
            let mut row = webhook_json(s.account_id, w);
            row["recent_failures"] = w.failures.len().into();
            row
        })
        .collect();
    let failed = s.deliveries.iter().filter(|d| !d.succeeded()).count();
    let counters = json!({"requests": s.requests, "contact_creates": s.contact_creates,
        "lead_creates": s.lead_creates, "create_requests": s.create_requests,
        "searches": s.searches,
        "token_refreshes": s.tokens.refreshes,
        "rate_limited": s.limiter.rate_limited(),
        "max_requests_in_one_second": s.limiter.max_in_one_second(),
        "deliveries": s.deliveries.len(), "failed_deliveries": failed});
    json!({"account": {"id": s.account_id, "subdomain": shared.config.subdomain},
        "contacts": contacts, "leads": leads, "webhooks": webhooks, "counters": counters,
        "latency_ms": s.latency.as_millis() as u64, "fail": s.fail,
        "blocked": s.limiter.is_blocked()})
}
