use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::fake_amo::{FakeAmo, FakeConfig};
use crate::helpers::{TestApp, TestDb};

const CLIENT: [(&str, &str); 3] = [
    ("AMO_CLIENT_ID", "fake-client-id"),
    ("AMO_CLIENT_SECRET", "fake-client-secret"),
    ("AMO_REDIRECT_URI", "http://localhost/oauth/callback"),
];
/// `openssl rand -base64 32`, twice.
const KEY_A: &str = "q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng=";
const KEY_B: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn fake_with_ttl(token_ttl: Duration) -> impl std::future::Future<Output = FakeAmo> {
    FakeAmo::start_with(FakeConfig {
        access_token_ttl: token_ttl,
        ..FakeConfig::default()
    })
}

/// The app in OAuth mode; `keys` are `(TOKEN_ENCRYPTION_KEY, _PREVIOUS)`.
async fn oauth_app_on(fake: FakeAmo, db: TestDb, keys: (&str, Option<&str>)) -> TestApp {
    TestApp::builder()
        .against(fake)
        .on(db)
        .env(|env| oauth_env(env, keys))
        .spawn()
        .await
}

fn oauth_env(env: &mut HashMap<String, String>, keys: (&str, Option<&str>)) {
    env.remove("AMO_ACCESS_TOKEN");
    for (k, v) in CLIENT {
        env.insert(k.into(), v.into());
    }
    env.insert("TOKEN_ENCRYPTION_KEY".into(), keys.0.into());
    if let Some(previous) = keys.1 {
        env.insert("TOKEN_ENCRYPTION_KEY_PREVIOUS".into(), previous.into());
    }
}

async fn oauth_app(token_ttl: Duration) -> TestApp {
    oauth_app_on(
        fake_with_ttl(token_ttl).await,
        TestDb::create().await,
        (KEY_A, None),
    )
    .await
}

/// `amosync` in OAuth mode against `app`'s database and fake, with `key`.
fn amosync(app: &TestApp, key: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amosync"));
    cmd.args(args)
        .env_clear()
        .env("DATABASE_URL", app.db.url())
        .env("AMO_BASE_URL", app.amo.base_url())
        .env("API_TOKENS", "cli:cli-token-0123456789abcdef")
        .env("TOKEN_ENCRYPTION_KEY", key)
        .env("LOG_LEVEL", "error");
    for (k, v) in CLIENT {
        cmd.env(k, v);
    }
    cmd
}

/// `amosync auth exchange`, the code in `AMO_AUTH_CODE`.
fn exchange(app: &TestApp, code: &str) -> std::process::Output {
    amosync(app, KEY_A, &["auth", "exchange"])
        .env("AMO_AUTH_CODE", code)
        .output()
        .expect("run amosync auth exchange")
}

/// The service can call AmoCRM with what it stored: a new contact is created.
async fn creates_a_contact(app: &TestApp) {
    creates_a_contact_with(app, "+79161234567").await;
}

