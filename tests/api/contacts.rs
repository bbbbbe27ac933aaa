use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app, TestApp, API_TOKEN};

#[tokio::test]
async fn a_new_contact_is_created_in_amocrm_and_mirrored_with_201() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/api/v1/contacts",
            &json!({"name": " Иван Петров ", "phone": "8 (916) 123-45-67"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.body["id"].as_i64().expect("id");
    assert_eq!(
        reply.location.as_deref(),
        Some(format!("/api/v1/contacts/{id}").as_str())
    );
    assert_eq!(reply.body["phone"], "+79161234567");
    assert_eq!(reply.body["name"], "Иван Петров");
    assert_eq!(reply.body["sync_status"], "synced");

    let in_amo = app.amo.contacts();
    assert_eq!(in_amo.len(), 1);
    assert_eq!(reply.body["amocrm_id"].as_i64(), Some(in_amo[0].id));
    assert_eq!(in_amo[0].phones, ["+79161234567"]);

    let fetched = app.get(&format!("/api/v1/contacts/{id}")).await;
    assert_eq!(
        (fetched.status, &fetched.body["amocrm_id"]),
        (200, &reply.body["amocrm_id"])
    );
}

#[tokio::test]
async fn posting_a_known_phone_in_another_spelling_returns_the_existing_contact() {
    let app = spawn_app().await;
    let first = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван", "phone": "+7 916 1234567"}),
        )
        .await;
    assert_eq!(first.status, 201);
    let again = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Другое имя", "phone": "79161234567"}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["name"], "Иван");
    assert_eq!(app.amo.contact_creates(), 1);
    assert_eq!(app.count("contacts"), 1);
}

#[tokio::test]
async fn a_contact_already_in_amocrm_is_mirrored_and_not_created_again() {
    let app = spawn_app().await;
    let existing = app.amo.add_contact("Мария из CRM", &["8 916 765-43-21"]);
    let reply = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Мария", "phone": "+79167654321"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["amocrm_id"].as_i64(), Some(existing));
    assert_eq!(reply.body["name"], "Мария из CRM");
    assert_eq!(app.amo.contact_creates(), 0);
}

#[tokio::test]
async fn of_several_amocrm_duplicates_the_oldest_is_taken() {
    let app = spawn_app().await;
    let older = app.amo.add_contact("Первый", &["+79167654321"]);
    let _newer = app.amo.add_contact("Второй", &["89167654321"]);
    let reply = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Мария", "phone": "+79167654321"}),
        )
        .await;
    assert_eq!(reply.body["amocrm_id"].as_i64(), Some(older));
}

#[tokio::test]
async fn amocrm_query_false_positives_are_not_taken_for_the_contact() {
    let app = spawn_app().await;
    // AmoCRM's `query` matches both: one holds the digits in another field, one a longer number.
    app.amo
        .add_contact_with_note("Плательщик", &["+74951112233"], "код 9161234567");
    app.amo.add_contact("Почти", &["+7 916 123-45-670"]);
    let reply = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван", "phone": "+79161234567"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(app.amo.contact_creates(), 1);
}

#[tokio::test]
async fn twenty_concurrent_identical_posts_create_one_contact_everywhere() {
    let app = spawn_app().await;
    app.amo.set_latency(Duration::from_millis(300));
    let body = json!({"name": "Иван", "phone": "+79161234567"});
    let replies =
        futures::future::join_all((0..20).map(|_| app.post("/api/v1/contacts", &body))).await;
    let ids: Vec<_> = replies.iter().map(|r| r.body["id"].as_i64()).collect();
    for reply in &replies {
        assert!(
            matches!(reply.status, 200 | 201),
            "{} {}",
            reply.status,
            reply.body
        );
    }
    assert!(
        ids.iter().all(|id| id.is_some() && *id == ids[0]),
        "{ids:?}"
    );
    assert_eq!(replies.iter().filter(|r| r.status == 201).count(), 1);
    assert_eq!(app.amo.contact_creates(), 1);
    assert_eq!(app.count("contacts"), 1);
}

