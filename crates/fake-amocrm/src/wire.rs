//! What goes over the wire: HAL bodies of contacts, leads and webhooks, and the error replies.
//!
//! Successes are `application/hal+json`; errors are `application/problem+json` with `title`,
//! `type`, `status` and `detail`, plus `validation-errors` for a rejected batch item. The edge
//! errors are not JSON at all: 429 is plain text, and 403/502/504 are nginx HTML pages.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Value};

use crate::records::{
    Contact, Lead, LEAD_COMMENT_FIELD_ID, NOTE_FIELD_ID, PHONE_ENUMS, PHONE_FIELD_ID,
    RESPONSIBLE_USER_ID,
};
use crate::state::{State, Webhook};

/// An error reply, boxed so that results carrying it stay small.
pub(crate) type Rejected = Box<HttpResponse>;

pub(crate) const BAD_LOGIN: &str = "Неверный логин или пароль";
const PROBLEM: &str = "application/problem+json";

pub(crate) fn respond(code: StatusCode, content_type: &str, body: String) -> HttpResponse {
    HttpResponse::build(code)
        .content_type(content_type)
        .body(body)
}

/// What a failing AmoCRM answers; rate limits and blocks come from the edge, not as JSON.
pub(crate) fn failure(status: u16) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (status, reason) = (code.as_u16(), code.canonical_reason().unwrap_or("Error"));
    let nginx = format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
         <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    match status {
        401 => problem(401, BAD_LOGIN),
        429 => respond(code, "text/plain", "Too Many Requests".into()),
        403 | 502 | 504 => respond(code, "text/html", nginx),
        _ => problem(status, reason),
    }
}

fn problem_body(status: u16, detail: &str) -> Value {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json!({"title": code.canonical_reason().unwrap_or("Error"),
        "type": format!("https://httpstatus.es/{}", code.as_u16()), "status": code.as_u16(), "detail": detail})
}

pub(crate) fn problem(status: u16, detail: &str) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(code, PROBLEM, problem_body(status, detail).to_string())
}

/// 400 with one `validation-errors` entry per failing batch item.
pub(crate) fn validation_failed(items: Vec<Value>) -> HttpResponse {
    let mut body = problem_body(400, "Request validation failed");
    body["validation-errors"] = Value::Array(items);
    respond(StatusCode::BAD_REQUEST, PROBLEM, body.to_string())
}

pub(crate) fn hal(body: Value) -> HttpResponse {
    respond(StatusCode::OK, "application/hal+json", body.to_string())
}

pub(crate) fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

pub(crate) fn push_error(errors: &mut Vec<Value>, code: &str, path: String, detail: &str) {
    errors.push(json!({"code": code, "path": path, "detail": detail}));
}

pub(crate) fn not_choice(errors: &mut Vec<Value>, path: String) {
    let detail = "The value you selected is not a valid choice.";
    push_error(errors, "NotSupportedChoice", path, detail);
}

pub(crate) fn bad_type(errors: &mut Vec<Value>, path: String, ty: &str) {
    let detail = format!("This value should be of type {ty}.");
    push_error(errors, "InvalidType", path, &detail);
}

pub(crate) fn self_link(base: &str, entity: &str, id: i64) -> Value {
    json!({"self": {"href": format!("{base}/api/v4/{entity}/{id}")}})
}

fn text_field(id: i64, name: &str, value: &str) -> Value {
    json!({"field_id": id, "field_name": name, "field_code": null, "field_type": "text",
        "values": [{"value": value}]})
}

/// A contact as `GET /contacts` shows it; `with_leads` adds `_embedded.leads`.
pub(crate) fn contact_json(s: &State, c: &Contact, with_leads: bool) -> Value {
    let mut fields = Vec::new();
    if !c.phones.is_empty() {
        let value = |(v, e): &(String, usize)| json!({"value": v, "enum_id": PHONE_ENUMS[*e].1, "enum_code": PHONE_ENUMS[*e].0});
        let values: Vec<Value> = c.phones.iter().map(value).collect();
        fields.push(json!({"field_id": PHONE_FIELD_ID, "field_name": "Телефон",
            "field_code": "PHONE", "field_type": "multitext", "values": values}));
    }
    if let Some(note) = &c.note {
        fields.push(text_field(NOTE_FIELD_ID, "Код оплаты", note));
    }
    let fields = Some(Value::Array(fields)).filter(|f| f != &json!([]));
    let base = &s.base_url;
    let mut embedded = json!({"tags": [], "companies": []});
    if with_leads {
        let link = |id: i64| json!({"id": id, "_links": self_link(base, "leads", id)});
        embedded["leads"] = s.leads_of(c.id).into_iter().map(link).collect();
    }
    json!({"id": c.id, "name": c.name, "first_name": "", "last_name": "",
        "responsible_user_id": RESPONSIBLE_USER_ID, "group_id": 0,
        "created_by": RESPONSIBLE_USER_ID, "updated_by": RESPONSIBLE_USER_ID,
        "created_at": c.created_at, "updated_at": c.updated_at, "closest_task_at": null,
        "is_deleted": c.deleted, "custom_fields_values": fields, "account_id": s.account_id,
        "_links": self_link(base, "contacts", c.id), "_embedded": embedded})
}

/// A lead as `GET /leads` shows it; `with_contacts` adds `_embedded.contacts`, main first.
pub(crate) fn lead_json(s: &State, l: &Lead, with_contacts: bool) -> Value {
    let base = &s.base_url;
    let mut embedded = json!({"tags": [], "companies": []});
    if with_contacts {
        let link = |(i, id): (usize, &i64)| json!({"id": id, "is_main": i == 0, "_links": self_link(base, "contacts", *id)});
        embedded["contacts"] = l.contact_ids.iter().enumerate().map(link).collect();
    }
    let comment = l.comment.as_deref();
    let fields = comment.map(|c| json!([text_field(LEAD_COMMENT_FIELD_ID, "Комментарий", c)]));
    json!({"id": l.id, "name": l.name, "price": l.price,
        "responsible_user_id": RESPONSIBLE_USER_ID, "group_id": 0, "status_id": l.status_id,
        "pipeline_id": l.pipeline_id, "loss_reason_id": null, "created_by": RESPONSIBLE_USER_ID,
        "updated_by": RESPONSIBLE_USER_ID, "created_at": l.created_at, "updated_at": l.updated_at,
        "closed_at": l.closed_at, "closest_task_at": null, "is_deleted": l.deleted,
        "custom_fields_values": fields, "score": null, "account_id": s.account_id,
        "_embedded": embedded, "_links": self_link(base, "leads", l.id)})
}

pub(crate) fn webhook_json(account_id: i64, w: &Webhook) -> Value {
    json!({"id": w.id, "destination": w.destination, "created_at": w.created_at,
        "updated_at": w.updated_at, "account_id": account_id, "created_by": 0, "sort": 1,
        "disabled": w.disabled, "settings": w.settings})
}

/// One entity's link to a contact, as the links endpoints show it.
pub(crate) fn link_json(lead_id: i64, contact_id: i64, main: bool) -> Value {
    json!({"entity_id": lead_id, "entity_type": "leads", "to_entity_id": contact_id,
        "to_entity_type": "contacts", "metadata": {"is_main": main}})
}
