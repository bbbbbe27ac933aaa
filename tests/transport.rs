//! `HttpAmoTransport` against an in-process AmoCRM double (wiremock): what goes on the
//! wire, and how each documented AmoCRM answer maps to a result or an `AmoError`; and,
//! against the fake AmoCRM's strict one-second window, that its own limiter earns no 429.

use std::time::Duration;

use amosync::amo::{
    AmoAccess, AmoClientConfig, AmoError, AmoTransport, HttpAmoTransport, NewAmoContact, NewAmoLead,
};
use amosync::domain::{CatalogueEntity, Phone, Region};
use fake_amocrm::{FakeAmo, FakeConfig};
use futures::future::join_all;
use serde_json::{json, Value};
use url::Url;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "test-token-5f1c";

fn transport_at(base: &str, request_timeout: Duration) -> HttpAmoTransport {
    HttpAmoTransport::new(AmoClientConfig {
        base_url: Url::parse(base).expect("test base url"),
        access_token: TOKEN.into(),
        region: Region::default(),
        connect_timeout: Duration::from_secs(2),
        request_timeout,
        max_rps: 0,
        access_probe: Duration::from_secs(1),
    })
    .expect("transport builds")
}

async fn amo() -> (MockServer, HttpAmoTransport) {
    let server = MockServer::start().await;
    let transport = transport_at(&server.uri(), Duration::from_secs(5));
    (server, transport)
}

fn phone() -> Phone {
    Phone::parse("+7 916 123-45-67", Region::default()).expect("test phone")
}

/// A request AmoCRM would accept: our path and method, and the bearer token.
fn authorized(verb: &str, at: &str) -> wiremock::MockBuilder {
    Mock::given(method(verb))
        .and(path(at))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("accept", "application/json"))
}

fn contact(id: i64, name: &str, fields: Value) -> Value {
    json!({"id": id, "name": name, "updated_at": 1_700_000_000, "custom_fields_values": fields,
           "_links": {"self": {"href": "x"}}})
}

fn phones(values: &[&str]) -> Value {
    let values: Vec<Value> = values
        .iter()
        .map(|v| json!({"value": v, "enum_id": 1, "enum_code": "WORK"}))
        .collect();
    json!([{"field_id": 10, "field_name": "Телефон", "field_code": "PHONE",
            "field_type": "multitext", "values": values}])
}

fn page(entity: &str, number: u32, next: bool, items: Vec<Value>) -> Value {
    let mut links = json!({"self": {"href": format!("https://x/api/v4/{entity}?page={number}")}});
    if next {
        links["next"] = json!({"href": format!("https://x/api/v4/{entity}?page={}", number + 1)});
    }
    json!({"_page": number, "_links": links, "_embedded": {entity: items}})
}

async fn only_request(server: &MockServer) -> Request {
    let mut all = server.received_requests().await.expect("recording is on");
    assert_eq!(all.len(), 1, "exactly one request expected");
    all.remove(0)
}

// ---------------------------------------------------------------- contacts

#[tokio::test]
async fn a_phone_search_asks_for_the_national_digits_and_returns_the_real_match() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/contacts")
        .and(query_param("query", "9161234567"))
        .and(query_param("limit", "250"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            "contacts",
            1,
            false,
            vec![contact(41, "Иван", phones(&["8 (916) 123-45-67"]))],
        )))
        .expect(1)
        .mount(&server)
        .await;

    let found = amo.find_contact_by_phone(&phone()).await.expect("search");

    assert_eq!(found.len(), 1);
    assert_eq!((found[0].id, found[0].name.as_str()), (41, "Иван"));
    assert_eq!(found[0].phones, vec!["8 (916) 123-45-67"]);
    assert_eq!(found[0].updated_at, Some(1_700_000_000));
    let sent = only_request(&server).await;
    let agent = sent.headers.get("user-agent").and_then(|v| v.to_str().ok());
    assert!(
        agent.is_some_and(|a| a.starts_with("amosync/")),
        "{agent:?}"
    );
}

#[tokio::test]
async fn an_empty_search_answers_204_and_means_no_contacts() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/contacts")
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    let found = amo
        .find_contact_by_phone(&phone())
        .await
        .expect("204 is no error");

    assert!(found.is_empty());
}

