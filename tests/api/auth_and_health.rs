use serde_json::json;

use crate::helpers::{spawn_app, CapturedLogs, TestApp, API_TOKEN};

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let app = spawn_app().await;
    let health = app.send(app.client.get(app.url("/health"))).await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (200, Some("ok"))
    );
    let ready = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (200, Some("ready"))
    );
}

#[tokio::test]
async fn readiness_says_when_demo_mode_accepts_published_sample_values() {
    let app = spawn_app().await;
    let ready = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!(ready.body["demo"], json!(false), "{}", ready.body);
    assert_eq!(ready.body["sample_values"], json!([]));

    let demo = TestApp::builder()
        .env(|env| {
            env.insert("AMOSYNC_DEMO".into(), "true".into());
            env.insert(
                "WEBHOOK_SECRET".into(),
                "compose-first-run-webhook-secret-0001".into(),
            );
        })
        .spawn()
        .await;
    let ready = demo.send(demo.client.get(demo.url("/ready"))).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["demo"], json!(true), "{}", ready.body);
    assert_eq!(ready.body["sample_values"], json!(["WEBHOOK_SECRET"]));
}

/// Whether a client at `address` (forwarded by nginx on loopback) gets to post a
/// contact and deliver a webhook: their two statuses.
async fn post_and_deliver_from(app: &TestApp, address: &str, secret: &str) -> (u16, u16) {
    let posted = app
        .send(
            app.client
                .post(app.url("/api/v1/contacts"))
                .header("x-forwarded-for", address)
                .bearer_auth(API_TOKEN)
                .json(&json!({"name": "Иван Петров", "phone": "+79161234567"})),
        )
        .await;
    let delivered = app
        .send(
            app.client
                .post(app.url(&format!("/webhooks/amocrm/{secret}")))
                .header("x-forwarded-for", address)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(include_str!(
                    "../fixtures/webhooks/contacts_update_with_leads_add_and_status.txt"
                )),
        )
        .await;
    if address.starts_with("203.") && posted.status == 403 {
        assert_eq!(posted.problem_code(), "forbidden", "{}", posted.body);
        let detail = posted.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("AMOSYNC_DEMO"), "{detail}");
    }
    (posted.status, delivered.status)
}

#[tokio::test]
async fn a_demo_answers_internal_networks_only() {
    const SAMPLE_SECRET: &str = "compose-first-run-webhook-secret-0001";
    let demo = TestApp::builder()
        .env(|env| {
            env.insert("AMOSYNC_DEMO".into(), "true".into());
            env.insert("WEBHOOK_SECRET".into(), SAMPLE_SECRET.into());
        })
        .spawn()
        .await;
    // Whoever read the published secret, from the internet: nothing gets in.
    assert_eq!(
        post_and_deliver_from(&demo, "203.0.113.7", SAMPLE_SECRET).await,
        (403, 403)
    );
    assert_eq!(demo.count("contacts"), 0);
    assert_eq!(demo.count("webhook_inbox"), 0);
    let ready = demo.send(
        demo.client
            .get(demo.url("/ready"))
            .header("x-forwarded-for", "203.0.113.7"),
    );
    assert_eq!(ready.await.status, 403);
    // The demo's own network (the fake AmoCRM, the browser on the host) is served.
    assert_eq!(
        post_and_deliver_from(&demo, "10.1.2.3", SAMPLE_SECRET).await,
        (201, 200)
    );

    // Not a demo: outside addresses are served as ever.
    let app = spawn_app().await;
    assert_eq!(
        post_and_deliver_from(&app, "203.0.113.7", crate::helpers::WEBHOOK_SECRET).await,
        (201, 200)
    );
}

