//! The AmoCRM account's catalogue: read from the fake at start and every
//! `CATALOGUE_REFRESH_SECS`, stored, and served by `GET /api/v1/amocrm/fields` and
//! `GET /api/v1/amocrm/pipelines`.

use serde_json::Value;

use crate::helpers::{spawn_app, TestApp, TestAppBuilder};

fn refreshing_every(secs: &'static str) -> TestAppBuilder<'static> {
    TestApp::builder().env(move |env| {
        env.insert("CATALOGUE_REFRESH_SECS".into(), secs.into());
    })
}

fn items(body: &Value) -> &Vec<Value> {
    body["items"].as_array().expect("items")
}

fn by_code<'a>(body: &'a Value, code: &str) -> Option<&'a Value> {
    items(body).iter().find(|f| f["code"] == code)
}

#[tokio::test]
async fn the_catalogue_is_read_at_start_and_fields_are_served_by_entity_with_their_options() {
    let app = refreshing_every("3600").spawn().await;
    let all = app
        .eventually("/api/v1/amocrm/fields", |r| {
            r.status == 200 && !r.body["refreshed_at"].is_null()
        })
        .await;
    let entities: Vec<&str> = items(&all.body)
        .iter()
        .map(|f| f["entity"].as_str().expect("entity"))
        .collect();
    for entity in ["contacts", "leads", "companies"] {
        assert!(
            entities.contains(&entity),
            "no {entity} fields: {entities:?}"
        );
    }

    let leads = app.get("/api/v1/amocrm/fields?entity=leads").await;
    assert_eq!(leads.status, 200, "{}", leads.body);
    assert!(items(&leads.body).iter().all(|f| f["entity"] == "leads"));
    let utm = by_code(&leads.body, "UTM_SOURCE").expect("the UTM_SOURCE field");
    assert_eq!(utm["type"], "tracking_data");
    let select = items(&leads.body)
        .iter()
        .find(|f| f["type"] == "select")
        .expect("a select field");
    assert_eq!(select["code"], Value::Null);
    let options: Vec<(i64, &str)> = select["options"]
        .as_array()
        .expect("options")
        .iter()
        .map(|o| {
            (
                o["id"].as_i64().expect("id"),
                o["value"].as_str().expect("value"),
            )
        })
        .collect();
    assert_eq!(options, [(261, "Звонок"), (262, "Форма"), (263, "Чат")]);
    assert!(items(&leads.body).iter().any(|f| f["type"] == "date"));

    let contacts = app.get("/api/v1/amocrm/fields?entity=contacts").await;
    let phone = by_code(&contacts.body, "PHONE").expect("PHONE");
    assert_eq!(phone["type"], "multitext");
    assert_eq!(phone["options"][0]["value"], "WORK");
    assert_eq!(phone["options"][0]["id"], 222);
    let users = app.count("amo_users");
    assert_eq!(users, 2, "users are stored too");
}

#[tokio::test]
async fn pipelines_are_served_with_their_statuses_in_order() {
    let app = refreshing_every("3600").spawn().await;
    let reply = app
        .eventually("/api/v1/amocrm/pipelines", |r| {
            r.status == 200 && !items(&r.body).is_empty()
        })
        .await;
    let pipelines = items(&reply.body);
    assert_eq!(pipelines.len(), 2);
    assert_eq!(pipelines[0]["is_main"], true);
    assert_eq!(pipelines[1]["is_main"], false);
    for pipeline in pipelines {
        let statuses = pipeline["statuses"].as_array().expect("statuses");
        assert_eq!(statuses[0]["is_incoming"], true, "the incoming stage first");
        let ids: Vec<i64> = statuses
            .iter()
            .map(|s| s["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(&ids[ids.len() - 2..], [142, 143], "{ids:?}");
    }
    assert!(!reply.body["refreshed_at"].is_null());
}

#[tokio::test]
async fn a_refresh_replaces_the_stored_fields_whole() {
    let app = refreshing_every("1").spawn().await;
    app.eventually("/api/v1/amocrm/fields?entity=contacts", |r| {
        r.status == 200 && by_code(&r.body, "PHONE").is_some()
    })
    .await;
    let added = app.amo.add_custom_field("contacts", "Город", "text");
    assert!(app.amo.remove_custom_field(113), "POSITION was seeded");
    let reply = app
        .eventually("/api/v1/amocrm/fields?entity=contacts", |r| {
            items(&r.body).iter().any(|f| f["id"] == added)
        })
        .await;
    assert!(
        by_code(&reply.body, "POSITION").is_none(),
        "a field deleted in AmoCRM is gone: {}",
        reply.body
    );
}

#[tokio::test]
async fn before_the_first_refresh_the_lists_are_empty_and_say_so() {
    let app = spawn_app().await;
    let fields = app.get("/api/v1/amocrm/fields").await;
    assert_eq!(fields.status, 200);
    assert!(items(&fields.body).is_empty());
    assert!(fields.body["refreshed_at"].is_null());
    let pipelines = app.get("/api/v1/amocrm/pipelines").await;
    assert_eq!(pipelines.status, 200);
    assert!(pipelines.body["refreshed_at"].is_null());
}

#[tokio::test]
async fn an_unknown_entity_is_a_422_that_names_the_field() {
    let app = spawn_app().await;
    let reply = app.get("/api/v1/amocrm/fields?entity=customers").await;
    assert_eq!(reply.problem_code(), "validation_failed");
    assert_eq!(reply.wrong_fields(), ["entity"]);
}

#[tokio::test]
async fn reading_the_catalogue_needs_a_token() {
    let app = spawn_app().await;
    for path in ["/api/v1/amocrm/fields", "/api/v1/amocrm/pipelines"] {
        let reply = app.send(app.client.get(app.url(path))).await;
        assert_eq!(reply.status, 401, "{path}");
    }
}

#[tokio::test]
async fn users_refused_by_amocrm_keep_the_stored_users_while_the_rest_is_refreshed() {
    let app = refreshing_every("1").spawn().await;
    app.wait_for("SELECT COUNT(*) AS n FROM amo_users", 2).await;
    app.amo.forbid_users(true);
    let added = app.amo.add_custom_field("leads", "Промокод", "text");
    app.eventually("/api/v1/amocrm/fields?entity=leads", |r| {
        items(&r.body).iter().any(|f| f["id"] == added)
    })
    .await;
    assert_eq!(app.count("amo_users"), 2, "the stored users stay");
    let access = app.get("/ready").await;
    assert_eq!(access.body["amocrm"]["state"], "ok", "{}", access.body);
}
