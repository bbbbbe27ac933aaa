//! Request dispatch: `/api/v4` behind the edge checks, the OAuth endpoint, and `/_fake` admin.
//!
//! An `/api/v4` call is counted, passes the rate limiter, waits the configured latency, meets
//! any injected failure, then the bearer check, in that order. The state lock is taken only
//! after the wait and released before the reply is sent.

use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::limits::Verdict;
use crate::params::{page_of, ListParams, RowKeys};
use crate::records::Contact;
use crate::state::{Shared, State};
use crate::wire::{contact_json, failure, hal, lead_json, no_content, problem, respond, BAD_LOGIN};
use crate::{admin, catalogue, links, oauth, webhooks, writes};

pub(crate) async fn dispatch(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let shared = shared.get_ref();
    let path = req.path().trim_end_matches('/');
    let mut resp = if let Some(rest) = path.strip_prefix("/api/v4/") {
        api(&req, rest, &body, shared).await
    } else if path == "/oauth2/access_token" {
        match req.method().as_str() {
            "POST" => oauth::token_endpoint(shared, &body),
            _ => problem(405, "Method Not Allowed"),
        }
    } else if let Some(rest) = path.strip_prefix("/_fake/") {
        admin::handle(&req, rest, &body, shared)
    } else {
        problem(404, "Not Found")
    };
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        let name = HeaderName::from_static("x-request-id");
        resp.headers_mut().insert(name, id);
    }
    if shared.config.log_to_stdout {
        println!("{} {} {}", req.method(), path, resp.status().as_u16());
    }
    resp
}

async fn api(req: &HttpRequest, rest: &str, body: &[u8], shared: &Shared) -> HttpResponse {
    let config = &shared.config;
    let arrived = Instant::now();
    let (latency, fail, rejection, verdict) = {
        let mut s = shared.lock();
        s.requests += 1;
        s.record_arrival(arrived);
        let verdict = s
            .limiter
            .check(arrived, config.rps_limit, config.block_after_429s);
        let rejection = s.reject_writes.clone().filter(|_| req.method() != "GET");
        (s.latency, s.fail, rejection, verdict)
    };
    tokio::time::sleep(latency).await;
    match verdict {
        Verdict::Blocked => return failure(403),
        Verdict::Limited => return failure(429),
        Verdict::Pass => {}
    }
    if let Some(status) = fail {
        return failure(status);
    }
    if let Some(body) = rejection {
        return respond(StatusCode::BAD_REQUEST, "application/problem+json", body);
    }
    let bearer = req.headers().get(AUTHORIZATION).map(|v| v.to_str());
    if !oauth::bearer_ok(shared, bearer.and_then(Result::ok)) {
        return problem(401, BAD_LOGIN);
    }
    let mut s = shared.lock();
    // Other calls may have arrived during the wait: creates time themselves by this one.
    s.arrived = arrived;
    route(req, rest, body, &mut s)
}

