//! An HTTP fake of the AmoCRM (Kommo) API v4 on loopback, for integration tests.
//!
//! It follows how AmoCRM documents and actually behaves (contacts, leads, webhooks API,
//! errors): bearer check with the 401 problem+json body; `limit` clamped to 250;
//! **204 with an empty body** for an empty page, including the page behind the `next` link that a
//! last full page still carries; no total count; `query` as a case-insensitive substring over the
//! name and every custom-field value, so a payment-code note matches a phone search just as
//! AmoCRM's false positives do; array batches of at most 250 that fail as a whole with
//! `validation-errors`; non-JSON 429/403 bodies. The state lock is never held across an await.

// Test support: a test binary that uses only part of this API must still build under -D warnings.
#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

const ACCOUNT_ID: i64 = 31_415_926;
const PHONE_FIELD_ID: i64 = 111;
const NOTE_FIELD_ID: i64 = 333;
/// Phone enum codes with the enum ids of this fake account.
const PHONE_ENUMS: [(&str, i64); 6] = [
    ("WORK", 222),
    ("WORKDD", 223),
    ("MOB", 224),
    ("FAX", 225),
    ("HOME", 226),
    ("OTHER", 227),
];
const DEFAULT_STATUS_ID: i64 = 10_101;
const DEFAULT_PIPELINE_ID: i64 = 2_020;
const MAX_BATCH: usize = 250;
const MAX_WEBHOOKS: usize = 100;
const BAD_LOGIN: &str = "Неверный логин или пароль";
const PROBLEM: &str = "application/problem+json";
/// The code AmoCRM gives an invalid webhook destination (Symfony's Url constraint).
const INVALID_URL_CODE: &str = "57c2f299-1154-4870-89bb-ef3b1f5ad229";

/// A running fake; dropping it stops the server.
pub struct FakeAmo {
    base_url: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Debug)]
pub struct FakeContact {
    pub id: i64,
    pub name: String,
    pub phones: Vec<String>,
    pub note: Option<String>,
}

#[derive(Clone, Debug)]
pub struct FakeLead {
    pub id: i64,
    pub name: String,
    pub price: Option<i64>,
    pub status_id: i64,
    pub pipeline_id: i64,
    pub contact_ids: Vec<i64>,
}

#[derive(Default)]
struct Contact {
    id: i64,
    name: String,
    /// The value as sent, with an index into `PHONE_ENUMS`.
    phones: Vec<(String, usize)>,
    note: Option<String>,
    created_at: i64,
}

struct Webhook {
    id: i64,
    destination: String,
    settings: Vec<String>,
    created_at: i64,
    updated_at: i64,
}

#[derive(Default)]
struct State {
    base_url: String,
    latency: Duration,
    fail: Option<u16>,
    contacts: Vec<Contact>,
    /// Each lead with its `created_at`.
    leads: Vec<(FakeLead, i64)>,
    webhooks: Vec<Webhook>,
    webhook_seq: i64,
    contact_creates: usize,
    lead_creates: usize,
    requests: usize,
}

impl State {
    // Nothing is ever deleted, so ids can follow the row count.
    fn insert_contact(&mut self, mut contact: Contact) -> i64 {
        contact.id = 1_000_001 + self.contacts.len() as i64;
        contact.created_at = now();
        self.contacts.push(contact);
        self.contacts.len() as i64 + 1_000_000
    }

    fn insert_lead(&mut self, mut lead: FakeLead) -> i64 {
        lead.id = 5_000_001 + self.leads.len() as i64;
        self.leads.push((lead, now()));
        self.leads.len() as i64 + 5_000_000
    }
}

impl FakeAmo {
    pub const TOKEN: &'static str = "fake-amo-access-token";

