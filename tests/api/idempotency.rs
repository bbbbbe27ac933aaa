use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app, TestApp, API_TOKEN};

async fn post_with_key(
    app: &TestApp,
    token: &str,
    key: &str,
    body: &serde_json::Value,
) -> (crate::helpers::Reply, bool) {
    let res = app
        .client
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("reply");
    let replayed = res.headers().get("idempotent-replayed").is_some();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.json().await.unwrap_or(serde_json::Value::Null);
    (
        crate::helpers::Reply {
            status,
            content_type,
            location,
            body,
        },
        replayed,
    )
}

#[tokio::test]
async fn a_repeated_request_gets_the_first_response_replayed() {
    let app = spawn_app().await;
    let body = json!({"name": "Иван", "phone": "+79161234567"});
    let (first, replayed) = post_with_key(&app, API_TOKEN, "order-1", &body).await;
    assert_eq!((first.status, replayed), (201, false), "{}", first.body);
    let (again, replayed) = post_with_key(&app, API_TOKEN, "order-1", &body).await;
    assert_eq!(
        (again.status, replayed),
        (201, true),
        "the stored 201, not a fresh 200"
    );
    assert_eq!(again.body, first.body);
    assert_eq!(again.location, first.location);
    assert_eq!(app.amo.contact_creates(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_and_bad_keys_are_named() {
    let app = spawn_app().await;
    let (first, _) = post_with_key(
        &app,
        API_TOKEN,
        "k-1",
        &json!({"name": "A", "phone": "+79160000001"}),
    )
    .await;
    assert_eq!(first.status, 201);
    let (other, _) = post_with_key(
        &app,
        API_TOKEN,
        "k-1",
        &json!({"name": "B", "phone": "+79160000002"}),
    )
    .await;
    assert_eq!(
        (other.status, other.problem_code()),
        (422, "idempotency_key_reused".to_owned())
    );
    let (bad, _) = post_with_key(
        &app,
        API_TOKEN,
        &"x".repeat(256),
        &json!({"name": "C", "phone": "+79160000003"}),
    )
    .await;
    assert_eq!(bad.wrong_fields(), ["Idempotency-Key"]);
    assert_eq!(app.count("contacts"), 1);
}

#[tokio::test]
async fn a_hundred_concurrent_requests_with_one_key_create_once() {
    let app = spawn_app().await;
    app.amo.set_latency(Duration::from_millis(300));
    let body = json!({"name": "Иван", "phone": "+79161234567"});
    let replies =
        futures::future::join_all((0..100).map(|_| post_with_key(&app, API_TOKEN, "burst", &body)))
            .await;
    let fresh = replies
        .iter()
        .filter(|(r, replayed)| r.status == 201 && !replayed)
        .count();
    for (reply, _) in &replies {
        assert!(
            matches!(reply.status, 201 | 409),
            "{} {}",
            reply.status,
            reply.body
        );
        if reply.status == 409 {
            assert_eq!(reply.problem_code(), "idempotency_in_progress");
        }
    }
    assert_eq!(fresh, 1, "exactly one request ran");
    assert_eq!(app.amo.contact_creates(), 1);
    assert_eq!(app.count("contacts"), 1);
}

#[tokio::test]
async fn keys_belong_to_one_api_client() {
    let other = "other-client-token-0123456789";
    let app = TestApp::builder()
        .env(|env| {
            env.insert(
                "API_TOKENS".into(),
                format!("tests:write+read+admin:{API_TOKEN},other:{other}"),
            );
        })
        .spawn()
        .await;
    let (a, _) = post_with_key(
        &app,
        API_TOKEN,
        "shared",
        &json!({"name": "A", "phone": "+79160000001"}),
    )
    .await;
    let (b, replayed) = post_with_key(
        &app,
        other,
        "shared",
        &json!({"name": "B", "phone": "+79160000002"}),
    )
    .await;
    assert_eq!(
        (a.status, b.status, replayed),
        (201, 201, false),
        "{}",
        b.body
    );
    assert_ne!(a.body["id"], b.body["id"]);
}