fn route(req: &HttpRequest, rest: &str, body: &[u8], s: &mut State) -> HttpResponse {
    let segments: Vec<&str> = rest.split('/').collect();
    let params = match ListParams::parse(req.query_string()) {
        Ok(params) => params,
        Err(detail) if req.method() == "GET" => return problem(400, detail),
        Err(_) => ListParams::default(),
    };
    let id = |segment: &str| segment.parse::<i64>().ok();
    if params.query.is_some() && matches!(segments.as_slice(), ["contacts"] | ["leads"]) {
        s.searches += 1;
    }
    match (req.method().as_str(), segments.as_slice()) {
        ("GET", [entity @ ("contacts" | "leads" | "companies"), "custom_fields"]) => {
            catalogue::list_fields(&s.catalogue, &s.base_url, entity, &params)
        }
        ("GET", ["leads", "pipelines"]) => catalogue::list_pipelines(&s.catalogue, &s.base_url),
        ("GET", ["users"]) => catalogue::list_users(&s.catalogue, &s.base_url, &params),
        ("GET", ["contacts"]) => list_contacts(s, &params),
        ("GET", ["contacts", one]) => match id(one) {
            Some(id) => match s.contact(id) {
                Some(c) => hal(contact_json(s, c, params.with("leads"))),
                None => no_content(),
            },
            None => problem(404, "Not Found"),
        },
        ("POST", ["contacts"]) => writes::create_contacts(s, body),
        ("PATCH", ["contacts"]) => writes::update(s, body, "contacts", None),
        ("PATCH", ["contacts", one]) => match id(one) {
            Some(id) if s.contact(id).is_some() => writes::update(s, body, "contacts", Some(id)),
            _ => problem(404, "Not Found"),
        },
        ("GET", ["leads"]) => list_leads(s, &params),
        ("GET", ["leads", one]) => match id(one) {
            Some(id) => match s.lead(id) {
                Some(l) => hal(lead_json(s, l, params.with("contacts"))),
                None => no_content(),
            },
            None => problem(404, "Not Found"),
        },
        ("POST", ["leads"]) => writes::create_leads(s, body),
        ("POST", ["leads", "complex"]) => writes::complex(s, body),
        ("PATCH", ["leads"]) => writes::update(s, body, "leads", None),
        ("PATCH", ["leads", one]) => match id(one) {
            Some(id) if s.lead(id).is_some() => writes::update(s, body, "leads", Some(id)),
            _ => problem(404, "Not Found"),
        },
        ("POST", ["leads", one, "link"]) => match id(one) {
            Some(id) => links::link(s, id, body),
            None => problem(404, "Not Found"),
        },
        ("POST", ["leads", one, "unlink"]) => match id(one) {
            Some(id) => links::unlink(s, id, body),
            None => problem(404, "Not Found"),
        },
        ("GET", ["leads", one, "links"]) => match id(one) {
            Some(id) => links::list(s, id),
            None => problem(404, "Not Found"),
        },
        ("GET", ["webhooks"]) => webhooks::list(s, &params),
        ("POST", ["webhooks"]) => webhooks::add(s, body),
        ("DELETE", ["webhooks"]) => webhooks::delete(s, body),
        _ => problem(404, "Not Found"),
    }
}

fn keys(id: i64, created_at: i64, updated_at: i64) -> RowKeys {
    (id, created_at, updated_at)
}

/// Besides the raw substring, an all-digit query matches the digits of a phone, since searching
/// `9991112233` finds `+7 (999) 111-22-33`.
fn list_contacts(s: &State, p: &ListParams) -> HttpResponse {
    let query = p.query.as_deref().unwrap_or_default();
    let digit_query = Some(query).filter(|q| q.bytes().all(|b| b.is_ascii_digit()));
    let digits = |v: &str| v.chars().filter(char::is_ascii_digit).collect::<String>();
    let hit = |c: &&Contact| {
        let mut hay: Vec<&str> = c.phones.iter().map(|(v, _)| v.as_str()).collect();
        hay.push(&c.name);
        hay.extend(c.note.as_deref());
        let by_digits = |q: &str| c.phones.iter().any(|(v, _)| digits(v).contains(q));
        p.matches(&hay) || digit_query.is_some_and(by_digits)
    };
    let deleted = p.with("only_deleted");
    let mut rows: Vec<_> = s
        .contacts
        .iter()
        .filter(|c| c.deleted == deleted && p.admits(keys(c.id, c.created_at, c.updated_at)))
        .filter(hit)
        .map(|c| {
            let row = contact_json(s, c, p.with("leads"));
            (keys(c.id, c.created_at, c.updated_at), row)
        })
        .collect();
    p.sort(&mut rows);
    let rows = rows.into_iter().map(|(_, row)| row).collect();
    page_of(&s.base_url, "contacts", rows, p)
}

fn list_leads(s: &State, p: &ListParams) -> HttpResponse {
    let deleted = p.with("only_deleted");
    let mut rows: Vec<_> = s
        .leads
        .iter()
        .filter(|l| l.deleted == deleted && p.admits(keys(l.id, l.created_at, l.updated_at)))
        .filter(|l| p.matches(&[&l.name, l.comment.as_deref().unwrap_or_default()]))
        .map(|l| {
            let row = lead_json(s, l, p.with("contacts"));
            (keys(l.id, l.created_at, l.updated_at), row)
        })
        .collect();
    p.sort(&mut rows);
    let rows = rows.into_iter().map(|(_, row)| row).collect();
    page_of(&s.base_url, "leads", rows, p)
}
