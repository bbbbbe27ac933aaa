//! `TestApp::builder()` (and `spawn_app()`, its defaults): a fresh database (see
//! `tests/support`), the fake AmoCRM and the real application.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use amosync::amo::{AmoClientConfig, HttpAmoTransport};
use amosync::repositories::Db;
use amosync::settings::Settings;
use amosync::startup::Application;
use serde_json::Value;

use crate::fake_amo::FakeAmo;

pub const API_TOKEN: &str = "test-client-token-0123456789";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789abcdef";
/// The account the webhook fixtures come from.
pub const AMO_ACCOUNT_ID: &str = "29000001";

pub use crate::support::TestDb;

pub struct TestApp {
    pub address: String,
    pub shutdown: Option<amosync::startup::ShutdownTrigger>,
    pub db: TestDb,
    pub amo: FakeAmo,
    pub client: reqwest::Client,
}

fn base_env(db: &TestDb, amo: &FakeAmo) -> HashMap<String, String> {
    [
        ("DATABASE_URL", db.url()),
        ("AMO_BASE_URL", amo.base_url()),
        ("AMO_ACCESS_TOKEN", FakeAmo::TOKEN.to_owned()),
        ("API_TOKENS", format!("tests:write+read+admin:{API_TOKEN}")),
        ("BIND_ADDR", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("HTTP_WORKERS", "2".to_owned()),
        ("DB_POOL_SIZE", "8".to_owned()),
        ("AMO_TIMEOUT_SECS", "2".to_owned()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("SERVER_URL", "http://127.0.0.1:9".to_owned()),
        ("AMO_ACCOUNT_ID", AMO_ACCOUNT_ID.to_owned()),
        ("SYNC_RETRY_BASE_MS", "50".to_owned()),
        ("AMO_ACCESS_PROBE_SECS", "1".to_owned()),
        // Off unless a test is about it: it would add AmoCRM calls to every test.
        ("RECONCILE_INTERVAL_SECS", "0".to_owned()),
        // Likewise: off unless a test is about the catalogue.
        ("CATALOGUE_REFRESH_SECS", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn settings_from(env: HashMap<String, String>) -> Settings {
    Settings::from_lookup(|name| env.get(name).cloned()).expect("test settings")
}

fn logger() -> slog::Logger {
    if std::env::var_os("TEST_LOG").is_some() {
        amosync::telemetry::init(slog::Level::Debug).0
    } else {
        slog::Logger::root(slog::Discard, slog::o!())
    }
}

/// The app with the defaults: a fresh database, a fresh fake AmoCRM, `base_env`.
pub async fn spawn_app() -> TestApp {
    TestApp::builder().spawn().await
}

type Tweak<'a> = Box<dyn FnOnce(&mut HashMap<String, String>) + 'a>;

/// How a test's app starts; what is not said is `spawn_app`'s default.
#[derive(Default)]
pub struct TestAppBuilder<'a> {
    tweaks: Vec<Tweak<'a>>,
    db: Option<TestDb>,
    amo: Option<FakeAmo>,
    logger: Option<slog::Logger>,
    database_down: bool,
}

impl TestApp {
    pub fn builder<'a>() -> TestAppBuilder<'a> {
        TestAppBuilder::default()
    }
}

impl<'a> TestAppBuilder<'a> {
    /// Environment overrides, applied to `base_env` before start-up.
    pub fn env(mut self, tweak: impl FnOnce(&mut HashMap<String, String>) + 'a) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// A database the test has already prepared.
    pub fn on(mut self, db: TestDb) -> Self {
        self.db = Some(db);
        self
    }

    /// A fake AmoCRM the test configured itself.
    pub fn against(mut self, amo: FakeAmo) -> Self {
        self.amo = Some(amo);
        self
    }

    /// Logs through `logger` (to inspect what is logged).
    pub fn logging_to(mut self, logger: slog::Logger) -> Self {
        self.logger = Some(logger);
        self
    }

    /// Wired to a database server that does not answer (port 1 on loopback); the
    /// test's own database still exists, untouched.
    pub fn without_database(mut self) -> Self {
        self.database_down = true;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let amo = match self.amo {
            Some(amo) => amo,
            None => FakeAmo::start().await,
        };
        let db = match self.db {
            Some(db) => db,
            None => TestDb::create().await,
        };
        let mut env = base_env(&db, &amo);
        for tweak in self.tweaks {
            tweak(&mut env);
        }
        let settings = settings_from(env);
        let logger = self.logger.unwrap_or_else(logger);
        let app = if self.database_down {
            let amo_transport = Arc::new(transport(&settings));
            Application::build_with(settings, logger, dead_database(), amo_transport)
                .expect("build app")
        } else {
            Application::build(settings, logger)
                .await
                .expect("build app")
        };
        finish_spawn(app, db, amo)
    }
}

fn dead_database() -> Db {
    Db::new(
        "mysql://root@127.0.0.1:1/none",
        2,
        Duration::from_millis(500),
    )
}

/// A transport to the fake AmoCRM with short timeouts and no rate limit.
fn transport(settings: &Settings) -> HttpAmoTransport {
    HttpAmoTransport::new(AmoClientConfig {
        base_url: settings.amo.base_url.clone(),
        access_token: FakeAmo::TOKEN.to_owned(),
        region: settings.default_phone_region,
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        max_rps: 0,
        access_probe: Duration::from_secs(1),
    })
    .expect("transport")
}

fn finish_spawn(app: Application, db: TestDb, amo: FakeAmo) -> TestApp {
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = Some(app.shutdown_trigger());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        shutdown,
        db,
        amo,
        client: reqwest::Client::new(),
    }
}

/// A response reduced to what the tests look at.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub location: Option<String>,
    pub body: Value,
}

impl TestApp {
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(API_TOKEN)
                .json(body),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path)).bearer_auth(API_TOKEN))
            .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let res = request.send().await.expect("request reaches the app");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = res.status().as_u16();
        let content_type = header("content-type").unwrap_or_default();
        let location = header("location");
        let bytes = res.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            location,
            body,
        }
    }

    /// Posts a webhook delivery to `/webhooks/amocrm/{secret}` as AmoCRM would.
    pub async fn deliver(
        &self,
        secret: &str,
        content_type: &str,
        body: impl Into<String>,
    ) -> Reply {
        let url = self.url(&format!("/webhooks/amocrm/{secret}"));
        self.send(
            self.client
                .post(url)
                .header("content-type", content_type)
                .body(body.into()),
        )
        .await
    }

    /// Waits (up to 10 s) until `sql` (a `SELECT ... AS n`) returns `want`.
    pub async fn wait_for(&self, sql: &str, want: i64) {
        self.wait_for_within(sql, want, Duration::from_secs(30))
            .await
    }

    pub async fn wait_for_within(&self, sql: &str, want: i64, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let got = self.db.query_i64(sql);
            if got == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{sql} stayed {got}, expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls `GET path` until `check` holds (10 s at most); returns the last body.
    pub async fn eventually(&self, path: &str, check: impl Fn(&Reply) -> bool) -> Reply {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reply = self.get(path).await;
            if check(&reply) {
                return reply;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} never matched: {} {}",
                reply.status,
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many different phone values AmoCRM's contacts hold.
    pub fn distinct_amo_phones(&self) -> usize {
        let mut phones: Vec<_> = self
            .amo
            .contacts()
            .into_iter()
            .flat_map(|c| c.phones)
            .collect();
        phones.sort();
        phones.dedup();
        phones.len()
    }

    /// Runs the `amosync` binary (e.g. `sync --full`) against this app's database and
    /// fake AmoCRM, as an operator would next to the running service.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_with(args, &[])
    }

    /// `cli` with more variables set (or the defaults replaced).
    pub fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_amosync"))
            .args(args)
            .env_clear()
            .env("DATABASE_URL", self.db.url())
            .env("AMO_BASE_URL", self.amo.base_url())
            .env("AMO_ACCESS_TOKEN", FakeAmo::TOKEN)
            .env("API_TOKENS", "cli:cli-token-0123456789abcdef")
            .env("LOG_LEVEL", "error")
            .envs(env.iter().copied())
            .output()
            .expect("run amosync")
    }

    /// Another integration's webhook, registered in the fake AmoCRM as that
    /// integration would (its own key in the destination).
    pub async fn register_foreign_hook(&self, destination: &str) {
        let res = self
            .client
            .post(format!("{}/api/v4/webhooks", self.amo.base_url()))
            .bearer_auth(FakeAmo::TOKEN)
            .json(&serde_json::json!({"destination": destination, "settings": ["add_contact"]}))
            .send()
            .await
            .expect("the fake answers");
        assert!(res.status().is_success(), "{}", res.status());
    }

    pub fn count(&self, table: &str) -> i64 {
        self.db
            .query_i64(&format!("SELECT COUNT(*) AS n FROM {table}"))
    }

    pub fn count_where(&self, table: &str, condition: &str) -> i64 {
        self.db.query_i64(&format!(
            "SELECT COUNT(*) AS n FROM {table} WHERE {condition}"
        ))
    }

    /// The body of an unauthenticated `GET` as text (`/metrics`).
    pub async fn get_text(&self, path: &str) -> String {
        let res = self.client.get(self.url(path)).send().await.expect("GET");
        res.text().await.expect("text body")
    }
}

impl Reply {
    /// Asserts a problem+json error and returns its `code`.
    pub fn problem_code(&self) -> String {
        assert!(
            self.content_type.starts_with("application/problem+json"),
            "expected problem+json, got {} {}",
            self.content_type,
            self.body
        );
        self.body["code"].as_str().unwrap_or_default().to_owned()
    }

    /// The `field` names listed by a 422.
    pub fn wrong_fields(&self) -> Vec<String> {
        assert_eq!(self.status, 422, "{}", self.body);
        self.body["errors"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Collects every JSON line an app's logger writes, for tests that read the logs.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    pub fn logger(&self) -> slog::Logger {
        amosync::telemetry::json_logger(self.clone(), slog::Level::Trace)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

/// The `amosync_webhook_events_ignored_total` sample of `kind` in a scrape (0 when
/// absent). The counter is process-wide and tests run alongside each other, so
/// tests compare a scrape before with one after.
pub fn ignored_events(metrics: &str, kind: &str) -> f64 {
    let series = format!("amosync_webhook_events_ignored_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}
