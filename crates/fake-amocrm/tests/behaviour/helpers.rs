//! HTTP helpers and a tiny webhook receiver for the fake's tests.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

pub use fake_amocrm::{FakeAmo, FakeConfig, LeadPatch};
pub use reqwest::{Response, StatusCode};
pub use serde_json::{json, Value};

pub async fn get(amo: &FakeAmo, path: &str) -> Response {
    get_url(&format!("{}{path}", amo.base_url())).await
}

pub async fn get_url(url: &str) -> Response {
    get_as(url, FakeAmo::TOKEN).await
}

pub async fn get_as(url: &str, token: &str) -> Response {
    let req = reqwest::Client::new().get(url).bearer_auth(token);
    req.send().await.expect("GET the fake")
}

pub async fn send(amo: &FakeAmo, method: reqwest::Method, path: &str, body: Value) -> Response {
    let url = format!("{}{path}", amo.base_url());
    let req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(FakeAmo::TOKEN);
    req.json(&body).send().await.expect("send to the fake")
}

pub async fn post(amo: &FakeAmo, path: &str, body: Value) -> Response {
    send(amo, reqwest::Method::POST, path, body).await
}

pub async fn patch(amo: &FakeAmo, path: &str, body: Value) -> Response {
    send(amo, reqwest::Method::PATCH, path, body).await
}

pub async fn json_of(resp: Response) -> Value {
    resp.json().await.expect("a JSON body")
}

pub fn content_type(resp: &Response) -> String {
    let value = resp.headers().get(reqwest::header::CONTENT_TYPE);
    value
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub fn ids(page: &Value, entity: &str) -> Vec<i64> {
    let rows = page["_embedded"][entity].as_array().expect("embedded rows");
    rows.iter().map(|r| r["id"].as_i64().expect("id")).collect()
}

/// Subscribes `destination` through the webhooks API.
pub async fn subscribe(amo: &FakeAmo, destination: &str, settings: &[&str]) {
    let hook = json!({"destination": destination, "settings": settings});
    let resp = post(amo, "/api/v4/webhooks", hook).await;
    assert_eq!(resp.status(), StatusCode::OK, "subscribe {destination}");
}

/// A decoded form body.
pub fn form(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

pub fn field<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    let found = pairs.iter().find(|(k, _)| k == key);
    found.map(|(_, v)| v.as_str())
}

#[derive(Clone, Debug)]
pub struct Hit {
    pub content_type: String,
    pub body: String,
    pub at: Instant,
}

/// A webhook destination on loopback that records every POST and answers with a settable
/// status after a settable delay.
pub struct Receiver {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    handle: ServerHandle,
}

struct Replies {
    hits: Arc<Mutex<Vec<Hit>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
}

async fn record(req: HttpRequest, body: web::Bytes, replies: web::Data<Replies>) -> HttpResponse {
    let content_type = req.headers().get("content-type");
    let hit = Hit {
        content_type: content_type
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    let lock = replies.hits.lock();
    lock.unwrap_or_else(PoisonError::into_inner).push(hit);
    let delay = replies.delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let status = replies.status.load(Ordering::SeqCst);
    let code = actix_web::http::StatusCode::from_u16(status).expect("a valid status");
    HttpResponse::build(code).body("ok")
}

impl Receiver {
    pub async fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(status));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let replies = web::Data::new(Replies {
            hits: hits.clone(),
            status: status.clone(),
            delay_ms: delay_ms.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(replies.clone())
                .default_service(web::to(record))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen on the receiver socket")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/amo/hook?secret=s3"),
            hits,
            status,
            delay_ms,
            handle,
        }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Waits until `n` deliveries arrived; fails the test after five seconds.
    pub async fn wait_for(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} deliveries arrived",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}