    /// Binds 127.0.0.1:0 and serves on the current tokio runtime.
    pub async fn start() -> FakeAmo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake AmoCRM");
        let port = listener.local_addr().expect("fake AmoCRM address").port();
        let base_url = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(State {
            base_url: base_url.clone(),
            ..State::default()
        }));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(8 << 20))
                .default_service(web::to(dispatch))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen on the fake AmoCRM socket")
        .run();
        let handle = server.handle();
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        FakeAmo {
            base_url,
            state,
            handle,
            task,
        }
    }

    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn set_latency(&self, latency: Duration) {
        lock(&self.state).latency = latency;
    }

    pub fn fail_with(&self, status: Option<u16>) {
        lock(&self.state).fail = status;
    }

    pub fn add_contact(&self, name: &str, phones: &[&str]) -> i64 {
        self.seed_contact(name, phones, None)
    }

    pub fn add_contact_with_note(&self, name: &str, phones: &[&str], note: &str) -> i64 {
        self.seed_contact(name, phones, Some(note.to_owned()))
    }

    fn seed_contact(&self, name: &str, phones: &[&str], note: Option<String>) -> i64 {
        let phones = phones.iter().map(|p| (p.to_string(), 0)).collect();
        let name = name.to_owned();
        lock(&self.state).insert_contact(Contact {
            name,
            phones,
            note,
            ..Contact::default()
        })
    }

    /// The first contact id is the main contact.
    pub fn add_lead(&self, name: &str, contact_ids: &[i64]) -> i64 {
        lock(&self.state).insert_lead(FakeLead {
            id: 0,
            name: name.to_owned(),
            price: None,
            status_id: DEFAULT_STATUS_ID,
            pipeline_id: DEFAULT_PIPELINE_ID,
            contact_ids: contact_ids.to_vec(),
        })
    }

    pub fn contacts(&self) -> Vec<FakeContact> {
        let snapshot = |c: &Contact| FakeContact {
            id: c.id,
            name: c.name.clone(),
            phones: c.phones.iter().map(|(v, _)| v.clone()).collect(),
            note: c.note.clone(),
        };
        lock(&self.state).contacts.iter().map(snapshot).collect()
    }

    pub fn leads(&self) -> Vec<FakeLead> {
        lock(&self.state)
            .leads
            .iter()
            .map(|(l, _)| l.clone())
            .collect()
    }

    /// (destination, settings) of every registered webhook.
    pub fn webhooks(&self) -> Vec<(String, Vec<String>)> {
        let hooks = |w: &Webhook| (w.destination.clone(), w.settings.clone());
        lock(&self.state).webhooks.iter().map(hooks).collect()
    }

    pub fn contact_creates(&self) -> usize {
        lock(&self.state).contact_creates
    }

    pub fn lead_creates(&self) -> usize {
        lock(&self.state).lead_creates
    }

    pub fn requests(&self) -> usize {
        lock(&self.state).requests
    }
}

impl Drop for FakeAmo {
    fn drop(&mut self) {
        // `stop` sends its command at once; the returned future only awaits completion.
        drop(self.handle.stop(false));
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
    since_epoch.map_or(0, |d| d.as_secs() as i64)
}

async fn dispatch(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let mut resp = guard(&req, &body, state.get_ref()).await;
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        let name = HeaderName::from_static("x-request-id");
        resp.headers_mut().insert(name, id);
    }
    resp
}

/// Counting, latency, injected failures and the bearer check, in that order.
async fn guard(req: &HttpRequest, body: &[u8], state: &Mutex<State>) -> HttpResponse {
    let path = req.path().trim_end_matches('/');
    let Some(rest) = path.strip_prefix("/api/v4/") else {
        return problem(404, "Not Found");
    };
    let (latency, fail) = {
        let mut s = lock(state);
        s.requests += 1;
        (s.latency, s.fail)
    };
    tokio::time::sleep(latency).await;
    if let Some(status) = fail {
        return failure(status);
    }
    let bearer = req.headers().get(AUTHORIZATION).map(|v| v.to_str());
    let bearer = bearer.and_then(Result::ok);
    if bearer != Some(format!("Bearer {}", FakeAmo::TOKEN).as_str()) {
        return problem(401, BAD_LOGIN);
    }
    route(req, rest, body, &mut lock(state))
}

