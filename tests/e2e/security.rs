//! nginx's defences with the repo's config, and the binary's memory under noise:
//! no log line holds the webhook secret, slow clients are cut off and limited,
//! invented methods stop at nginx, one request id per answer, `/metrics` only for
//! internal addresses, the TLS example works, and 11,000 invented requests leave
//! amosync's memory and series count flat.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{free_port, start_stack, start_stack_with, Stack, StackOptions, AMOSYNC, SECRET};

#[path = "../common/noise.rs"]
mod noise;

const FORM: &str = "application/x-www-form-urlencoded";
const DELIVERY: &str =
    include_str!("../fixtures/webhooks/contacts_update_with_leads_add_and_status.txt");

impl Stack {
    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// The access log's lines, parsed.
    fn access_lines(&self) -> Vec<Value> {
        self.log("nginx-access.log")
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The first access line `matches` accepts, waited for: nginx writes a
    /// request's line only after the answer has left, so a reader that looks at
    /// once can miss it.
    async fn access_line_where(&self, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.access_lines().into_iter().find(|line| matches(line)) {
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn nginx_address(&self) -> String {
        self.nginx.trim_start_matches("http://").to_owned()
    }
}

/// What amosync puts on every answer, on one that nginx made itself: exactly one
/// request id, `nosniff` and `no-store`.
fn assert_protective_headers(res: &reqwest::Response) {
    let values = |name: &str| -> Vec<String> {
        res.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    };
    assert_eq!(values("x-request-id").len(), 1, "{:?}", res.headers());
    assert_eq!(
        values("x-content-type-options"),
        ["nosniff"],
        "{:?}",
        res.headers()
    );
    assert_eq!(values("cache-control"), ["no-store"], "{:?}", res.headers());
}

async fn status(reply: reqwest::Result<reqwest::Response>) -> u16 {
    reply.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test]
async fn nginx_writes_the_webhook_secret_in_no_log_line() {
    // A low webhook rate, so that a few deliveries earn the 429 a flood would.
    let mut stack = start_stack_with(StackOptions {
        nginx: Some(|conf| {
            conf.replace("rate=5000r/s", "rate=1r/s")
                .replace("zone=webhooks burst=10000", "zone=webhooks burst=2")
        }),
        ..StackOptions::default()
    })
    .await;
    let url = format!("{}/webhooks/amocrm/{SECRET}", stack.nginx);
    let deliver = |body: String| {
        stack
            .client
            .post(&url)
            .header("content-type", FORM)
            .body(body)
            .send()
    };
    assert_eq!(status(deliver(DELIVERY.into()).await).await, 200);
    stack
        .access_line_where(|line| line["status"] == 200)
        .await
        .expect("the delivery is logged");
    let logged = stack.log("nginx-access.log");
    assert!(
        !logged.contains(SECRET),
        "a delivery's access line holds the secret:\n{logged}"
    );
    let oversized = "contacts=".to_owned() + &"x".repeat(2 * 1024 * 1024);
    assert_eq!(status(deliver(oversized).await).await, 413);
    let burst = futures::future::join_all((0..8).map(|_| deliver(DELIVERY.into()))).await;
    let mut statuses = Vec::new();
    for reply in burst {
        statuses.push(status(reply).await);
    }
    assert!(statuses.contains(&429), "no 429 in {statuses:?}");

    // amosync gone: nginx fails to reach it and answers itself.
    let _ = stack.children[AMOSYNC].kill();
    let _ = stack.children[AMOSYNC].wait();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status(deliver(DELIVERY.into()).await).await, 503);
    stack
        .access_line_where(|line| line["status"] == 503)
        .await
        .expect("the 503 is logged");

    let (access, errors) = (stack.log("nginx-access.log"), stack.log("nginx-error.log"));
    for (log, text) in [("access", &access), ("error", &errors)] {
        assert!(
            !text.contains(SECRET),
            "the {log} log holds the secret:\n{text}"
        );
    }
    let masked: Vec<u64> = stack
        .access_lines()
        .iter()
        .filter(|line| line["uri"] == "/webhooks/amocrm/***")
        .filter_map(|line| line["status"].as_u64())
        .collect();
    for wanted in [200, 413, 429, 503] {
        assert!(
            masked.contains(&wanted),
            "no {wanted} logged (masked) in {masked:?}"
        );
    }
}

#[tokio::test]
async fn invented_methods_stop_at_nginx_and_every_answer_has_one_request_id() {
    let stack = start_stack().await;
    let invented = reqwest::Method::from_bytes(b"FOOBAR").expect("method");
    let res = stack
        .client
        .request(invented, format!("{}/health", stack.nginx))
        .send()
        .await
        .expect("reply");
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers().get_all("x-request-id").iter().count(), 1);
    assert_protective_headers(&res);
    let body: Value = res.json().await.expect("problem json");
    assert_eq!(body["code"], "method_not_allowed");
    let refused = stack
        .access_line_where(|line| line["method"] == "FOOBAR")
        .await
        .expect("the request is logged");
    assert_eq!(
        refused["upstream"], "",
        "it never reached amosync: {refused}"
    );

    for (path, id) in [
        ("/health", Some("e2e-id-1")),
        ("/api/v1/contacts/424242", None),
        ("/health", Some("<script>alert(1)</script>")),
    ] {
        let mut request = stack
            .client
            .get(format!("{}{path}", stack.nginx))
            .bearer_auth(super::API_TOKEN);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        let res = request.send().await.expect("reply");
        let ids: Vec<String> = res
            .headers()
            .get_all("x-request-id")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        assert_eq!(ids.len(), 1, "{path}: {ids:?}");
        match id {
            Some("e2e-id-1") => assert_eq!(ids[0], "e2e-id-1"),
            // Made by nginx: 32 hex digits, never the client's markup.
            _ => assert!(
                ids[0].len() == 32 && ids[0].bytes().all(|b| b.is_ascii_hexdigit()),
                "{path}: {ids:?}"
            ),
        }
    }
}

/// A connection to nginx that sent `head` and nothing more; what nginx answers
/// (its first line, empty when it just closes) and when.
async fn held_connection(address: &str, head: &str, wait: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.write_all(head.as_bytes()).await.ok()?;
    let mut buffer = vec![0u8; 512];
    let read = tokio::time::timeout(wait, stream.read(&mut buffer)).await;
    match read {
        Ok(Ok(n)) => {
            let text = String::from_utf8_lossy(&buffer[..n]);
            let first = text.lines().next().unwrap_or_default().to_owned();
            Some((first, started.elapsed()))
        }
        Ok(Err(_)) => Some((String::new(), started.elapsed())),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_limited_per_address() {
    let stack = start_stack().await;
    let address = stack.nginx_address();

    // A header that never ends: the connection is closed after client_header_timeout.
    let unfinished = format!("GET /health HTTP/1.1\r\nHost: {address}\r\n");
    let cut = held_connection(&address, &unfinished, Duration::from_secs(9)).await;
    let (_, after) = cut.expect("nginx closes a connection whose header never ends");
    assert!(
        after < Duration::from_secs(7),
        "closed only after {after:?}"
    );

    // Bodies that never come, more at once than one address may have in progress.
    let head = format!(
        "POST /webhooks/amocrm/{SECRET} HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: {FORM}\r\nContent-Length: 100\r\n\r\n"
    );
    let held = (0..300).map(|_| held_connection(&address, &head, Duration::from_secs(9)));
    let answers = futures::future::join_all(held).await;
    let limited = answers
        .iter()
        .flatten()
        .filter(|(line, after)| line.contains(" 429 ") && *after < Duration::from_secs(2))
        .count();
    assert!(limited >= 40, "only {limited} of 300 got 429 at once");
    // The rest end with client_body_timeout (a 408, or the connection reset).
    let timed_out = answers
        .iter()
        .flatten()
        .filter(|(line, after)| !line.contains(" 429 ") && *after < Duration::from_secs(7))
        .count();
    assert_eq!(
        timed_out + limited,
        300,
        "some waited longer than 7 s for a body"
    );
}

#[tokio::test]
async fn metrics_through_nginx_need_an_internal_address_or_a_token() {
    // nginx believes X-Forwarded-For from the test (on loopback), so the test can
    // speak for an outside address.
    let stack = start_stack_with(StackOptions {
        nginx: Some(|conf| {
            conf.replacen(
                "http {",
                "http {\n    set_real_ip_from 127.0.0.1;\n    real_ip_header X-Forwarded-For;",
                1,
            )
        }),
        ..StackOptions::default()
    })
    .await;
    let scrape = |from: &'static str, token: Option<&'static str>| {
        let mut request = stack
            .client
            .get(format!("{}/metrics", stack.nginx))
            .header("x-forwarded-for", from);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let inside = scrape("10.1.2.3", None).await.expect("reply");
    assert_eq!(inside.status().as_u16(), 200);
    let outside = scrape("203.0.113.7", None).await.expect("reply");
    assert_eq!(outside.status().as_u16(), 403);
    assert_protective_headers(&outside);
    let body: Value = outside.json().await.expect("problem json");
    assert_eq!(body["code"], "forbidden");
    // A bearer token gets past nginx; amosync, with no METRICS_TOKEN, refuses it too.
    let guessed = scrape("203.0.113.7", Some("guessed-token-0123456789")).await;
    assert_eq!(status(guessed).await, 403);
    stack
        .access_line_where(|line| {
            line["uri"] == "/metrics" && line["status"] == 403 && line["upstream"] != ""
        })
        .await
        .expect("the token's request is logged");
    let upstreams: Vec<String> = stack
        .access_lines()
        .iter()
        .filter(|line| line["uri"] == "/metrics" && line["status"] == 403)
        .map(|line| line["upstream"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(upstreams.len(), 2, "{upstreams:?}");
    assert!(
        upstreams[0].is_empty() && !upstreams[1].is_empty(),
        "{upstreams:?}"
    );
}

/// nginx with the TLS example switched on (as its comment says), stopped on drop.
struct TlsNginx {
    conf: std::path::PathBuf,
}

impl Drop for TlsNginx {
    fn drop(&mut self) {
        super::stop_nginx(&self.conf);
    }
}

#[tokio::test]
async fn the_tls_example_serves_https_and_sends_port_80_there() {
    let stack = start_stack().await;
    let dir = stack.dir.join("tls");
    std::fs::create_dir_all(&dir).expect("tls dir");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl on PATH, to make a test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (http_port, https_port) = (free_port(), free_port());
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/nginx/nginx.conf"))
            .expect("nginx.conf");
    // What the comment tells an operator to run: sed -e '/#plain$/d' -e 's/#tls //'.
    let switched: String = template
        .lines()
        .filter(|line| !line.ends_with("#plain"))
        .map(|line| line.replacen("#tls ", "", 1) + "\n")
        .collect();
    let app = stack.app.trim_start_matches("http://");
    let conf = switched
        .replace("server amosync:3000", &format!("server {app}"))
        .replace(
            "listen 443 ssl;",
            &format!("listen 127.0.0.1:{https_port} ssl;"),
        )
        .replace("listen 80;", &format!("listen 127.0.0.1:{http_port};"))
        .replace(
            "/etc/nginx/certs/fullchain.pem",
            &dir.join("cert.pem").display().to_string(),
        )
        .replace(
            "/etc/nginx/certs/privkey.pem",
            &dir.join("key.pem").display().to_string(),
        )
        .replace(
            "pid /tmp/nginx.pid;",
            &format!("pid {}/nginx.pid;", dir.display()),
        )
        .replace("/tmp/nginx-", &format!("{}/nginx-", dir.display()))
        .replace("/dev/stdout", &dir.join("access.log").display().to_string())
        .replace("/dev/stderr", &dir.join("error.log").display().to_string());
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write the TLS config");
    let started = Command::new("nginx")
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .status()
        .expect("nginx on PATH");
    assert!(
        started.success(),
        "{}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    let _nginx = TlsNginx { conf: conf_path };

    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = plain
        .post(format!("http://127.0.0.1:{http_port}/api/v1/contacts?x=1"))
        .send()
        .await
        .expect("port 80 answers");
    assert_eq!(res.status().as_u16(), 308, "the method and body are kept");
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(location, "https://127.0.0.1/api/v1/contacts?x=1");

    let tls = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let res = tls
        .get(format!("https://127.0.0.1:{https_port}/health"))
        .send()
        .await
        .expect("HTTPS answers");
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers().contains_key("strict-transport-security"));
}

/// Resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn invented_methods_and_paths_leave_the_service_memory_flat() {
    let stack = start_stack().await;
    let pid = stack.children[AMOSYNC].id();
    let metrics = || async {
        let res = stack
            .client
            .get(format!("{}/metrics", stack.app))
            .send()
            .await;
        res.expect("metrics").text().await.expect("text")
    };
    let mut rng = fastrand::Rng::with_seed(2222);
    noise::random_requests(&stack.client, &stack.app, 1_000, &mut rng).await;
    let (rss_before, series_before) = (rss_kib(pid), noise::http_series(&metrics().await));
    noise::random_requests(&stack.client, &stack.app, 10_000, &mut rng).await;
    let text = metrics().await;
    let (rss_after, series_after) = (rss_kib(pid), noise::http_series(&text));
    eprintln!(
        "after 1,000 / 11,000 invented requests: RSS {rss_before} / {rss_after} KiB, \
         {series_before} / {series_after} request series, /metrics {} bytes",
        text.len()
    );
    assert!(rss_before > 0, "no RSS read for pid {pid}");
    assert!(series_after <= 40, "{series_after} series:\n{text}");
    assert!(
        series_after <= series_before + 3,
        "{series_before} -> {series_after}"
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
