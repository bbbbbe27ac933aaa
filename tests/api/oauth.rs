use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::fake_amo::{FakeAmo, FakeConfig};
use crate::helpers::{spawn_app_against, TestApp, TestDb};

const CLIENT: [(&str, &str); 3] = [
    ("AMO_CLIENT_ID", "fake-client-id"),
    ("AMO_CLIENT_SECRET", "fake-client-secret"),
    ("AMO_REDIRECT_URI", "http://localhost/oauth/callback"),
];

async fn oauth_app(token_ttl: Duration) -> TestApp {
    let fake = FakeAmo::start_with(FakeConfig {
        access_token_ttl: token_ttl,
        ..FakeConfig::default()
    })
    .await;
    spawn_app_against(fake, TestDb::create().await, |env| {
        env.remove("AMO_ACCESS_TOKEN");
        for (k, v) in CLIENT {
            env.insert(k.into(), v.into());
        }
    })
    .await
}

fn exchange(app: &TestApp, code: &str) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amosync"));
    cmd.args(["auth", "exchange", "--code", code])
        .env_clear()
        .env("DATABASE_URL", app.db.url())
        .env("AMO_BASE_URL", app.amo.base_url())
        .env("API_TOKENS", "cli:cli-token-0123456789abcdef")
        .env("LOG_LEVEL", "error");
    for (k, v) in CLIENT {
        cmd.env(k, v);
    }
    cmd.output().expect("run amosync auth exchange")
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
    // Someone else used our refresh token: AmoCRM will refuse it.
    app.db
        .execute("UPDATE amo_tokens SET refresh_token = 'def50200already-used', expires_at = 0");
    let reply = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван", "phone": "+79161234567"}),
        )
        .await;
    assert_eq!(reply.status, 202, "accepted and queued: {}", reply.body);
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
