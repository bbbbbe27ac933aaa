//! What the service logs while serving a full flow never contains a configured secret.

use serde_json::json;

use crate::fake_amo::FakeAmo;
use crate::helpers::{CapturedLogs, TestApp, API_TOKEN, WEBHOOK_SECRET};

const FORM: &str = "application/x-www-form-urlencoded";
const DELIVERY: &str =
    include_str!("../fixtures/webhooks/contacts_update_with_leads_add_and_status.txt");

#[tokio::test]
async fn no_configured_secret_appears_in_the_logs_of_a_full_flow() {
    let captured = CapturedLogs::default();
    let app = TestApp::builder()
        .logging_to(captured.logger())
        .spawn()
        .await;

    let created = app
        .send(
            app.client
                .post(app.url("/api/v1/contacts"))
                .bearer_auth(API_TOKEN)
                .header("Idempotency-Key", "log-test-1")
                .json(&json!({"name": "Иван Петров", "phone": "+79161234567"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_i64().expect("id");
    assert_eq!(app.get(&format!("/api/v1/contacts/{id}")).await.status, 200);
    assert_eq!(
        app.get("/api/v1/contacts?phone=89161234567").await.status,
        200
    );
    let lead = app
        .post(
            "/api/v1/leads",
            &json!({"name": "Сделка", "contact": {"name": "Анна", "phone": "+79031112233"}}),
        )
        .await;
    assert_eq!(lead.status, 201, "{}", lead.body);

    // The webhook secret is part of the subscribed URL and of every delivery's path.
    let subscribed = app.post("/api/v1/amocrm/webhooks", &json!({})).await;
    assert!(
        [200, 201].contains(&subscribed.status),
        "{}",
        subscribed.body
    );
    assert_eq!(
        app.deliver(WEBHOOK_SECRET, FORM, DELIVERY).await.status,
        200
    );
    app.wait_for(
        "SELECT COUNT(*) AS n FROM webhook_inbox WHERE status = 'processed'",
        1,
    )
    .await;
    // Failures log the most: a wrong token, AmoCRM erroring and refusing access.
    let wrong = app
        .send(
            app.client
                .get(app.url("/api/v1/contacts"))
                .bearer_auth(format!("{API_TOKEN}-wrong")),
        )
        .await;
    assert_eq!(wrong.status, 401);
    app.amo.fail_with(Some(500));
    let queued = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Пётр", "phone": "+79165554433"}),
        )
        .await;
    assert_eq!(queued.status, 202, "{}", queued.body);
    app.amo.fail_with(Some(401));
    let refused = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Олег", "phone": "+79167776655"}),
        )
        .await;
    assert_eq!(refused.status, 202, "{}", refused.body);
    app.amo.fail_with(None);

    assert_eq!(
        app.send(app.client.get(app.url("/metrics"))).await.status,
        200
    );

    let logs = captured.text();
    let access_lines = logs
        .lines()
        .filter(|l| l.contains("\"http.route\""))
        .count();
    assert!(access_lines >= 8, "the flow was not logged:\n{logs}");
    assert!(
        logs.contains("/webhooks/amocrm/{secret}"),
        "the delivery's access line is missing:\n{logs}"
    );
    for (what, secret) in [
        ("API token", API_TOKEN),
        ("AmoCRM access token", FakeAmo::TOKEN),
        ("webhook secret", WEBHOOK_SECRET),
    ] {
        assert!(!logs.contains(secret), "the {what} is in the logs:\n{logs}");
    }
}