#[tokio::test]
async fn a_next_link_that_leads_to_a_204_ends_the_paging_without_error() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/contacts")
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            "contacts",
            1,
            true,
            vec![contact(1, "A", phones(&["+79161234567"]))],
        )))
        .expect(1)
        .mount(&server)
        .await;
    authorized("GET", "/api/v4/contacts")
        .and(query_param("page", "2"))
        .and(query_param("query", "9161234567"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    let found = amo.find_contact_by_phone(&phone()).await.expect("search");

    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1]);
}

#[tokio::test]
async fn matches_are_collected_across_pages_until_no_next_link_is_announced() {
    let (server, amo) = amo().await;
    for (number, next, id) in [(1, true, 1), (2, false, 2)] {
        authorized("GET", "/api/v4/contacts")
            .and(query_param("page", number.to_string().as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(page(
                "contacts",
                number,
                next,
                vec![contact(id, "A", phones(&["+7 916 123 45 67"]))],
            )))
            .expect(1)
            .mount(&server)
            .await;
    }
    authorized("GET", "/api/v4/contacts")
        .and(query_param("page", "3"))
        .respond_with(ResponseTemplate::new(204))
        .expect(0)
        .mount(&server)
        .await;

    let found = amo.find_contact_by_phone(&phone()).await.expect("search");

    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1, 2]);
}

#[tokio::test]
async fn full_text_hits_on_other_numbers_or_other_fields_are_filtered_out() {
    let (server, amo) = amo().await;
    let other_field = json!([
        {"field_id": 10, "field_code": "PHONE", "field_type": "multitext",
         "values": [{"value": "+7 495 000-00-00", "enum_code": "WORK"}]},
        {"field_id": 20, "field_code": null, "field_name": "Код оплаты", "field_type": "text",
         "values": [{"value": "9161234567"}]},
        {"field_id": 30, "field_code": "UTM", "field_type": "tracking_data", "values": [{"value": {"a": 1}}]}
    ]);
    let hits = vec![
        contact(1, "Neighbour", phones(&["+7 916 123 45 60"])),
        contact(2, "Payment code", other_field),
        contact(3, "No fields", Value::Null),
        contact(4, "Abroad", phones(&["+49 9161 234567"])),
        contact(5, "Real", phones(&["+7 495 000-00-01", "89161234567"])),
    ];
    authorized("GET", "/api/v4/contacts")
        .respond_with(ResponseTemplate::new(200).set_body_json(page("contacts", 1, false, hits)))
        .mount(&server)
        .await;

    let found = amo.find_contact_by_phone(&phone()).await.expect("search");

    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), vec![5]);
}

#[tokio::test]
async fn one_contact_is_read_from_the_bare_object() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/contacts/77")
        .respond_with(ResponseTemplate::new(200).set_body_json(contact(
            77,
            "Пётр",
            phones(&["+79161234567"]),
        )))
        .expect(1)
        .mount(&server)
        .await;

    let found = amo.get_contact(77).await.expect("get").expect("present");

    assert_eq!((found.id, found.name.as_str()), (77, "Пётр"));
    assert_eq!(found.phones, vec!["+79161234567"]);
}

#[tokio::test]
async fn a_missing_contact_is_none_whether_amocrm_answers_204_or_404() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/contacts/1")
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    authorized("GET", "/api/v4/contacts/2")
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"title": "Not Found", "type": "https://httpstatus.es/404", "status": 404, "detail": "Not found"}),
        ))
        .expect(1)
        .mount(&server)
        .await;

    assert_eq!(amo.get_contact(1).await.expect("204 is no error"), None);
    assert_eq!(
        amo.get_contact(2).await.expect("404 is no error here"),
        None
    );
}