fn route(req: &HttpRequest, rest: &str, body: &[u8], s: &mut State) -> HttpResponse {
    let segments: Vec<&str> = rest.split('/').collect();
    let params = match ListParams::parse(req.query_string()) {
        Ok(params) => params,
        Err(detail) if req.method() == "GET" => return problem(400, detail),
        Err(_) => ListParams::default(),
    };
    match (req.method().as_str(), segments.as_slice()) {
        ("GET", ["contacts"]) => list_contacts(s, &params),
        ("GET", ["contacts", id]) => match id.parse::<i64>() {
            Ok(id) => match s.contacts.iter().find(|c| c.id == id) {
                Some(c) => hal(contact_json(&s.base_url, c)),
                None => HttpResponse::NoContent().finish(),
            },
            Err(_) => problem(404, "Not Found"),
        },
        ("POST", ["contacts"]) => create(s, body, "contacts", parse_contact, |s, c| {
            s.contact_creates += 1;
            s.insert_contact(c)
        }),
        ("GET", ["leads"]) => list_leads(s, &params),
        ("POST", ["leads"]) => create(s, body, "leads", parse_lead, |s, l| {
            s.lead_creates += 1;
            s.insert_lead(l)
        }),
        ("GET", ["webhooks"]) => list_webhooks(s, &params),
        ("POST", ["webhooks"]) => add_webhook(s, body),
        ("DELETE", ["webhooks"]) => delete_webhook(s, body),
        _ => problem(404, "Not Found"),
    }
}

/// What a failing AmoCRM answers; rate limits and blocks come from the edge, not as JSON.
fn failure(status: u16) -> HttpResponse {
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

fn respond(code: StatusCode, content_type: &str, body: String) -> HttpResponse {
    HttpResponse::build(code)
        .content_type(content_type)
        .body(body)
}

fn problem_body(status: u16, detail: &str) -> Value {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json!({"title": code.canonical_reason().unwrap_or("Error"),
        "type": format!("https://httpstatus.es/{}", code.as_u16()), "status": code.as_u16(), "detail": detail})
}

fn problem(status: u16, detail: &str) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(code, PROBLEM, problem_body(status, detail).to_string())
}

/// 400 with one `validation-errors` entry per failing batch item.
fn validation_failed(items: Vec<Value>) -> HttpResponse {
    let mut body = problem_body(400, "Request validation failed");
    body["validation-errors"] = Value::Array(items);
    respond(StatusCode::BAD_REQUEST, PROBLEM, body.to_string())
}

fn hal(body: Value) -> HttpResponse {
    respond(StatusCode::OK, "application/hal+json", body.to_string())
}

fn push_error(errors: &mut Vec<Value>, code: &str, path: String, detail: &str) {
    errors.push(json!({"code": code, "path": path, "detail": detail}));
}

fn not_choice(errors: &mut Vec<Value>, path: String) {
    let detail = "The value you selected is not a valid choice.";
    push_error(errors, "NotSupportedChoice", path, detail);
}

fn bad_type(errors: &mut Vec<Value>, path: String, ty: &str) {
    let detail = format!("This value should be of type {ty}.");
    push_error(errors, "InvalidType", path, &detail);
}

#[derive(Default)]
struct ListParams {
    page: usize,
    limit: usize,
    query: Option<String>,
    with: Vec<String>,
    destination: Option<String>,
}