async fn creates_a_contact_with(app: &TestApp, phone: &str) {
    let created = app
        .post("/api/v1/contacts", &json!({"name": "Иван", "phone": phone}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

/// The stored row, as a dump of the database would show it.
fn stored_row(app: &TestApp) -> String {
    app.db
        .query_strings(
            "SELECT CONCAT_WS(' ', id, access_token, refresh_token, expires_at, \
             needs_reauth, COALESCE(last_error, '')) AS s FROM amo_tokens",
        )
        .join("\n")
}

#[tokio::test]
async fn an_exchanged_code_is_used_and_expiry_costs_exactly_one_refresh_under_load() {
    let app = oauth_app(Duration::from_secs(3)).await;
    let out = exchange(&app, &app.amo.issue_auth_code());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Первый", "phone": "+79160000100"}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);

    tokio::time::sleep(Duration::from_millis(3200)).await;
    let app = &app;
    let posts = (0..50).map(|i| {
        let body =
            json!({"name": format!("Клиент {i}"), "phone": format!("+7916000{:04}", 200 + i)});
        async move { app.post("/api/v1/contacts", &body).await }
    });
    let replies = futures::future::join_all(posts).await;
    for reply in &replies {
        assert!(
            matches!(reply.status, 201 | 202),
            "{} {}",
            reply.status,
            reply.body
        );
    }
    assert_eq!(
        app.amo.token_refreshes(),
        1,
        "one refresh for fifty callers"
    );
}

#[tokio::test]
async fn a_refused_refresh_marks_reauthorisation_without_looping() {
    let app = oauth_app(Duration::from_secs(3)).await;
    let out = exchange(&app, &app.amo.issue_auth_code());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    post_after_our_refresh_token_was_spent(&app).await;
    let reauth = app
        .db
        .query_i64("SELECT COUNT(*) AS n FROM amo_tokens WHERE needs_reauth");
    assert_eq!(reauth, 1);
    let ready = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!(ready.body["amocrm"]["state"], "refused", "{}", ready.body);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.amo.token_refreshes(),
        0,
        "no refresh storm after the refusal"
    );
}

#[tokio::test]
async fn a_new_authorisation_revives_a_running_instance_within_seconds() {
    let fake = fake_with_ttl(Duration::from_secs(3600)).await;
    // Probes an hour apart: only noticing the new authorisation can revive it.
    let app = TestApp::builder()
        .against(fake)
        .on(TestDb::create().await)
        .env(|env| {
            oauth_env(env, (KEY_A, None));
            env.insert("AMO_ACCESS_PROBE_SECS".into(), "3600".into());
        })
        .spawn()
        .await;
    assert!(exchange(&app, &app.amo.issue_auth_code()).status.success());
    post_after_our_refresh_token_was_spent(&app).await;
    let ready = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!(ready.body["amocrm"]["state"], "refused", "{}", ready.body);

    // An operator authorises again while the service runs.
    let out = exchange(&app, &app.amo.issue_auth_code());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.wait_for_within(
        "SELECT COUNT(*) AS n FROM contacts WHERE sync_status = 'synced'",
        1,
        Duration::from_secs(10),
    )
    .await;
    let ready = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!(ready.body["amocrm"]["state"], "ok", "{}", ready.body);
    creates_a_contact_with(&app, "+79161234568").await;
}

#[tokio::test]
async fn a_database_dump_holds_neither_token() {
    let app = oauth_app(Duration::from_secs(3600)).await;
    let out = exchange(&app, &app.amo.issue_auth_code());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let issued = app.amo.issued_oauth_tokens();
    assert_eq!(issued.len(), 2, "one access and one refresh token");
    let row = stored_row(&app);
    for token in &issued {
        assert!(
            !row.contains(token.as_str()),
            "{token} is stored as is: {row}"
        );
    }
    assert_eq!(row.matches("enc:v1:").count(), 2, "{row}");
    // The service opens what it sealed.
    creates_a_contact(&app).await;
}

#[tokio::test]
async fn a_plaintext_row_from_before_encryption_is_sealed_at_start_up() {
    let fake = fake_with_ttl(Duration::from_secs(3600)).await;
    let db = TestDb::create().await;
    db.migrate().await;
    // The pair as an earlier version stored it: in the clear.
    let reply: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/oauth2/access_token", fake.base_url()))
        .json(&json!({
            "client_id": CLIENT[0].1, "client_secret": CLIENT[1].1, "redirect_uri": CLIENT[2].1,
            "grant_type": "authorization_code", "code": fake.issue_auth_code(),
        }))
        .send()
        .await
        .expect("token endpoint")
        .json()
        .await
        .expect("tokens");
    let (access, refresh) = (
        reply["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        reply["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    db.execute(&format!(
        "INSERT INTO amo_tokens (id, access_token, refresh_token, expires_at) \
         VALUES (1, '{access}', '{refresh}', UNIX_TIMESTAMP() + 3000)"
    ));
    let app = oauth_app_on(fake, db, (KEY_A, None)).await;
    let row = stored_row(&app);
    assert!(!row.contains(&access) && !row.contains(&refresh), "{row}");
    assert_eq!(row.matches("enc:v1:").count(), 2, "{row}");
    creates_a_contact(&app).await;
}

#[tokio::test]
async fn a_rotated_key_reads_with_the_previous_one_and_seals_again() {
    let first = oauth_app(Duration::from_secs(3600)).await;
    let out = exchange(&first, &first.amo.issue_auth_code());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = |raw: &str| {
        amosync::crypto::EncryptionKey::from_base64(raw)
            .expect("key")
            .id()
            .to_owned()
    };
    assert_eq!(
        stored_row(&first)
            .matches(&format!("enc:v1:{}:", id(KEY_A)))
            .count(),
        2
    );

    // Without the old key the service does not start, and says what to set.
    let refused = amosync(&first, KEY_B, &["serve"])
        .env("PORT", "0")
        .env("BIND_ADDR", "127.0.0.1")
        .output()
        .expect("run amosync serve");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("TOKEN_ENCRYPTION_KEY_PREVIOUS"), "{stderr}");
    assert!(stderr.contains(&id(KEY_A)), "{stderr}");

    let TestApp { db, amo, .. } = first;
    let rotated = oauth_app_on(amo, db, (KEY_B, Some(KEY_A))).await;
    let row = stored_row(&rotated);
    assert_eq!(
        row.matches(&format!("enc:v1:{}:", id(KEY_B))).count(),
        2,
        "{row}"
    );
    creates_a_contact(&rotated).await;
}

#[tokio::test]
async fn the_code_is_never_taken_from_the_command_line() {
    let app = oauth_app(Duration::from_secs(3600)).await;
    let code = app.amo.issue_auth_code();
    let refused = amosync(&app, KEY_A, &["auth", "exchange", "--code", &code])
        .output()
        .expect("run amosync");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("AMO_AUTH_CODE"));
    assert_eq!(app.count("amo_tokens"), 0);

    let mut child = amosync(&app, KEY_A, &["auth", "exchange"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run amosync");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{code}").expect("write the code");
    }
    let out = child.wait_with_output().expect("exit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.count("amo_tokens"), 1);
}

/// Someone else used our refresh token, so AmoCRM refuses the next refresh; a
/// contact posted then is still accepted and queued.
async fn post_after_our_refresh_token_was_spent(app: &TestApp) {
    app.db
        .execute("UPDATE amo_tokens SET refresh_token = 'def50200already-used', expires_at = 0");
    let reply = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван", "phone": "+79161234567"}),
        )
        .await;
    assert_eq!(reply.status, 202, "accepted and queued: {}", reply.body);
}