#[tokio::test]
async fn creating_a_contact_posts_its_e164_phone_and_returns_the_id_for_our_request_id() {
    let (server, amo) = amo().await;
    authorized("POST", "/api/v4/contacts")
        .and(header("content-type", "application/json"))
        .respond_with(|req: &Request| {
            let sent: Value = req.body_json().unwrap_or_default();
            let ours = sent[0]["request_id"].clone();
            ResponseTemplate::new(200).set_body_json(json!({"_embedded": {"contacts": [
                {"id": 1, "request_id": "someone-else"},
                {"id": 40401635, "request_id": ours, "_links": {}}
            ]}}))
        })
        .expect(1)
        .mount(&server)
        .await;
    let new = NewAmoContact {
        name: "Иван Петров".into(),
        phone: phone(),
    };

    let id = amo.create_contact(&new).await.expect("created");

    assert_eq!(id, 40401635);
    let sent: Value = only_request(&server).await.body_json().expect("json body");
    assert_eq!(
        sent,
        json!([{"name": "Иван Петров", "request_id": "0", "custom_fields_values": [
            {"field_code": "PHONE", "values": [{"value": "+79161234567", "enum_code": "WORK"}]}
        ]}])
    );
}

#[tokio::test]
async fn a_batch_of_contacts_is_one_post_and_each_gets_the_id_echoed_for_its_request_id() {
    let (server, amo) = amo().await;
    authorized("POST", "/api/v4/contacts")
        .respond_with(|req: &Request| {
            let sent: Value = req.body_json().unwrap_or_default();
            // Answered out of order, and without the third item.
            let rid = |i: usize| sent[i]["request_id"].clone();
            ResponseTemplate::new(200).set_body_json(json!({"_embedded": {"contacts": [
                {"id": 502, "request_id": rid(1)}, {"id": 501, "request_id": rid(0)}
            ]}}))
        })
        .expect(1)
        .mount(&server)
        .await;
    let news: Vec<NewAmoContact> = (1..=3)
        .map(|i| NewAmoContact {
            name: format!("Клиент {i}"),
            phone: Phone::parse(&format!("+7916123456{i}"), Region::default()).expect("phone"),
        })
        .collect();

    let ids = amo.create_contacts(&news).await.expect("created");

    assert_eq!(ids, vec![Some(501), Some(502), None]);
    let sent: Value = only_request(&server).await.body_json().expect("json body");
    let sent_ids: Vec<_> = (0..3).map(|i| sent[i]["request_id"].clone()).collect();
    assert_eq!(sent_ids, vec![json!("0"), json!("1"), json!("2")]);
    assert_eq!(
        sent[2]["custom_fields_values"][0]["values"][0]["value"],
        "+79161234563"
    );
}

#[tokio::test]
async fn leads_with_new_contacts_go_to_leads_complex_and_its_bare_array_is_matched_back() {
    let (server, amo) = amo().await;
    authorized("POST", "/api/v4/leads/complex")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 9774767, "contact_id": 12117259, "company_id": null, "request_id": ["1"], "merged": false},
            {"id": 9774766, "contact_id": 12117258, "company_id": null, "request_id": ["0"], "merged": false}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let items: Vec<(NewAmoLead, NewAmoContact)> = (0..2)
        .map(|i| {
            let lead = NewAmoLead {
                name: format!("Сделка {i}"),
                price: Some(1000),
                status_id: None,
                pipeline_id: None,
                contact_id: None,
            };
            let contact = NewAmoContact {
                name: format!("Клиент {i}"),
                phone: Phone::parse(&format!("+7916123450{i}"), Region::default()).expect("phone"),
            };
            (lead, contact)
        })
        .collect();

    let created = amo
        .create_leads_with_contacts(&items)
        .await
        .expect("created");

    let pairs: Vec<_> = created
        .iter()
        .map(|c| c.map(|c| (c.lead_id, c.contact_id)))
        .collect();
    assert_eq!(
        pairs,
        vec![Some((9774766, 12117258)), Some((9774767, 12117259))]
    );
    let sent: Value = only_request(&server).await.body_json().expect("json body");
    assert_eq!(
        sent[1],
        json!({"name": "Сделка 1", "price": 1000, "request_id": "1", "_embedded": {"contacts": [
            {"name": "Клиент 1", "first_name": "Клиент 1", "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": "+79161234501", "enum_code": "WORK"}]}
            ]}
        ]}})
    );
}

#[tokio::test]
async fn a_create_answer_without_our_item_is_an_invalid_response() {
    let (server, amo) = amo().await;
    authorized("POST", "/api/v4/contacts")
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"_embedded": {"contacts": [{"id": 5, "request_id": "not-ours"}]}}),
        ))
        .mount(&server)
        .await;
    let new = NewAmoContact {
        name: "X".into(),
        phone: phone(),
    };

    let err = amo
        .create_contact(&new)
        .await
        .expect_err("no matching item");

    assert!(matches!(err, AmoError::InvalidResponse(_)), "{err:?}");
}

