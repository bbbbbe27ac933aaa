//! The `amosync-fake-amocrm` binary: starts from flags, serves seeded contacts, logs each
//! request, and exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn the_binary_serves_seeded_contacts_and_exits_cleanly_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_amosync-fake-amocrm"))
        .args(["--port", "0", "--seed-contacts", "3"])
        .args(["--long-lived-token", "op-token"])
        .env_clear()
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next_line = tokio::time::timeout(Duration::from_secs(10), lines.recv());
    let banner = next_line.await.ok().flatten().unwrap_or_default();
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_owned();

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