impl ListParams {
    fn parse(qs: &str) -> Result<ListParams, &'static str> {
        let mut p = ListParams {
            page: 1,
            limit: 50,
            ..ListParams::default()
        };
        for (key, value) in url::form_urlencoded::parse(qs.as_bytes()) {
            let number = value.trim().parse::<usize>().ok().filter(|n| *n > 0);
            match key.as_ref() {
                "page" => p.page = number.ok_or("Invalid page")?,
                "limit" => p.limit = number.ok_or("Invalid limit")?.min(MAX_BATCH),
                // An empty `query=` filters nothing.
                "query" if !value.is_empty() => p.query = Some(value.into_owned()),
                "with" => p.with = value.split(',').map(|w| w.trim().to_owned()).collect(),
                "filter[destination]" => p.destination = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(p)
    }

    fn matches(&self, haystacks: &[&str]) -> bool {
        let query = self.query.as_deref().unwrap_or_default().to_lowercase();
        haystacks.iter().any(|h| h.to_lowercase().contains(&query))
    }
}

/// One page of a HAL list; a full page always links `next`, even when nothing follows.
fn page_of(base: &str, entity: &str, rows: Vec<Value>, p: &ListParams) -> HttpResponse {
    let start = (p.page - 1).saturating_mul(p.limit);
    if start >= rows.len() {
        return HttpResponse::NoContent().finish();
    }
    let rows: Vec<Value> = rows.into_iter().skip(start).take(p.limit).collect();
    let href = |page: usize| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("page", &page.to_string());
        q.append_pair("limit", &p.limit.to_string());
        if let Some(query) = &p.query {
            q.append_pair("query", query);
        }
        if !p.with.is_empty() {
            q.append_pair("with", &p.with.join(","));
        }
        json!({"href": format!("{base}/api/v4/{entity}?{}", q.finish())})
    };
    let mut links = json!({"self": href(p.page)});
    if rows.len() == p.limit {
        links["next"] = href(p.page + 1);
    }
    hal(json!({"_page": p.page, "_links": links, "_embedded": {entity: rows}}))
}

fn contact_json(base: &str, c: &Contact) -> Value {
    let mut fields = Vec::new();
    if !c.phones.is_empty() {
        let value = |(v, e): &(String, usize)| json!({"value": v, "enum_id": PHONE_ENUMS[*e].1, "enum_code": PHONE_ENUMS[*e].0});
        let values: Vec<Value> = c.phones.iter().map(value).collect();
        fields.push(json!({"field_id": PHONE_FIELD_ID, "field_name": "Телефон",
            "field_code": "PHONE", "field_type": "multitext", "values": values}));
    }
    if let Some(note) = &c.note {
        fields.push(
            json!({"field_id": NOTE_FIELD_ID, "field_name": "Код оплаты",
            "field_code": null, "field_type": "text", "values": [{"value": note}]}),
        );
    }
    let fields = Some(Value::Array(fields)).filter(|f| f != &json!([]));
    json!({"id": c.id, "name": c.name, "responsible_user_id": 0, "created_at": c.created_at,
        "updated_at": c.created_at, "account_id": ACCOUNT_ID, "custom_fields_values": fields,
        "_links": {"self": {"href": format!("{base}/api/v4/contacts/{}", c.id)}},
        "_embedded": {"tags": [], "companies": []}})
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
    let rows = s.contacts.iter().filter(hit);
    let rows = rows.map(|c| contact_json(&s.base_url, c)).collect();
    page_of(&s.base_url, "contacts", rows, p)
}

fn list_leads(s: &State, p: &ListParams) -> HttpResponse {
    let with_contacts = p.with.iter().any(|w| w == "contacts");
    let base = &s.base_url;
    let lead_json = |(l, created_at): &(FakeLead, i64)| {
        let mut embedded = json!({"tags": [], "companies": []});
        if with_contacts {
            let link = |(i, id): (usize, &i64)| {
                json!({"id": id, "is_main": i == 0,
                "_links": {"self": {"href": format!("{base}/api/v4/contacts/{id}")}}})
            };
            embedded["contacts"] = l.contact_ids.iter().enumerate().map(link).collect();
        }
        json!({"id": l.id, "name": l.name, "price": l.price, "responsible_user_id": 0,
            "status_id": l.status_id, "pipeline_id": l.pipeline_id, "created_at": created_at,
            "updated_at": created_at, "account_id": ACCOUNT_ID, "_embedded": embedded,
            "_links": {"self": {"href": format!("{base}/api/v4/leads/{}", l.id)}}})
    };
    let rows = s.leads.iter().filter(|(l, _)| p.matches(&[&l.name]));
    page_of(base, "leads", rows.map(lead_json).collect(), p)
}