#[tokio::test]
async fn a_400_with_validation_errors_lists_every_issue_with_its_request_id() {
    let (server, amo) = amo().await;
    authorized("POST", "/api/v4/contacts")
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "validation-errors": [{"request_id": "0", "errors": [
                {"code": "NotSupportedChoice", "path": "custom_fields_values.0.field_id",
                 "detail": "The value you selected is not a valid choice."},
                {"code": "InvalidType", "path": "name", "detail": "This value should be of type string."}
            ]}],
            "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400,
            "detail": "Request validation failed"
        })))
        .mount(&server)
        .await;
    let new = NewAmoContact {
        name: "X".into(),
        phone: phone(),
    };

    let err = amo.create_contact(&new).await.expect_err("rejected");

    let AmoError::Validation { issues } = err else {
        panic!("expected Validation, got {err:?}")
    };
    let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, vec!["custom_fields_values.0.field_id", "name"]);
    assert!(issues.iter().all(|i| i.request_id.as_deref() == Some("0")));
    assert_eq!(issues[0].code, "NotSupportedChoice");
}

// ---------------------------------------------------------------- leads

#[tokio::test]
async fn a_lead_search_encodes_the_name_and_keeps_only_exact_names_with_their_contacts() {
    let (server, amo) = amo().await;
    let name = "Заказ №5 & Co + 10%";
    let leads = vec![
        json!({"id": 1, "name": "Заказ №5 & Co + 10% (копия)", "price": 100}),
        json!({"id": 2, "name": "заказ №5 & co + 10%", "price": 100}),
        json!({"id": 3, "name": name, "price": null, "status_id": 142, "pipeline_id": 7,
               "updated_at": 1_700_000_001, "custom_fields_values": null,
               "_embedded": {"contacts": [{"id": 11, "is_main": false}, {"id": 12, "is_main": true}]}}),
    ];
    authorized("GET", "/api/v4/leads")
        .and(query_param("query", name))
        .and(query_param("with", "contacts"))
        .and(query_param("limit", "250"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page("leads", 1, false, leads)))
        .expect(1)
        .mount(&server)
        .await;

    let found = amo.find_lead_by_name(name).await.expect("search");

    assert_eq!(found.len(), 1, "{found:?}");
    let lead = &found[0];
    assert_eq!((lead.id, lead.name.as_str(), lead.price), (3, name, None));
    assert_eq!((lead.status_id, lead.pipeline_id), (Some(142), Some(7)));
    assert_eq!(lead.contact_ids, vec![11, 12]);
    assert_eq!(lead.main_contact_id, Some(12));
    let raw_query = only_request(&server)
        .await
        .url
        .query()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !raw_query.contains("& Co"),
        "the name must be percent-encoded: {raw_query}"
    );
}

#[tokio::test]
async fn an_empty_lead_search_answers_204_and_means_no_leads() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/leads")
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    assert!(amo
        .find_lead_by_name("Nothing")
        .await
        .expect("204 is no error")
        .is_empty());
}

#[tokio::test]
async fn creating_a_lead_links_its_main_contact_and_leaves_out_absent_fields() {
    let (server, amo) = amo().await;
    authorized("POST", "/api/v4/leads")
        .and(header("content-type", "application/json"))
        .respond_with(|req: &Request| {
            let sent: Value = req.body_json().unwrap_or_default();
            ResponseTemplate::new(200).set_body_json(json!({"_embedded": {"leads": [
                {"id": 9774766, "request_id": [sent[0]["request_id"].clone()]}
            ]}}))
        })
        .expect(1)
        .mount(&server)
        .await;
    let new = NewAmoLead {
        name: "Сделка".into(),
        price: Some(1500),
        status_id: None,
        pipeline_id: Some(3),
        contact_id: Some(40401635),
    };

    assert_eq!(amo.create_lead(&new).await.expect("created"), 9774766);

    let sent: Value = only_request(&server).await.body_json().expect("json body");
    let request_id = sent[0]["request_id"]
        .as_str()
        .expect("request_id sent")
        .to_owned();
    assert_eq!(
        sent,
        json!([{"name": "Сделка", "price": 1500, "pipeline_id": 3, "request_id": request_id,
                "_embedded": {"contacts": [{"id": 40401635, "is_main": true}]}}])
    );
}

