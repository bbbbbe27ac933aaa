//! The `amosync-fake-amocrm` binary: starts from flags, serves seeded contacts, logs each
//! request, and exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

type Lines = tokio::sync::mpsc::UnboundedReceiver<String>;

/// The binary on a free port with `--long-lived-token op-token` and `args`; its
/// stdout lines, and (once its banner is out) its base URL.
fn start_binary(
    args: &[&str],
) -> (
    std::process::Child,
    Lines,
    impl std::future::Future<Output = String>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_amosync-fake-amocrm"))
        .args(["--port", "0", "--long-lived-token", "op-token"])
        .args(args)
        .env_clear()
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
    let (banner_tx, banner_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines_in = BufReader::new(stdout).lines().map_while(Result::ok);
        let _ = banner_tx.send(lines_in.next().unwrap_or_default());
        for line in lines_in {
            let _ = tx.send(line);
        }
    });
    let base = async move {
        let banner = tokio::time::timeout(Duration::from_secs(10), banner_rx)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        banner
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {banner:?}"))
            .to_owned()
    };
    (child, lines, base)
}

#[tokio::test]
async fn the_binary_serves_seeded_contacts_and_exits_cleanly_on_sigterm() {
    let (mut child, mut lines, base) = start_binary(&["--seed-contacts", "3"]);
    let base = base.await;

    let page = json_of(get_as(&format!("{base}/api/v4/contacts"), "op-token").await).await;
    let names: Vec<&str> = page["_embedded"]["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["Иван Петров", "Мария Петрова", "Алексей Петров"]
    );
    let stranger = get_as(&format!("{base}/api/v4/contacts"), FakeAmo::TOKEN).await;
    assert_eq!(
        stranger.status(),
        StatusCode::UNAUTHORIZED,
        "only the given token"
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("run kill").success());
    let exit = tokio::task::spawn_blocking(move || child.wait());
    let exit = tokio::time::timeout(Duration::from_secs(10), exit).await;
    let status = exit
        .expect("exits within 10 s")
        .expect("join")
        .expect("wait");
    assert!(status.success(), "{status}");
    let mut log = Vec::new();
    while let Some(line) = lines.recv().await {
        log.push(line);
    }
    assert!(
        log.contains(&"GET /api/v4/contacts 200".to_owned()),
        "{log:?}"
    );
    assert!(
        log.contains(&"GET /api/v4/contacts 401".to_owned()),
        "{log:?}"
    );
}

/// The binary, killed when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_logs_webhook_attempts_without_the_destinations_secret() {
    const SECRET: &str = "fake-log-secret-0123456789abcdefghij";
    let (child, mut lines, base) = start_binary(&["--webhook-retry-delays-ms", "10"]);
    let _running = Running(child);
    let base = base.await;
    let client = reqwest::Client::new();
    // Nothing listens on port 9: every attempt fails and is logged.
    let destination = format!("http://127.0.0.1:9/webhooks/amocrm/{SECRET}?token={SECRET}");
    let subscribed = client
        .post(format!("{base}/api/v4/webhooks"))
        .bearer_auth("op-token")
        .json(&serde_json::json!({"destination": destination, "settings": ["add_contact"]}))
        .send()
        .await
        .expect("subscribe");
    assert!(subscribed.status().is_success(), "{}", subscribed.status());
    let created = client
        .post(format!("{base}/_fake/contacts"))
        .json(&serde_json::json!({"name": "Иван", "phones": ["+79161234567"]}))
        .send()
        .await
        .expect("create");
    assert!(created.status().is_success(), "{}", created.status());

    let mut attempt = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, lines.recv()).await {
        assert!(!line.contains(SECRET), "the secret is logged: {line}");
        if line.starts_with("webhook ") {
            attempt = Some(line);
            break;
        }
    }
    let attempt = attempt.expect("a delivery attempt is logged");
    assert!(
        attempt.contains("destination=http://127.0.0.1:9/webhooks/amocrm/***"),
        "{attempt}"
    );
}

#[test]
fn the_help_describes_the_fake() {
    let out = Command::new(env!("CARGO_BIN_EXE_amosync-fake-amocrm"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("run the fake");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let headline = stdout.lines().next().unwrap_or_default();
    assert!(headline.contains("fake AmoCRM"), "{headline:?}");
}
