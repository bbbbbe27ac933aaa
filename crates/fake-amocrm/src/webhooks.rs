//! The webhooks API: `GET`, `POST` and `DELETE /api/v4/webhooks`.
//!
//! `GET` lists `_total_items` and `_embedded.webhooks` (204 when none), optionally filtered by
//! `filter[destination]`; `POST` answers the hook at the root, at most 100 per account; `DELETE`
//! takes `{destination}` and answers 204.

use std::collections::VecDeque;

use actix_web::HttpResponse;
use serde_json::{json, Value};

use crate::params::ListParams;
use crate::records::now;
use crate::state::{State, Webhook};
use crate::wire::{
    bad_type, hal, no_content, problem, push_error, validation_failed, webhook_json,
};

const MAX_WEBHOOKS: usize = 100;
/// The code AmoCRM gives an invalid webhook destination (Symfony's Url constraint).
const INVALID_URL_CODE: &str = "57c2f299-1154-4870-89bb-ef3b1f5ad229";

pub(crate) fn list(s: &State, p: &ListParams) -> HttpResponse {
    let wanted = |w: &&Webhook| p.destination.as_ref().is_none_or(|d| *d == w.destination);
    let to_json = |w: &Webhook| webhook_json(s.account_id, w);
    let rows: Vec<Value> = s.webhooks.iter().filter(wanted).map(to_json).collect();
    if rows.is_empty() {
        return no_content();
    }
    hal(json!({"_total_items": rows.len(), "_embedded": {"webhooks": rows}}))
}

/// Re-posting a known destination replaces its settings and re-enables it, as an admin saving
/// the hook in the settings would (what AmoCRM's API does here is not documented).
pub(crate) fn add(s: &mut State, body: &[u8]) -> HttpResponse {
    let Ok(hook) = serde_json::from_slice::<Value>(body) else {
        return problem(400, "Request body is not valid JSON");
    };
    let mut errors = Vec::new();
    let destination = hook["destination"].as_str().unwrap_or_default().to_owned();
    let web_url = |u: url::Url| matches!(u.scheme(), "http" | "https") && u.has_host();
    if !url::Url::parse(&destination).is_ok_and(web_url) {
        let path = "destination.destination".to_owned();
        push_error(&mut errors, INVALID_URL_CODE, path, "Invalid URL");
    }
    let events = hook["settings"].as_array().into_iter().flatten();
    let settings: Option<Vec<String>> = events.map(|e| e.as_str().map(Into::into)).collect();
    let settings = settings.filter(|events| !events.is_empty());
    let (Some(settings), true) = (settings.clone(), errors.is_empty()) else {
        if settings.is_none() {
            bad_type(&mut errors, "settings".into(), "non-empty array of strings");
        }
        return validation_failed(vec![json!({"request_id": "0", "errors": errors})]);
    };
    let now = now();
    let account_id = s.account_id;
    if let Some(w) = s.webhooks.iter_mut().find(|w| w.destination == destination) {
        (w.settings, w.updated_at, w.disabled) = (settings, now, false);
        w.failures.clear();
        return hal(webhook_json(account_id, w));
    }
    if s.webhooks.len() >= MAX_WEBHOOKS {
        return problem(400, "Webhooks limit exceeded");
    }
    s.webhook_seq += 1;
    let hook = Webhook {
        id: 800_000 + s.webhook_seq,
        destination,
        settings,
        created_at: now,
        updated_at: now,
        disabled: false,
        failures: VecDeque::new(),
    };
    let reply = hal(webhook_json(account_id, &hook));
    s.webhooks.push(hook);
    reply
}

/// Unknown destinations get 204 too: unsubscribing is idempotent here (AmoCRM does not document
/// this case).
pub(crate) fn delete(s: &mut State, body: &[u8]) -> HttpResponse {
    let hook = serde_json::from_slice::<Value>(body).unwrap_or_default();
    let Some(destination) = hook["destination"].as_str() else {
        return problem(400, "Request body must carry a destination");
    };
    s.webhooks.retain(|w| w.destination != destination);
    no_content()
}