#[tokio::test]
async fn a_lead_without_a_contact_sends_no_embedded_block() {
    let (server, amo) = amo().await;
    authorized("POST", "/api/v4/leads")
        .respond_with(|req: &Request| {
            let sent: Value = req.body_json().unwrap_or_default();
            let keys: Vec<&str> = sent[0]
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let status = if keys == ["name", "request_id"] {
                200
            } else {
                418
            };
            // AmoCRM echoing no request_id at all: the single item is ours.
            ResponseTemplate::new(status)
                .set_body_json(json!({"_embedded": {"leads": [{"id": 8}]}}))
        })
        .expect(1)
        .mount(&server)
        .await;
    let new = NewAmoLead {
        name: "Bare".into(),
        price: None,
        status_id: None,
        pipeline_id: None,
        contact_id: None,
    };

    assert_eq!(amo.create_lead(&new).await.expect("created"), 8);
}

// ---------------------------------------------------------------- webhooks

#[tokio::test]
async fn webhooks_are_listed_from_the_embedded_list() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/webhooks")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "_total_items": 1,
            "_embedded": {"webhooks": [{"id": 839656, "destination": "https://hook.example/amo",
                "created_at": 1, "updated_at": 2, "account_id": 3, "created_by": 4, "sort": 1,
                "disabled": false, "settings": ["add_contact", "update_lead"]}]}
        })))
        .expect(1)
        .mount(&server)
        .await;

    let hooks = amo.list_webhooks().await.expect("list");

    assert_eq!(hooks.len(), 1);
    assert_eq!(
        (hooks[0].id, hooks[0].destination.as_str()),
        (839656, "https://hook.example/amo")
    );
    assert_eq!(hooks[0].settings, vec!["add_contact", "update_lead"]);
    assert!(!hooks[0].disabled);
}

#[tokio::test]
async fn an_account_without_webhooks_answers_204_and_lists_none() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/webhooks")
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    assert!(amo
        .list_webhooks()
        .await
        .expect("204 is no error")
        .is_empty());
}

#[tokio::test]
async fn subscribing_posts_destination_and_settings_and_reads_the_webhook_at_the_root() {
    let (server, amo) = amo().await;
    let settings = vec!["add_contact".to_owned(), "status_lead".to_owned()];
    authorized("POST", "/api/v4/webhooks")
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({"destination": "https://hook.example/amo?k=1", "settings": settings}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": 5, "destination": "https://hook.example/amo?k=1", "settings": settings,
            "disabled": false, "sort": 1, "account_id": 3
        })))
        .expect(1)
        .mount(&server)
        .await;

    let hook = amo
        .subscribe_webhook("https://hook.example/amo?k=1", &settings)
        .await
        .expect("subscribed");

    assert_eq!((hook.id, hook.settings.clone()), (5, settings));
}

#[tokio::test]
async fn unsubscribing_deletes_by_destination_and_accepts_204() {
    let (server, amo) = amo().await;
    authorized("DELETE", "/api/v4/webhooks")
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({"destination": "https://hook.example/amo"}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    amo.unsubscribe_webhook("https://hook.example/amo")
        .await
        .expect("unsubscribed");
}

// ---------------------------------------------------------------- failures

#[tokio::test]
async fn a_401_problem_json_means_unauthorized() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/contacts")
        .respond_with(ResponseTemplate::new(401).set_body_raw(
            r#"{"title":"Unauthorized","type":"https://httpstatus.es/401","status":401,"detail":"Неверный логин или пароль"}"#,
            "application/problem+json",
        ))
        .mount(&server)
        .await;

    let err = amo.find_contact_by_phone(&phone()).await.expect_err("401");

    assert!(matches!(err, AmoError::Unauthorized), "{err:?}");
}