/// A create batch: a non-empty JSON array of at most 250 items, created only when
/// every item is valid; `request_id` is echoed, or the item's index when absent.
fn create<T>(
    s: &mut State,
    body: &[u8],
    entity: &str,
    parse: fn(&State, &Value, &mut Vec<Value>) -> T,
    insert: fn(&mut State, T) -> i64,
) -> HttpResponse {
    let items = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if items.len() > MAX_BATCH => {
            return problem(400, "Too many entities in request, max 250")
        }
        Ok(Value::Array(items)) if !items.is_empty() => items,
        Ok(_) => return problem(400, "Request body must be a non-empty array"),
        Err(_) => return problem(400, "Request body is not valid JSON"),
    };
    let (mut valid, mut failed) = (Vec::new(), Vec::new());
    for (i, item) in items.iter().enumerate() {
        let request_id = match &item["request_id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => i.to_string(),
        };
        let mut errors = Vec::new();
        let parsed = parse(s, item, &mut errors);
        if errors.is_empty() {
            valid.push((request_id, parsed));
        } else {
            failed.push(json!({"request_id": request_id, "errors": errors}));
        }
    }
    if !failed.is_empty() {
        return validation_failed(failed);
    }
    let base = s.base_url.clone();
    let mut created = Vec::new();
    for (request_id, item) in valid {
        let id = insert(s, item);
        created.push(json!({"id": id, "request_id": request_id,
            "_links": {"self": {"href": format!("{base}/api/v4/{entity}/{id}")}}}));
    }
    let self_link = json!({"self": {"href": format!("{base}/api/v4/{entity}")}});
    hal(json!({"_links": self_link, "_embedded": {entity: created}}))
}

fn required_name(item: &Value, errors: &mut Vec<Value>) -> String {
    let blank = "This value should not be blank.";
    match &item["name"] {
        Value::String(name) => return name.clone(),
        Value::Null => push_error(errors, "NotBlank", "name".into(), blank),
        _ => bad_type(errors, "name".into(), "string"),
    }
    String::new()
}

fn parse_contact(_: &State, item: &Value, errors: &mut Vec<Value>) -> Contact {
    let mut contact = Contact {
        name: required_name(item, errors),
        ..Contact::default()
    };
    let fields = match &item["custom_fields_values"] {
        Value::Null => &[][..],
        Value::Array(fields) => fields.as_slice(),
        _ => {
            bad_type(errors, "custom_fields_values".into(), "array");
            &[][..]
        }
    };
    for (j, field) in fields.iter().enumerate() {
        let at = format!("custom_fields_values.{j}");
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
        let Some(values) = field["values"].as_array() else {
            bad_type(errors, format!("{at}.values"), "array");
            continue;
        };
        for (k, v) in values.iter().enumerate() {
            let value = match &v["value"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    bad_type(errors, format!("{at}.values.{k}.value"), "string");
                    continue;
                }
            };
            if !is_phone {
                contact.note = Some(value);
                continue;
            }
            let given = |key: &str| Some(&v[key]).filter(|c| !c.is_null());
            let by_code = given("enum_code").map(|c| PHONE_ENUMS.iter().position(|e| c == e.0));
            let by_id = given("enum_id").map(|c| PHONE_ENUMS.iter().position(|e| c == e.1));
            let (bad_key, found) = match (by_code, by_id) {
                (Some(found), _) => ("enum_code", found),
                (None, Some(found)) => ("enum_id", found),
                (None, None) => ("", Some(0)),
            };
            match found {
                Some(e) => contact.phones.push((value, e)),
                None => {
                    let path = format!("{at}.values.{k}.{bad_key}");
                    not_choice(errors, path);
                }
            }
        }
    }
    contact
}

