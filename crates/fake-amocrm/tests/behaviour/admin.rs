//! The `/_fake/` operator routes: they need no bearer and fire the same webhooks as the API.

use std::time::{Duration, Instant};

use crate::helpers::*;

async fn admin(amo: &FakeAmo, method: reqwest::Method, path: &str, body: Value) -> Response {
    let url = format!("{}/_fake/{path}", amo.base_url());
    let req = reqwest::Client::new().request(method, url).json(&body);
    req.send().await.expect("call an admin route")
}

#[tokio::test]
async fn operator_changes_fire_webhooks_and_show_in_the_state() {
    let amo = FakeAmo::start().await;
    let hook = Receiver::start(200).await;
    subscribe(
        &amo,
        &hook.url,
        &["add_contact", "status_lead", "delete_lead"],
    )
    .await;
    let post = reqwest::Method::POST;

    let body = json!({"name": "Оператор", "phones": ["+79160001122"]});
    let created = admin(&amo, post.clone(), "contacts", body).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let contact = json_of(created).await["id"].as_i64().expect("id");
    let added = form(&hook.wait_for(1).await[0].body);
    assert_eq!(
        field(&added, "contacts[add][0][id]"),
        Some(contact.to_string().as_str())
    );

    let body = json!({"name": "Сделка", "price": 100, "contact_ids": [contact]});
    let lead = json_of(admin(&amo, post.clone(), "leads", body).await).await["id"]
        .as_i64()
        .expect("id");
    let moved = admin(
        &amo,
        reqwest::Method::PATCH,
        &format!("leads/{lead}"),
        json!({"status_id": 142}),
    )
    .await;
    assert_eq!(json_of(moved).await["status_id"], 142);
    let status = form(&hook.wait_for(2).await[1].body);
    assert_eq!(
        field(&status, "leads[status][0][old_status_id]"),
        Some("10101")
    );
    let deleted = admin(
        &amo,
        reqwest::Method::DELETE,
        &format!("leads/{lead}"),
        json!(null),
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = form(&hook.wait_for(3).await[2].body);
    assert_eq!(
        field(&gone, "leads[delete][0][id]"),
        Some(lead.to_string().as_str())
    );
    assert!(amo.leads().is_empty());
    let unknown = admin(
        &amo,
        reqwest::Method::PATCH,
        "contacts/1",
        json!({"name": "?"}),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let bad = admin(
        &amo,
        post.clone(),
        "contacts",
        json!({"phones": "not a list"}),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let state = json_of(admin(&amo, reqwest::Method::GET, "state", json!(null)).await).await;
    assert_eq!(state["contacts"][0]["id"], contact);
    assert_eq!(state["leads"][0]["is_deleted"], true);
    assert_eq!(state["webhooks"][0]["destination"], json!(hook.url));
    assert_eq!(state["counters"]["deliveries"], 3);
    assert_eq!(
        state["counters"]["requests"], 1,
        "only the subscribe call hit /api/v4"
    );
}

#[tokio::test]
async fn operators_inject_failures_and_latency() {
    let amo = FakeAmo::start().await;
    let post = reqwest::Method::POST;
    let set = admin(&amo, post.clone(), "fail", json!({"status": 503})).await;
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get(&amo, "/api/v4/contacts").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    admin(&amo, post.clone(), "fail", json!({"status": null})).await;
    admin(&amo, post.clone(), "latency", json!({"ms": 250})).await;
    let started = Instant::now();
    assert_eq!(
        get(&amo, "/api/v4/contacts").await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
}
