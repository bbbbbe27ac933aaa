//! The wider API surface: complex leads, PATCH, filters and order, links, single leads.

use crate::helpers::*;

fn phone(value: &str) -> Value {
    json!([{"field_code": "PHONE", "values": [{"value": value, "enum_code": "MOB"}]}])
}

async fn updated_at(amo: &FakeAmo, entity: &str, id: i64) -> i64 {
    let one = json_of(get(amo, &format!("/api/v4/{entity}/{id}")).await).await;
    one["updated_at"].as_i64().expect("updated_at")
}

#[tokio::test]
async fn a_complex_lead_creates_its_contact_and_links_them() {
    let amo = FakeAmo::start().await;
    let known = amo.add_contact("Старый клиент", &["+79160000001"]);
    let new_contact = json!({"first_name": "Нина", "last_name": "Орлова",
        "custom_fields_values": phone("+7 916 555-44-33")});
    let batch = json!([
        {"name": "Заявка с сайта", "price": 900, "request_id": "r1",
            "_embedded": {"contacts": [new_contact]}},
        {"name": "Повторная", "_embedded": {"contacts": [{"id": known}]}},
    ]);
    let resp = post(&amo, "/api/v4/leads/complex", batch).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let rows = json_of(resp).await;
    let rows = rows.as_array().expect("a bare array");
    assert_eq!(
        (rows[0]["request_id"].clone(), rows[0]["merged"].clone()),
        (json!(["r1"]), json!(false))
    );
    assert_eq!(
        (&rows[0]["company_id"], &rows[1]["contact_id"]),
        (&Value::Null, &json!(known))
    );
    let (lead, contact) = (
        rows[0]["id"].as_i64().expect("id"),
        rows[0]["contact_id"].as_i64().expect("contact"),
    );

    let created = amo
        .contacts()
        .into_iter()
        .find(|c| c.id == contact)
        .expect("contact");
    assert_eq!(
        (created.name.as_str(), created.phones.clone()),
        ("Нина Орлова", vec!["+7 916 555-44-33".to_owned()])
    );
    let one = json_of(get(&amo, &format!("/api/v4/leads/{lead}?with=contacts")).await).await;
    assert_eq!(
        (&one["id"], &one["price"]),
        (&json!(lead), &json!(900)),
        "a bare lead"
    );
    assert_eq!(one["_embedded"]["contacts"][0]["id"], contact);
    assert_eq!(one["_embedded"]["contacts"][0]["is_main"], true);
    let back = json_of(get(&amo, &format!("/api/v4/contacts/{contact}?with=leads")).await).await;
    assert_eq!(back["_embedded"]["leads"][0]["id"], lead);
    assert_eq!((amo.contact_creates(), amo.lead_creates()), (1, 2));

    let two = json!([{"name": "X", "_embedded": {"contacts": [{"id": known}, {"id": contact}]}}]);
    let resp = post(&amo, "/api/v4/leads/complex", two).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let too_many: Vec<Value> = (0..51).map(|i| json!({"name": format!("L{i}")})).collect();
    let resp = post(&amo, "/api/v4/leads/complex", Value::Array(too_many)).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(amo.leads().len(), 2, "rejected batches create nothing");
    assert_eq!(
        get(&amo, "/api/v4/leads/999").await.status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn every_patch_moves_updated_at_strictly_forward() {
    let amo = FakeAmo::start().await;
    let id = amo.add_contact("Было", &["+79160000002"]);
    let created = updated_at(&amo, "contacts", id).await;

    let single = patch(
        &amo,
        &format!("/api/v4/contacts/{id}"),
        json!({"name": "Стало"}),
    )
    .await;
    assert_eq!(single.status(), StatusCode::OK);
    let first = json_of(single).await["updated_at"]
        .as_i64()
        .expect("updated_at at the root");
    let batch = json!([{"id": id, "custom_fields_values": phone("+79160000003")}]);
    let second = json_of(patch(&amo, "/api/v4/contacts", batch).await).await;
    let second = second["_embedded"]["contacts"][0]["updated_at"]
        .as_i64()
        .expect("updated_at");
    assert!(
        created < first && first < second,
        "{created} < {first} < {second}"
    );
    assert_eq!(updated_at(&amo, "contacts", id).await, second);
    let now = amo.contacts().pop().expect("contact");
    assert_eq!(
        (now.name.as_str(), now.phones),
        ("Стало", vec!["+79160000003".to_owned()])
    );

    let lead = amo.add_lead("Сделка", &[id]);
    let before = updated_at(&amo, "leads", lead).await;
    let batch = json!([{"id": lead, "status_id": 142, "price": 5000}]);
    let moved = json_of(patch(&amo, "/api/v4/leads", batch).await).await;
    assert!(
        moved["_embedded"]["leads"][0]["updated_at"]
            .as_i64()
            .expect("updated_at")
            > before
    );
    let stored = amo.leads().pop().expect("lead");
    assert_eq!((stored.status_id, stored.price), (142, Some(5000)));

    let unknown = patch(&amo, "/api/v4/contacts", json!([{"id": 42, "name": "?"}])).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let path = &json_of(unknown).await["validation-errors"][0]["errors"][0]["path"];
    assert_eq!(path, "id");
}

#[tokio::test]
async fn filters_by_id_and_updated_at_and_orders_by_updated_at() {
    let amo = FakeAmo::start().await;
    let [a, b, c] = ["А", "Б", "В"].map(|name| amo.add_contact(name, &[]));
    let both = json_of(
        get(
            &amo,
            &format!("/api/v4/contacts?filter[id][]={a}&filter[id][]={c}"),
        )
        .await,
    )
    .await;
    assert_eq!(ids(&both, "contacts"), vec![a, c]);

    for name in ["Б1", "Б2"] {
        patch(
            &amo,
            &format!("/api/v4/contacts/{b}"),
            json!({"name": name}),
        )
        .await;
    }
    let since = updated_at(&amo, "contacts", b).await;
    assert!(since > updated_at(&amo, "contacts", a).await);
    let changed = get(
        &amo,
        &format!("/api/v4/contacts?filter[updated_at][from]={since}"),
    )
    .await;
    assert_eq!(ids(&json_of(changed).await, "contacts"), vec![b]);
    let newest = get(&amo, "/api/v4/contacts?order[updated_at]=desc").await;
    assert_eq!(ids(&json_of(newest).await, "contacts")[0], b);
    let later = get(
        &amo,
        &format!("/api/v4/contacts?filter[updated_at][from]={}", since + 1),
    )
    .await;
    assert_eq!(later.status(), StatusCode::NO_CONTENT);

    let [x, y] = ["X", "Y"].map(|name| amo.add_lead(name, &[]));
    amo.update_lead_status(y, 143);
    let price = LeadPatch {
        price: Some(700),
        ..LeadPatch::default()
    };
    assert!(amo.update_lead(y, price));
    let from = updated_at(&amo, "leads", y).await;
    let leads = get(
        &amo,
        &format!("/api/v4/leads?filter[updated_at][from]={from}&order[updated_at]=asc"),
    )
    .await;
    assert_eq!(ids(&json_of(leads).await, "leads"), vec![y]);
    let by_id = get(&amo, &format!("/api/v4/leads?filter[id][]={x}")).await;
    assert_eq!(ids(&json_of(by_id).await, "leads"), vec![x]);
    let bad = get(&amo, "/api/v4/leads?filter[id][]=abc").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn contacts_are_linked_listed_and_unlinked() {
    let amo = FakeAmo::start().await;
    let (first, second) = (
        amo.add_contact("Первый", &[]),
        amo.add_contact("Второй", &[]),
    );
    let lead = amo.add_lead("Сделка", &[first]);
    let link = json!([{"to_entity_id": second, "to_entity_type": "contacts", "metadata": {"is_main": true}}]);
    let resp = post(&amo, &format!("/api/v4/leads/{lead}/link"), link.clone()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let made = &json_of(resp).await["_embedded"]["links"][0];
    assert_eq!(
        (&made["entity_id"], &made["to_entity_id"]),
        (&json!(lead), &json!(second))
    );
    assert_eq!(
        amo.leads()[0].contact_ids,
        vec![second, first],
        "the main contact first"
    );
    let listed = json_of(get(&amo, &format!("/api/v4/leads/{lead}/links")).await).await;
    assert_eq!(
        listed["_embedded"]["links"].as_array().map(Vec::len),
        Some(2)
    );

    let unlinked = post(&amo, &format!("/api/v4/leads/{lead}/unlink"), link).await;
    assert_eq!(unlinked.status(), StatusCode::NO_CONTENT);
    assert_eq!(amo.leads()[0].contact_ids, vec![first]);
    let ghost = json!([{"to_entity_id": 1, "to_entity_type": "contacts"}]);
    let resp = post(&amo, &format!("/api/v4/leads/{lead}/link"), ghost).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
