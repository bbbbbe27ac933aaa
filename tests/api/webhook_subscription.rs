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
