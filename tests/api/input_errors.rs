use serde_json::json;

use crate::helpers::{spawn_app, CapturedLogs, TestApp, API_TOKEN};

#[tokio::test]
async fn missing_fields_and_unparsable_phones_are_named_in_a_422() {
    let app = spawn_app().await;
    assert_eq!(
        app.post("/api/v1/contacts", &json!({"phone": "+79161234567"}))
            .await
            .wrong_fields(),
        ["name"]
    );
    assert_eq!(
        app.post("/api/v1/contacts", &json!({"name": "Иван", "phone": "12"}))
            .await
            .wrong_fields(),
        ["phone"]
    );
    assert_eq!(
        app.post(
            "/api/v1/contacts",
            &json!({"name": "  ", "phone": "call me"})
        )
        .await
        .wrong_fields(),
        ["name", "phone"]
    );
    assert_eq!(
        app.post(
            "/api/v1/contacts",
            &json!({"name": "x".repeat(256), "phone": "+79161234567"})
        )
        .await
        .wrong_fields(),
        ["name"]
    );
    assert_eq!(
        app.post(
            "/api/v1/contacts",
            &json!({"name": "Иван", "phone": 79161234567_i64})
        )
        .await
        .wrong_fields(),
        ["phone"]
    );
    assert_eq!(
        app.post(
            "/api/v1/leads",
            &json!({"name": "Заказ", "price": "дорого"})
        )
        .await
        .wrong_fields(),
        ["price"]
    );
    assert_eq!(
        app.post("/api/v1/leads", &json!({"name": "Заказ", "price": -5}))
            .await
            .wrong_fields(),
        ["price"]
    );
    assert_eq!(
        app.post(
            "/api/v1/leads",
            &json!({"name": "Заказ", "contact": {"name": "Иван", "phone": "??"}})
        )
        .await
        .wrong_fields(),
        ["contact.phone"]
    );
    assert_eq!(
        app.post("/api/v1/contacts", &json!([1, 2]))
            .await
            .wrong_fields(),
        ["body"]
    );
    assert_eq!(app.amo.requests(), 0);
    assert_eq!(app.count("contacts") + app.count("leads"), 0);
}

#[tokio::test]
async fn broken_json_oversized_bodies_and_foreign_content_types_are_4xx_problems() {
    let app = spawn_app().await;
    let post = || {
        app.client
            .post(app.url("/api/v1/contacts"))
            .bearer_auth(API_TOKEN)
    };

    let broken = app
        .send(
            post()
                .header("content-type", "application/json")
                .body("{\"name\": "),
        )
        .await;
    assert_eq!(
        (broken.status, broken.problem_code()),
        (400, "malformed_body".to_owned())
    );

    let huge = format!(
        "{{\"name\":\"{}\",\"phone\":\"+79161234567\"}}",
        "x".repeat(10 * 1024 * 1024)
    );
    let too_large = app
        .send(post().header("content-type", "application/json").body(huge))
        .await;
    assert_eq!(
        (too_large.status, too_large.problem_code()),
        (413, "payload_too_large".to_owned())
    );

    let form = app
        .send(
            post()
                .header("content-type", "application/x-www-form-urlencoded")
                .body("name=a"),
        )
        .await;
    assert_eq!(
        (form.status, form.problem_code()),
        (415, "unsupported_media_type".to_owned())
    );

    let bad_query = app
        .get("/api/v1/contacts?limit=0&phone=abc&cursor=zz")
        .await;
    let mut fields = bad_query.wrong_fields();
    fields.sort();
    assert_eq!(fields, ["cursor", "limit", "phone"]);

    let bad_id = app.get("/api/v1/contacts/abc").await;
    assert_eq!(bad_id.status, 404);
}

#[tokio::test]
async fn queries_read_blank_as_absent_and_whole_numbers_as_integers() {
    // What /openapi.json promises: `allowEmptyValue` on every query parameter, and
    // JSON Schema integers, which do not tell `7` from `7.0`.
    let app = spawn_app().await;
    for path in [
        "/api/v1/leads?name=&status_id=&contact_id=&limit=&cursor=&include_deleted=",
        "/api/v1/contacts?phone=&name=&amocrm_id=&limit=&cursor=&include_deleted=",
        "/api/v1/sync/jobs?status=&limit=&cursor=",
        "/api/v1/leads?status_id=7.0&limit=5e1&include_deleted=1",
    ] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    let fraction = app.get("/api/v1/leads?status_id=7.5").await;
    assert_eq!(fraction.wrong_fields(), ["status_id"]);
}

#[tokio::test]
async fn an_unreachable_database_is_a_503_not_a_500_and_the_cause_is_logged() {
    let logs = CapturedLogs::default();
    let app = TestApp::builder()
        .without_database()
        .logging_to(logs.logger())
        .spawn()
        .await;
    let reply = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван", "phone": "+79161234567"}),
        )
        .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.problem_code(), "database_unavailable");
    let ready = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        app.amo.requests(),
        0,
        "AmoCRM is not called before the row is stored"
    );
    let failure = logs
        .text()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["msg"] == "request failed" && line["http.status"] == 503)
        .expect("the 503 is logged with its cause");
    let cause = failure["error"].as_str().unwrap_or_default();
    assert!(cause.starts_with("database unavailable: "), "{cause}");
}