#[tokio::test]
async fn a_403_html_page_means_forbidden() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/leads")
        .respond_with(ResponseTemplate::new(403).set_body_raw(
            "<html><head><title>403 Forbidden</title></head><body><center>nginx</center></body></html>",
            "text/html",
        ))
        .mount(&server)
        .await;

    let err = amo.find_lead_by_name("Any").await.expect_err("403");

    assert!(matches!(err, AmoError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn a_429_with_a_plain_text_body_is_rate_limited_for_the_retry_after_seconds() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/contacts")
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3")
                .set_body_string("Too Many Requests"),
        )
        .mount(&server)
        .await;

    let err = amo.find_contact_by_phone(&phone()).await.expect_err("429");

    assert!(
        matches!(err, AmoError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_500_and_a_502_are_server_errors_with_their_status() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/contacts/1")
        .respond_with(ResponseTemplate::new(500).set_body_string("oops"))
        .mount(&server)
        .await;
    authorized("GET", "/api/v4/contacts/2")
        .respond_with(
            ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html"),
        )
        .mount(&server)
        .await;

    let first = amo.get_contact(1).await.expect_err("500");
    let second = amo.get_contact(2).await.expect_err("502");

    assert!(
        matches!(first, AmoError::Server { status: 500 }),
        "{first:?}"
    );
    assert!(
        matches!(second, AmoError::Server { status: 502 }),
        "{second:?}"
    );
    assert!(first.is_transient() && second.is_transient());
}

#[tokio::test]
async fn a_404_on_a_list_is_not_found_with_the_problem_detail() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/webhooks")
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"title": "Not Found", "status": 404, "detail": "Custom field not found"}),
        ))
        .mount(&server)
        .await;

    let err = amo.list_webhooks().await.expect_err("404");

    assert!(
        matches!(&err, AmoError::NotFound { detail } if detail == "Custom field not found"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_200_with_a_body_that_is_not_the_promised_json_is_an_invalid_response() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/contacts")
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("<html>maintenance</html>", "text/html"),
        )
        .mount(&server)
        .await;

    let err = amo
        .find_contact_by_phone(&phone())
        .await
        .expect_err("bad body");

    assert!(matches!(err, AmoError::InvalidResponse(_)), "{err:?}");
}

#[tokio::test]
async fn an_answer_slower_than_the_request_timeout_is_a_timeout() {
    let server = MockServer::start().await;
    let amo = transport_at(&server.uri(), Duration::from_millis(200));
    authorized("GET", "/api/v4/contacts/1")
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;

    let err = amo.get_contact(1).await.expect_err("too slow");

    assert!(matches!(err, AmoError::Timeout), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_network_error_that_does_not_mention_the_token() {
    // A port that was just free: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let amo = transport_at(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2));

    let err = amo.list_webhooks().await.expect_err("nothing listens");

    assert!(matches!(err, AmoError::Network(_)), "{err:?}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_and_no_trailing_slash_is_kept() {
    let server = MockServer::start().await;
    let amo = transport_at(
        &format!("{}/amo-proxy", server.uri()),
        Duration::from_secs(5),
    );
    authorized("GET", "/amo-proxy/api/v4/webhooks")
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    assert!(amo.list_webhooks().await.expect("prefixed path").is_empty());
}

#[tokio::test]
async fn records_are_read_back_by_id_in_one_filtered_request_per_250() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/leads")
        .and(query_param("with", "contacts"))
        .and(query_param("limit", "250"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "_page": 1, "_links": {"self": {"href": "x"}},
            "_embedded": {"leads": [{"id": 7, "name": "L", "status_id": 142,
                "pipeline_id": 1, "updated_at": 1_700_000_100, "_embedded": {"contacts": []}}]}
        })))
        .mount(&server)
        .await;
    let ids: Vec<i64> = (1..=300).collect();
    let leads = amo.leads_by_ids(&ids).await.expect("read back");
    assert_eq!(
        leads
            .iter()
            .map(|l| (l.id, l.status_id))
            .collect::<Vec<_>>(),
        [(7, Some(142)), (7, Some(142))],
        "one answer per request"
    );
    let requests = server.received_requests().await.unwrap_or_default();
    let asked: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            r.url
                .query_pairs()
                .filter(|(k, _)| k == "filter[id][]")
                .map(|(_, v)| v.into_owned())
                .collect()
        })
        .collect();
    assert_eq!(asked.len(), 2);
    assert_eq!((asked[0].len(), asked[1].len()), (250, 50));
    assert_eq!((asked[0][0].as_str(), asked[1][49].as_str()), ("1", "300"));
}