#[tokio::test]
async fn when_amocrm_fails_the_submission_is_accepted_and_the_worker_finishes_it() {
    // Retries here are 50 ms apart: enough attempts that the job outlives the outage.
    let app = TestApp::builder()
        .env(|env| {
            env.insert("SYNC_MAX_ATTEMPTS".into(), "1000".into());
        })
        .spawn()
        .await;
    let body = json!({"name": "Иван", "phone": "+79161234567"});
    let mut ids = Vec::new();
    for status in [503, 429, 401, 403] {
        app.amo.fail_with(Some(status));
        let reply = app.post("/api/v1/contacts", &body).await;
        assert_eq!(reply.status, 202, "AmoCRM {status}: {}", reply.body);
        assert_eq!(reply.body["sync_status"], "pending");
        let id = reply.body["id"].as_i64().expect("the stored record");
        assert_eq!(
            reply.location.as_deref(),
            Some(format!("/api/v1/contacts/{id}").as_str())
        );
        ids.push(id);
        // A 429 holds every AmoCRM call back for a second, and meanwhile requests are
        // queued without calling AmoCRM: let it pass, so the next status is seen.
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one record however often it was posted: {ids:?}"
    );
    assert_eq!(app.count("contacts"), 1);
    let jobs = app.get("/api/v1/sync/jobs?status=pending").await;
    assert_eq!(
        jobs.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        jobs.body
    );
    assert_eq!(jobs.body["items"][0]["entity"], "contact");
    // A refusal (401, then 403) holds AmoCRM calls back; operators see it on /ready.
    let ready = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!(ready.status, 200, "submissions are still accepted");
    assert_eq!(ready.body["amocrm"]["state"], "refused", "{}", ready.body);
    let reason = ready.body["amocrm"]["reason"].as_str().unwrap_or_default();
    assert!(
        ["unauthorized", "forbidden"].contains(&reason),
        "{}",
        ready.body
    );

    app.amo.fail_with(None);
    let path = format!("/api/v1/contacts/{}", ids[0]);
    let synced = app
        .eventually(&path, |r| r.body["sync_status"] == "synced")
        .await;
    assert_eq!(
        synced.body["amocrm_id"].as_i64(),
        app.amo.contacts().first().map(|c| c.id)
    );
    assert_eq!(app.amo.contact_creates(), 1);
    let ready = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!(ready.body["amocrm"]["state"], "ok", "{}", ready.body);
    app.eventually("/api/v1/sync/jobs?status=done", |r| {
        r.body["items"].as_array().map(Vec::len) == Some(1)
    })
    .await;
}

#[tokio::test]
async fn a_job_that_keeps_failing_ends_dead_and_can_be_retried() {
    let app = TestApp::builder()
        .env(|env| {
            env.insert("SYNC_MAX_ATTEMPTS".into(), "2".into());
        })
        .spawn()
        .await;
    app.amo.fail_with(Some(500));
    let reply = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван", "phone": "+79161234567"}),
        )
        .await;
    assert_eq!(reply.status, 202);
    let dead = app
        .eventually("/api/v1/sync/jobs?status=dead", |r| {
            r.body["items"].as_array().map(Vec::len) == Some(1)
        })
        .await;
    let job = dead.body["items"][0].clone();
    assert_eq!(job["attempts"], 2);
    assert!(
        job["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{job}"
    );

    app.amo.fail_with(None);
    let retry = app.url(&format!("/api/v1/sync/jobs/{}/retry", job["id"]));
    let retried = app
        .send(app.client.post(retry).bearer_auth(API_TOKEN))
        .await;
    assert_eq!(
        (retried.status, retried.body["status"].as_str()),
        (200, Some("pending"))
    );
    let path = format!("/api/v1/contacts/{}", reply.body["id"]);
    app.eventually(&path, |r| r.body["sync_status"] == "synced")
        .await;
    assert_eq!(app.amo.contact_creates(), 1);
}

#[tokio::test]
async fn a_refusal_by_amocrm_is_a_502_and_the_job_is_dead_at_once() {
    let app = spawn_app().await;
    app.amo.fail_with(Some(400));
    let reply = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван", "phone": "+79161234567"}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.problem_code()),
        (502, "amocrm_rejected".to_owned())
    );
    assert!(reply.body["id"].as_i64().is_some());
    let dead = app.get("/api/v1/sync/jobs?status=dead").await;
    assert_eq!(dead.body["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn an_amocrm_that_does_not_answer_is_not_waited_for() {
    let app = spawn_app().await;
    app.amo.set_latency(Duration::from_secs(4));
    let started = std::time::Instant::now();
    let reply = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван", "phone": "+79161234567"}),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(reply.body["sync_status"], "pending");
    assert_eq!(app.count("contacts"), 1);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let app = spawn_app().await;
    let reply = app.get("/api/v1/contacts/424242").await;
    assert_eq!(
        (reply.status, reply.problem_code()),
        (404, "not_found".to_owned())
    );
}

#[tokio::test]
async fn lists_filter_by_normalised_phone_and_page_with_a_cursor() {
    let app = spawn_app().await;
    for (name, phone) in [
        ("A", "+79160000001"),
        ("B", "+79160000002"),
        ("C", "+79160000003"),
    ] {
        assert_eq!(
            app.post("/api/v1/contacts", &json!({"name": name, "phone": phone}))
                .await
                .status,
            201
        );
    }
    let by_phone = app.get("/api/v1/contacts?phone=8%20916%20000-00-02").await;
    assert_eq!(by_phone.status, 200);
    let names: Vec<_> = by_phone.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, [json!("B")]);

    let page1 = app.get("/api/v1/contacts?limit=2").await;
    assert_eq!(page1.body["items"].as_array().map(Vec::len), Some(2));
    let cursor = page1.body["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let page2 = app
        .get(&format!("/api/v1/contacts?limit=2&cursor={cursor}"))
        .await;
    let rest: Vec<_> = page2.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(rest, [json!("C")]);
    assert!(page2.body["next_cursor"].is_null());

    let by_name = app.get("/api/v1/contacts?name=A").await;
    assert_eq!(by_name.body["items"].as_array().map(Vec::len), Some(1));
}
