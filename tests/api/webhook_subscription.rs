use serde_json::json;

use crate::helpers::{spawn_app, API_TOKEN, WEBHOOK_SECRET};

#[tokio::test]
async fn subscribing_is_idempotent_and_the_secret_never_leaves_the_service() {
    let app = spawn_app().await;
    let first = app
        .send(
            app.client
                .post(app.url("/api/v1/amocrm/webhooks"))
                .bearer_auth(API_TOKEN),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = app
        .send(
            app.client
                .post(app.url("/api/v1/amocrm/webhooks"))
                .bearer_auth(API_TOKEN),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);

    let hooks = app.amo.webhooks();
    assert_eq!(hooks.len(), 1);
    let (destination, events) = &hooks[0];
    assert_eq!(
        destination,
        &format!("http://127.0.0.1:9/webhooks/amocrm/{WEBHOOK_SECRET}")
    );
    for event in [
        "add_contact",
        "update_contact",
        "delete_contact",
        "restore_contact",
        "status_lead",
        "add_lead",
    ] {
        assert!(events.iter().any(|e| e == event), "{event} in {events:?}");
    }

    let listed = app.get("/api/v1/amocrm/webhooks").await;
    assert_eq!(listed.body["subscribed"], true);
    assert!(
        !listed.body.to_string().contains(WEBHOOK_SECRET),
        "{}",
        listed.body
    );
    assert!(!first.body.to_string().contains(WEBHOOK_SECRET));

    let delete = || {
        app.client
            .delete(app.url("/api/v1/amocrm/webhooks"))
            .bearer_auth(API_TOKEN)
    };
    assert_eq!(app.send(delete()).await.status, 204);
    assert!(app.amo.webhooks().is_empty());
    assert_eq!(
        app.send(delete()).await.status,
        204,
        "nothing to remove is not an error"
    );
}

#[tokio::test]
async fn managing_webhooks_needs_an_api_token() {
    let app = spawn_app().await;
    let reply = app
        .send(app.client.post(app.url("/api/v1/amocrm/webhooks")))
        .await;
    assert_eq!(reply.status, 401);
    assert!(app.amo.webhooks().is_empty());
}

#[tokio::test]
async fn the_cli_lists_other_integrations_hooks_without_their_keys() {
    let app = spawn_app().await;
    let foreign = "https://other-integration.example/hook/path-key-0123456789?key=query-key-42";
    app.register_foreign_hook(foreign).await;
    let ours = app.post("/api/v1/amocrm/webhooks", &json!({})).await;
    assert_eq!(ours.status, 201, "{}", ours.body);

    let out = app.cli_with(
        &["webhooks", "list"],
        &[
            ("SERVER_URL", "http://127.0.0.1:9"),
            ("WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\thttps://other-integration.example/…\t"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\thttp://127.0.0.1:9/webhooks/amocrm/***\t"),
        "{stdout}"
    );
    assert!(stdout.contains("amosync subscribed: true"), "{stdout}");
    for key in ["path-key-0123456789", "query-key-42", WEBHOOK_SECRET] {
        assert!(!stdout.contains(key), "{key} printed:\n{stdout}");
    }
}