#[tokio::test]
async fn contacts_none_of_which_amocrm_still_has_answer_204_and_read_as_none() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/contacts")
        .and(query_param("filter[id][]", "5"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    assert_eq!(amo.contacts_by_ids(&[5]).await.expect("204"), vec![]);
}

#[tokio::test]
async fn amosyncs_own_limiter_never_earns_a_429_from_the_strict_window() {
    let amo = FakeAmo::start_with(FakeConfig {
        rps_limit: Some(7),
        ..FakeConfig::default()
    })
    .await;
    let transport = HttpAmoTransport::new(AmoClientConfig {
        base_url: Url::parse(&amo.base_url()).expect("fake url"),
        access_token: FakeAmo::TOKEN.into(),
        region: Region::default(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_rps: 7,
        access_probe: Duration::from_secs(1),
    })
    .expect("transport");
    let phone = phone();
    // Five windows' worth at once, as a burst's searches come.
    let searches = join_all((0..36).map(|_| transport.find_contact_by_phone(&phone))).await;
    assert!(searches.iter().all(Result::is_ok));
    assert_eq!(amo.rate_limited(), 0);
    assert_eq!(amo.max_requests_in_one_second(), 7);
}

// ---------------------------------------------------------------- catalogue

#[tokio::test]
async fn custom_fields_are_read_page_by_page_until_no_next_link() {
    let (server, amo) = amo().await;
    let field = |id: i64| {
        json!({"id": id, "name": format!("F{id}"), "type": "select", "code": null,
        "sort": id, "enums": [{"id": id * 10, "value": "one", "sort": 1}]})
    };
    let path_at = "/api/v4/leads/custom_fields";
    authorized("GET", path_at)
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            "custom_fields",
            1,
            true,
            vec![field(1), field(2)],
        )))
        .mount(&server)
        .await;
    authorized("GET", path_at)
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            "custom_fields",
            2,
            false,
            vec![field(3)],
        )))
        .mount(&server)
        .await;

    let fields = amo
        .custom_fields(CatalogueEntity::Leads)
        .await
        .expect("fields");

    let ids: Vec<i64> = fields.iter().map(|f| f.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert!(fields.iter().all(|f| f.entity == CatalogueEntity::Leads));
    assert_eq!(fields[2].options[0].id, 30);
}

#[tokio::test]
async fn pipelines_come_in_one_answer_with_their_statuses() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/leads/pipelines")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "_total_items": 1,
            "_embedded": {"pipelines": [{"id": 9, "name": "Main", "sort": 1, "is_main": true,
                "is_archive": false, "_embedded": {"statuses": [
                    {"id": 143, "name": "Lost", "sort": 11000, "type": 0},
                    {"id": 70, "name": "Incoming", "sort": 10, "type": 1}]}}]}
        })))
        .mount(&server)
        .await;

    let pipelines = amo.pipelines().await.expect("pipelines");

    assert_eq!(pipelines.len(), 1);
    let ids: Vec<i64> = pipelines[0].statuses.iter().map(|s| s.id).collect();
    assert_eq!(ids, [70, 143]);
    assert!(pipelines[0].statuses[0].is_incoming);
}

#[tokio::test]
async fn users_refused_to_a_non_admin_token_do_not_hold_other_calls_back() {
    let (server, amo) = amo().await;
    authorized("GET", "/api/v4/users")
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "title": "Forbidden", "type": "https://httpstatus.es/403", "status": 403,
            "detail": "Insufficient rights"})))
        .mount(&server)
        .await;
    authorized("GET", "/api/v4/leads/pipelines")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"_total_items": 0, "_embedded": {"pipelines": []}})),
        )
        .mount(&server)
        .await;

    let err = amo.users().await.expect_err("403");
    assert!(matches!(err, AmoError::Forbidden), "{err:?}");

    assert!(matches!(amo.access(), AmoAccess::Ok), "{:?}", amo.access());
    amo.pipelines()
        .await
        .expect("the next call goes out as usual");
}
