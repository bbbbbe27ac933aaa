//! The behaviour amosync's integration tests already rely on: 204 on empty pages, the `next`
//! link to a 204 page, substring and digits-only phone search, validation errors, non-JSON 429,
//! HTML 403, the bearer check, latency and the webhooks API.

use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test]
async fn a_search_without_matches_answers_204_with_an_empty_body() {
    let amo = FakeAmo::start().await;
    amo.add_contact("Иван Петров", &["+79990001122"]);
    amo.add_lead("Заявка Ивана", &[]);

    for path in [
        "/api/v4/contacts?query=55555",
        "/api/v4/leads?query=nothing",
    ] {
        let resp = get(&amo, path).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{path}");
        assert!(resp.bytes().await.expect("body").is_empty(), "{path}");
    }
    let missing = get(&amo, "/api/v4/contacts/42").await;
    assert_eq!(missing.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_phone_query_also_hits_a_payment_code_note_and_a_formatted_phone() {
    let amo = FakeAmo::start().await;
    let formatted = amo.add_contact("Анна", &["+7 (999) 111-22-33"]);
    let noted = amo.add_contact_with_note("Борис", &["+70000000000"], "Код 89991112233");
    amo.add_contact("Карл", &["+79995550000"]);

    let resp = get(&amo, "/api/v4/contacts?query=9991112233").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(content_type(&resp), "application/hal+json");
    let page = json_of(resp).await;
    assert_eq!(ids(&page, "contacts"), vec![formatted, noted]);
    let note = &page["_embedded"]["contacts"][1]["custom_fields_values"][1];
    assert_eq!(note["field_code"], Value::Null);
    assert_eq!(note["values"][0]["value"], "Код 89991112233");
    let upper = json_of(get(&amo, "/api/v4/contacts?query=%D0%B0%D0%9D%D0%BD").await).await;
    assert_eq!(ids(&upper, "contacts"), vec![formatted], "case-insensitive");
}

#[tokio::test]
async fn a_full_last_page_links_next_and_that_page_answers_204() {
    let amo = FakeAmo::start().await;
    for i in 0..4 {
        amo.add_contact(&format!("Client {i}"), &[]);
    }
    let first = json_of(get(&amo, "/api/v4/contacts?query=client&limit=2").await).await;
    assert_eq!(first["_page"], 1);
    assert_eq!(first.get("_total_items"), None);
    let next = first["_links"]["next"]["href"]
        .as_str()
        .expect("next on page 1");
    let second = json_of(get_url(next).await).await;
    assert_eq!(second["_page"], 2);
    assert_eq!(ids(&second, "contacts").len(), 2);
    let quirk = second["_links"]["next"]["href"]
        .as_str()
        .expect("quirky next");
    let third = get_url(quirk).await;
    assert_eq!(third.status(), StatusCode::NO_CONTENT);
    assert!(third.bytes().await.expect("body").is_empty());

    let partial = json_of(get(&amo, "/api/v4/contacts?limit=3&page=2").await).await;
    assert_eq!(ids(&partial, "contacts").len(), 1);
    assert_eq!(
        partial["_links"].get("next"),
        None,
        "a short page has no next"
    );
}

#[tokio::test]
async fn limit_defaults_to_50_and_is_clamped_to_250() {
    let amo = FakeAmo::start().await;
    for i in 0..260 {
        amo.add_contact(&format!("Bulk {i}"), &[]);
    }
    let default = json_of(get(&amo, "/api/v4/contacts").await).await;
    assert_eq!(ids(&default, "contacts").len(), 50);
    let clamped = json_of(get(&amo, "/api/v4/contacts?limit=1000").await).await;
    assert_eq!(ids(&clamped, "contacts").len(), 250);
}

#[tokio::test]
async fn a_created_contact_echoes_request_id_and_is_listed_afterwards() {
    let amo = FakeAmo::start().await;
    let phone =
        json!([{"field_code": "PHONE", "values": [{"value": "+79990002233", "enum_code": "MOB"}]}]);
    let batch = json!([
        {"name": "Дана", "request_id": "r-1", "custom_fields_values": phone},
        {"name": "Егор"},
    ]);
    let resp = post(&amo, "/api/v4/contacts", batch).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let created = json_of(resp).await;
    let rows = &created["_embedded"]["contacts"];
    assert_eq!(rows[0]["request_id"], "r-1");
    assert_eq!(
        rows[1]["request_id"], "1",
        "the index when no request_id is sent"
    );
    let id = rows[0]["id"].as_i64().expect("id");
    assert!(id > 1_000_000);
    assert_eq!(amo.contact_creates(), 2);

    let listed = json_of(get(&amo, "/api/v4/contacts?query=79990002233").await).await;
    assert_eq!(ids(&listed, "contacts"), vec![id]);
    let one = json_of(get(&amo, &format!("/api/v4/contacts/{id}")).await).await;
    assert_eq!(
        one["custom_fields_values"][0]["values"][0]["enum_code"],
        "MOB"
    );
    assert_eq!(amo.contacts()[0].phones, vec!["+79990002233".to_owned()]);
}

#[tokio::test]
async fn one_invalid_item_fails_the_whole_batch_and_creates_nothing() {
    let amo = FakeAmo::start().await;
    let unknown = json!([{"field_code": "SKYPE", "values": [{"value": "x"}]}]);
    let batch = json!([{"name": "Valid"}, {"name": "Bad", "custom_fields_values": unknown}]);
    let resp = post(&amo, "/api/v4/contacts", batch).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&resp), "application/problem+json");
    let problem = json_of(resp).await;
    let failed = &problem["validation-errors"][0];
    assert_eq!(failed["request_id"], "1");
    assert_eq!(failed["errors"][0]["code"], "NotSupportedChoice");
    assert_eq!(
        failed["errors"][0]["path"],
        "custom_fields_values.0.field_code"
    );

    let bad_enum =
        json!([{"field_code": "PHONE", "values": [{"value": "1", "enum_code": "CELL"}]}]);
    let resp = post(
        &amo,
        "/api/v4/contacts",
        json!([{"name": "X", "custom_fields_values": bad_enum}]),
    )
    .await;
    let path = &json_of(resp).await["validation-errors"][0]["errors"][0]["path"];
    assert_eq!(path, "custom_fields_values.0.values.0.enum_code");
    let not_array = post(&amo, "/api/v4/contacts", json!({"name": "Solo"})).await;
    assert_eq!(not_array.status(), StatusCode::BAD_REQUEST);
    assert!(amo.contacts().is_empty());
    assert_eq!(amo.contact_creates(), 0);
}