#[tokio::test]
async fn the_start_up_log_warns_when_demo_mode_is_on() {
    let quiet = CapturedLogs::default();
    let _app = TestApp::builder().logging_to(quiet.logger()).spawn().await;
    assert!(!quiet.text().contains("demo mode"), "{}", quiet.text());

    let captured = CapturedLogs::default();
    let _demo = TestApp::builder()
        .logging_to(captured.logger())
        .env(|env| {
            env.insert("AMOSYNC_DEMO".into(), "true".into());
            env.insert(
                "API_TOKENS".into(),
                "demo:write+read+admin:change-me-local-dev-token-0001".into(),
            );
        })
        .spawn()
        .await;
    let logs = captured.text();
    let line = logs
        .lines()
        .find(|l| l.contains("demo mode"))
        .unwrap_or_else(|| panic!("no demo warning in\n{logs}"));
    assert!(line.contains(r#""sample_values":"API_TOKENS""#), "{line}");
    assert!(!logs.contains("change-me-local-dev-token-0001"), "{logs}");
}

#[tokio::test]
async fn readiness_fails_with_503_when_the_schema_is_gone() {
    let app = spawn_app().await;
    app.db.execute("DROP TABLE leads");
    app.db.execute("DROP TABLE contacts");
    app.db.execute("DELETE FROM __diesel_schema_migrations");
    let ready = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.problem_code(), "not_ready");
}

#[tokio::test]
async fn api_routes_refuse_a_missing_or_unknown_token_with_problem_json() {
    let app = spawn_app().await;
    let body = json!({"name": "Иван", "phone": "+79161234567"});
    let missing = app
        .send(app.client.post(app.url("/api/v1/contacts")).json(&body))
        .await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.problem_code(), "unauthorized");
    let wrong = app
        .send(
            app.client
                .get(app.url("/api/v1/contacts/1"))
                .bearer_auth(format!("{API_TOKEN}x")),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let legacy = app
        .send(app.client.post(app.url("/contacts/create")).json(&body))
        .await;
    assert_eq!(legacy.status, 401);
    assert_eq!(app.amo.requests(), 0, "nothing reached AmoCRM");
    assert_eq!(app.count("contacts"), 0, "nothing was stored");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let app = spawn_app().await;
    let unknown = app.get("/api/v1/nothing-here").await;
    assert_eq!(
        (unknown.status, unknown.problem_code()),
        (404, "not_found".to_owned())
    );
    let outside = app.send(app.client.get(app.url("/nope"))).await;
    assert_eq!(
        (outside.status, outside.problem_code()),
        (404, "not_found".to_owned())
    );
    let method = app
        .send(
            app.client
                .delete(app.url("/api/v1/contacts"))
                .bearer_auth(API_TOKEN),
        )
        .await;
    assert_eq!(
        (method.status, method.problem_code()),
        (405, "method_not_allowed".to_owned())
    );
    let res = app
        .client
        .put(app.url("/api/v1/contacts/1"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("reply");
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(
        res.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET"),
        "a 405 names the methods the resource has"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_one_nginx_sent() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("reply");
    assert_eq!(
        res.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("abc-123")
    );
    let res = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("reply");
    let generated = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(generated.len(), 32, "a fresh uuid: {generated}");
    // An id that is not one is replaced, not echoed or logged.
    for odd in ["<script>alert(1)</script>", "two words", &"x".repeat(129)] {
        let res = app
            .client
            .get(app.url("/health"))
            .header("x-request-id", odd)
            .send()
            .await
            .expect("reply");
        let echoed = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(echoed.len(), 32, "{odd} was replaced by {echoed}");
    }
}

#[tokio::test]
async fn answers_are_not_sniffed_or_cached() {
    let app = spawn_app().await;
    for (path, token) in [
        ("/api/v1/contacts/1", Some(API_TOKEN)),
        ("/api/v1/contacts", None),
        ("/health", None),
        ("/nowhere", None),
    ] {
        let mut request = app.client.get(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let res = request.send().await.expect("reply");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
    }
}

#[tokio::test]
async fn on_shutdown_ready_turns_503_and_requests_in_flight_still_finish() {
    let mut app = spawn_app().await;
    app.amo.set_latency(std::time::Duration::from_millis(400));
    let body = json!({"name": "Иван", "phone": "+79161234567"});
    let trigger = app.shutdown.take().expect("trigger");
    let in_flight = app.post("/api/v1/contacts", &body);
    let stop = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        tokio::spawn(trigger.shutdown());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        app.send(app.client.get(app.url("/ready"))).await
    };
    let (reply, ready) = tokio::join!(in_flight, stop);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.problem_code(), "not_ready");
    assert_eq!(
        reply.status, 201,
        "the request in flight completed: {}",
        reply.body
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let after = app.client.get(app.url("/health")).send().await;
    assert!(after.is_err(), "the listener is closed after the drain");
}

#[tokio::test]
async fn after_the_database_drops_every_connection_the_pool_recovers_within_one_failure_per_connection(
) {
    let app = spawn_app().await;
    let created = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван", "phone": "+79161230001"}),
        )
        .await;
    let id = created.body["id"].as_i64().expect("id");
    let path = format!("/api/v1/contacts/{id}");
    // Warm the pool, then cut every connection as a server restart would.
    for _ in 0..8 {
        assert_eq!(app.get(&path).await.status, 200);
    }
    assert!(app.db.kill_connections() > 0, "the app held connections");

    // Each stale connection may fail one call (503, retry later); never more, and
    // never anything but 200 or 503.
    let mut failures = 0;
    for _ in 0..40 {
        let reply = app.get(&path).await;
        match reply.status {
            200 => {}
            503 => failures += 1,
            other => panic!("{other}: {}", reply.body),
        }
    }
    assert!(failures <= 8, "{failures} calls failed after the restart");
    for _ in 0..8 {
        assert_eq!(app.get(&path).await.status, 200, "recovered");
    }
}