fn optional_int(item: &Value, key: &str, errors: &mut Vec<Value>) -> Option<i64> {
    let int = Some(&item[key]).filter(|v| !v.is_null())?.as_i64();
    if int.is_none() {
        bad_type(errors, key.to_owned(), "int");
    }
    int
}

fn parse_lead(s: &State, item: &Value, errors: &mut Vec<Value>) -> FakeLead {
    let mut contact_ids = Vec::new();
    match item.pointer("/_embedded/contacts") {
        None | Some(Value::Null) => {}
        Some(Value::Array(links)) => {
            for (j, link) in links.iter().enumerate() {
                let (id, main) = (link["id"].as_i64(), link["is_main"] == true);
                match id.filter(|id| s.contacts.iter().any(|c| c.id == *id)) {
                    // The main contact goes first, as `FakeLead::contact_ids` promises.
                    Some(id) if main => contact_ids.insert(0, id),
                    Some(id) => contact_ids.push(id),
                    None => {
                        let path = format!("_embedded.contacts.{j}.id");
                        not_choice(errors, path);
                    }
                }
            }
        }
        Some(_) => bad_type(errors, "_embedded.contacts".into(), "array"),
    }
    FakeLead {
        id: 0,
        name: required_name(item, errors),
        price: optional_int(item, "price", errors),
        status_id: optional_int(item, "status_id", errors).unwrap_or(DEFAULT_STATUS_ID),
        pipeline_id: optional_int(item, "pipeline_id", errors).unwrap_or(DEFAULT_PIPELINE_ID),
        contact_ids,
    }
}

fn webhook_json(w: &Webhook) -> Value {
    json!({"id": w.id, "destination": w.destination, "created_at": w.created_at,
        "updated_at": w.updated_at, "account_id": ACCOUNT_ID, "created_by": 0, "sort": 1,
        "disabled": false, "settings": w.settings})
}

fn list_webhooks(s: &State, p: &ListParams) -> HttpResponse {
    let wanted = |w: &&Webhook| p.destination.as_ref().is_none_or(|d| *d == w.destination);
    let rows: Vec<Value> = s.webhooks.iter().filter(wanted).map(webhook_json).collect();
    if rows.is_empty() {
        return HttpResponse::NoContent().finish();
    }
    hal(json!({"_total_items": rows.len(), "_embedded": {"webhooks": rows}}))
}

/// Re-posting a known destination replaces its settings (what AmoCRM does here is not documented).
fn add_webhook(s: &mut State, body: &[u8]) -> HttpResponse {
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
    if let Some(w) = s.webhooks.iter_mut().find(|w| w.destination == destination) {
        (w.settings, w.updated_at) = (settings, now);
        return hal(webhook_json(w));
    }
    if s.webhooks.len() >= MAX_WEBHOOKS {
        return problem(400, "Webhooks limit exceeded");
    }
    s.webhook_seq += 1;
    let id = 800_000 + s.webhook_seq;
    let hook = Webhook {
        id,
        destination,
        settings,
        created_at: now,
        updated_at: now,
    };
    let resp = hal(webhook_json(&hook));
    s.webhooks.push(hook);
    resp
}

/// Unknown destinations get 204 too: unsubscribing is idempotent here (AmoCRM does not document this case).
fn delete_webhook(s: &mut State, body: &[u8]) -> HttpResponse {
    let hook = serde_json::from_slice::<Value>(body).unwrap_or_default();
    let Some(destination) = hook["destination"].as_str() else {
        return problem(400, "Request body must carry a destination");
    };
    s.webhooks.retain(|w| w.destination != destination);
    HttpResponse::NoContent().finish()
}