#[tokio::test]
async fn a_lead_links_existing_contacts_and_rejects_unknown_ones() {
    let amo = FakeAmo::start().await;
    let (first, main) = (
        amo.add_contact("Первый", &[]),
        amo.add_contact("Главный", &[]),
    );
    let contacts = json!({"contacts": [{"id": first}, {"id": main, "is_main": true}]});
    let resp = post(
        &amo,
        "/api/v4/leads",
        json!([{"name": "Сделка", "price": 1500, "_embedded": contacts}]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        json_of(resp).await["_embedded"]["leads"][0]["request_id"],
        "0"
    );

    let listed = json_of(
        get(
            &amo,
            "/api/v4/leads?query=%D0%A1%D0%94%D0%95%D0%9B&with=contacts",
        )
        .await,
    )
    .await;
    let lead = &listed["_embedded"]["leads"][0];
    assert_eq!(
        (lead["status_id"].as_i64(), lead["price"].as_i64()),
        (Some(10101), Some(1500))
    );
    assert_eq!(
        lead["_embedded"]["contacts"][0],
        json!({"id": main, "is_main": true,
        "_links": {"self": {"href": format!("{}/api/v4/contacts/{main}", amo.base_url())}}})
    );
    let plain = json_of(get(&amo, "/api/v4/leads").await).await;
    assert_eq!(
        plain["_embedded"]["leads"][0]["_embedded"].get("contacts"),
        None
    );

    let unknown = json!({"contacts": [{"id": 999}]});
    let resp = post(
        &amo,
        "/api/v4/leads",
        json!([{"name": "Ghost", "_embedded": unknown}]),
    )
    .await;
    let path = &json_of(resp).await["validation-errors"][0]["errors"][0]["path"];
    assert_eq!(path, "_embedded.contacts.0.id");
    assert_eq!(
        (amo.lead_creates(), amo.leads()[0].contact_ids.clone()),
        (1, vec![main, first])
    );
}

#[tokio::test]
async fn a_rate_limited_answer_is_not_json_and_creates_nothing() {
    let amo = FakeAmo::start().await;
    amo.fail_with(Some(429));
    let resp = post(&amo, "/api/v4/contacts", json!([{"name": "Later"}])).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!content_type(&resp).contains("json"));
    let body = resp.text().await.expect("text body");
    assert!(
        !body.is_empty() && serde_json::from_str::<Value>(&body).is_err(),
        "{body}"
    );

    amo.fail_with(Some(403));
    let blocked = get(&amo, "/api/v4/contacts").await;
    assert_eq!(blocked.status(), StatusCode::FORBIDDEN);
    assert!(blocked.text().await.expect("html").contains("nginx"));
    amo.fail_with(None);
    assert_eq!(
        get(&amo, "/api/v4/contacts").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!((amo.contact_creates(), amo.requests()), (0, 3));
}

#[tokio::test]
async fn every_api_call_needs_the_bearer_token() {
    let amo = FakeAmo::start().await;
    let url = format!("{}/api/v4/contacts", amo.base_url());
    let client = reqwest::Client::new();
    let anonymous = client.get(&url).send().await.expect("GET");
    let wrong = client
        .get(&url)
        .bearer_auth("stolen")
        .send()
        .await
        .expect("GET");
    for resp in [anonymous, wrong] {
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(content_type(&resp), "application/problem+json");
        let problem = json_of(resp).await;
        assert_eq!(problem["detail"], "Неверный логин или пароль");
        assert_eq!(problem["type"], "https://httpstatus.es/401");
    }
    let posted = client
        .post(&url)
        .json(&json!([{"name": "Nope"}]))
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(amo.contact_creates(), 0);
    let lost = get(&amo, "/api/v4/unknown").await;
    assert_eq!(lost.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(&lost), "application/problem+json");
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let amo = FakeAmo::start().await;
    let latency = Duration::from_millis(300);
    amo.set_latency(latency);
    let started = Instant::now();
    let resp = get(&amo, "/api/v4/contacts").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
}

#[tokio::test]
async fn webhooks_are_listed_added_validated_and_deleted() {
    let amo = FakeAmo::start().await;
    assert_eq!(
        get(&amo, "/api/v4/webhooks").await.status(),
        StatusCode::NO_CONTENT
    );
    let bad = json!({"destination": "ftp://example.com/hook", "settings": ["add_contact"]});
    let resp = post(&amo, "/api/v4/webhooks", bad).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let error = &json_of(resp).await["validation-errors"][0]["errors"][0];
    assert_eq!(
        (&error["path"], &error["detail"]),
        (&json!("destination.destination"), &json!("Invalid URL"))
    );

    let dest = "https://example.com/amo/hook?secret=s3";
    let hook = json!({"destination": dest, "settings": ["add_contact", "update_lead"]});
    let created = json_of(post(&amo, "/api/v4/webhooks", hook).await).await;
    assert_eq!(
        (&created["destination"], &created["disabled"]),
        (&json!(dest), &json!(false))
    );
    assert!(created["id"].is_i64(), "the object sits at the root");
    let listed = json_of(get(&amo, "/api/v4/webhooks").await).await;
    assert_eq!(listed["_total_items"], 1);
    assert_eq!(
        amo.webhooks(),
        vec![(
            dest.to_owned(),
            vec!["add_contact".into(), "update_lead".into()]
        )]
    );

    let resp = send(
        &amo,
        reqwest::Method::DELETE,
        "/api/v4/webhooks",
        json!({"destination": dest}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(amo.webhooks().is_empty());
}

#[tokio::test]
async fn dropping_the_fake_stops_the_server() {
    let amo = FakeAmo::start().await;
    let url = format!("{}/api/v4/contacts", amo.base_url());
    assert_eq!(get_url(&url).await.status(), StatusCode::NO_CONTENT);
    drop(amo);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    assert!(
        client.get(&url).send().await.is_err(),
        "still serving after drop"
    );
}
