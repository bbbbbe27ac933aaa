//! End to end: the real `amosync` binary behind the repo's nginx config, talking to
//! the `amosync-fake-amocrm` binary, on a fresh database (see `tests/support`). Needs
//! `nginx` on PATH. `security` holds the checks of nginx's own defences (logs, limits,
//! methods, TLS) and of the binary's memory.

#[path = "e2e/security.rs"]
mod security;
#[path = "support/mod.rs"]
mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const API_TOKEN: &str = "e2e-client-token-0123456789";
const SECRET: &str = "e2e-webhook-secret-0123456789abcdef";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Child processes and the database of one stack, torn down on drop.
struct Stack {
    children: Vec<Child>,
    /// Dropped after `Drop::drop` has stopped the processes using it.
    _db: support::TestDb,
    dir: PathBuf,
    nginx_conf: PathBuf,
    nginx: String,
    /// amosync itself, not through nginx.
    app: String,
    fake: String,
    client: reqwest::Client,
}

/// Index of amosync in `Stack::children`.
const AMOSYNC: usize = 1;

/// What a test changes in a stack: amosync's environment and nginx's config.
#[derive(Default)]
struct StackOptions {
    env: Vec<(&'static str, String)>,
    nginx: Option<fn(String) -> String>,
}

/// Stops the nginx started with `conf`.
fn stop_nginx(conf: &std::path::Path) {
    let _ = Command::new("nginx")
        .arg("-c")
        .arg(conf)
        .args(["-s", "stop"])
        .status();
}

impl Drop for Stack {
    fn drop(&mut self) {
        stop_nginx(&self.nginx_conf);
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn wait_until_up(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(url).send().await {
            if res.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_file(dir: &std::path::Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(name))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

async fn start_stack() -> Stack {
    start_stack_with(StackOptions::default()).await
}

async fn start_stack_with(options: StackOptions) -> Stack {
    support::require_program(
        "nginx",
        "the end-to-end tests run the real binaries behind the repo's nginx config",
        "apt-get install nginx-light on Debian/Ubuntu, brew install nginx on macOS",
    );
    let db = support::TestDb::create_named("amosync_e2e").await;
    let dir = std::env::temp_dir().join(db.name());
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (fake_port, app_port, nginx_port) = (free_port(), free_port(), free_port());
    let mut children = Vec::new();

    children.push(
        Command::new(support::fake_amocrm_binary())
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &fake_port.to_string(),
                "--rps-limit",
                "0",
            ])
            .stdout(log_file(&dir, "fake.log"))
            .stderr(log_file(&dir, "fake.err"))
            .spawn()
            .expect("start the fake AmoCRM"),
    );
    children.push(
        Command::new(env!("CARGO_BIN_EXE_amosync"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", db.url())
            .env("AMO_BASE_URL", format!("http://127.0.0.1:{fake_port}"))
            .env("AMO_ACCESS_TOKEN", "fake-amo-access-token")
            .env("API_TOKENS", format!("e2e:write+read+admin:{API_TOKEN}"))
            .env("WEBHOOK_SECRET", SECRET)
            .env("SERVER_URL", format!("http://127.0.0.1:{nginx_port}"))
            .env("BIND_ADDR", "127.0.0.1")
            .env("PORT", app_port.to_string())
            .env("LOG_LEVEL", "info")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdout(log_file(&dir, "amosync.log"))
            .stderr(log_file(&dir, "amosync.err"))
            .spawn()
            .expect("start amosync"),
    );

    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/nginx/nginx.conf"))
            .expect("nginx.conf");
    let conf = template
        .replace(
            "server amosync:3000",
            &format!("server 127.0.0.1:{app_port}"),
        )
        .replace("listen 80;", &format!("listen 127.0.0.1:{nginx_port};"))
        .replace(
            "pid /tmp/nginx.pid;",
            &format!("pid {}/nginx.pid;", dir.display()),
        )
        .replace("/tmp/nginx-", &format!("{}/nginx-", dir.display()))
        .replace(
            "/dev/stdout",
            &format!("{}/nginx-access.log", dir.display()),
        )
        .replace("/dev/stderr", &format!("{}/nginx-error.log", dir.display()));
    let conf = match options.nginx {
        Some(tweak) => tweak(conf),
        None => conf,
    };
    let nginx_conf = dir.join("nginx.conf");
    std::fs::write(&nginx_conf, conf).expect("write nginx.conf");

    let client = reqwest::Client::new();
    let stack = Stack {
        children,
        dir: dir.clone(),
        nginx_conf: nginx_conf.clone(),
        _db: db,
        nginx: format!("http://127.0.0.1:{nginx_port}"),
        app: format!("http://127.0.0.1:{app_port}"),
        fake: format!("http://127.0.0.1:{fake_port}"),
        client,
    };
    wait_until_up(
        &stack.client,
        &format!("http://127.0.0.1:{app_port}/health"),
    )
    .await;
    let status = Command::new("nginx")
        .arg("-c")
        .arg(&nginx_conf)
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .status()
        .expect("nginx on PATH");
    assert!(status.success(), "nginx failed to start");
    wait_until_up(&stack.client, &format!("{}/health", stack.nginx)).await;
    stack
}

impl Stack {
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.nginx))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("nginx answers");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn fake(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.client.request(method, format!("{}{path}", self.fake));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("fake answers");
        assert!(res.status().is_success(), "fake {path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    /// Polls `GET path` (with `?include_deleted=true` when asked) until `check` holds.
    async fn eventually(&self, path: &str, check: impl Fn(u16, &Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = self.api(reqwest::Method::GET, path, None).await;
            if check(status, &body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never matched; last {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn the_full_loop_through_nginx_and_the_fake_amocrm() {
    let stack = start_stack().await;
    use reqwest::Method;

    let (status, hook) = stack
        .api(Method::POST, "/api/v1/amocrm/webhooks", None)
        .await;
    assert_eq!(status, 201, "{hook}");

    let (status, contact) = stack
        .api(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"name": "Иван", "phone": "8 916 123-45-67"})),
        )
        .await;
    assert_eq!(status, 201, "{contact}");
    let id = contact["id"].as_i64().expect("id");
    let amocrm_id = contact["amocrm_id"].as_i64().expect("amocrm id");
    let state = stack.fake(Method::GET, "/_fake/state", None).await;
    assert!(
        state.to_string().contains("+79161234567"),
        "the fake holds the contact: {state}"
    );

    // AmoCRM's echo of our own create arrives (through nginx) and changes nothing.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = stack.fake(Method::GET, "/_fake/state", None).await;
        let delivered = state["counters"]["deliveries"].as_u64().unwrap_or(0);
        let failed = state["counters"]["failed_deliveries"].as_u64().unwrap_or(0);
        if delivered > failed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no webhook reached amosync: {}",
            state["counters"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack
        .eventually(&format!("/api/v1/contacts/{id}"), |s, b| {
            s == 200 && b["amocrm_id"] == amocrm_id
        })
        .await;
    let (_, listed) = stack.api(Method::GET, "/api/v1/contacts", None).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));

    // A manager renames the contact in AmoCRM: the mirror follows.
    stack
        .fake(
            Method::PATCH,
            &format!("/_fake/contacts/{amocrm_id}"),
            Some(json!({"name": "Иван Петрович"})),
        )
        .await;
    stack
        .eventually(&format!("/api/v1/contacts/{id}"), |_, b| {
            b["name"] == "Иван Петрович"
        })
        .await;

    let (status, lead) = stack
        .api(
            Method::POST,
            "/api/v1/leads",
            Some(json!({"name": "Заказ", "price": 900, "contact_id": id})),
        )
        .await;
    assert_eq!(status, 201, "{lead}");

    // Deleted in AmoCRM: hidden, but still there when asked for.
    stack
        .fake(
            Method::DELETE,
            &format!("/_fake/contacts/{amocrm_id}"),
            None,
        )
        .await;
    stack
        .eventually(&format!("/api/v1/contacts/{id}"), |s, _| s == 404)
        .await;
    let shown = stack
        .eventually(
            &format!("/api/v1/contacts/{id}?include_deleted=true"),
            |s, _| s == 200,
        )
        .await;
    assert!(shown["deleted_at"].is_string());

    // The earlier Node service's routes, through nginx.
    let legacy = json!({"name": "Пётр", "phone": "+79165554433"});
    let (status, created) = stack
        .api(Method::POST, "/contacts/create", Some(legacy.clone()))
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, conflict) = stack
        .api(Method::POST, "/contacts/create", Some(legacy))
        .await;
    assert_eq!((status, &conflict["id"]), (409, &created["id"]));
}

#[tokio::test]
async fn nginx_limits_answer_413_and_429_as_problems_and_keep_request_ids() {
    let stack = start_stack().await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let res = stack
        .client
        .post(format!("{}/api/v1/contacts", stack.nginx))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("reply");
    assert_eq!(res.status().as_u16(), 413);
    let body: Value = res.json().await.expect("problem json");
    assert_eq!(body["code"], "payload_too_large");

    let res = stack
        .client
        .get(format!("{}/health", stack.nginx))
        .header("x-request-id", "e2e-req-1")
        .send()
        .await
        .expect("reply");
    assert_eq!(
        res.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("e2e-req-1")
    );

    let requests = (0..120).map(|_| {
        stack
            .client
            .get(format!("{}/api/v1/contacts/1", stack.nginx))
            .bearer_auth(API_TOKEN)
            .send()
    });
    let replies = futures::future::join_all(requests).await;
    let limited: Vec<_> = replies
        .into_iter()
        .flatten()
        .filter(|r| r.status().as_u16() == 429)
        .collect();
    assert!(
        !limited.is_empty(),
        "a burst over the API zone's limit gets 429"
    );
    let content_type = limited[0]
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(content_type, "application/problem+json");
}
