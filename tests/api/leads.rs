use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_lead_with_an_inline_contact_is_created_linked_to_that_contact() {
    let app = spawn_app().await;
    let body = json!({"name": "Заказ #1", "price": 1500, "contact": {"name": "Иван", "phone": "+79161234567"}});
    let reply = app.post("/api/v1/leads", &body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["price"], 1500);
    assert_eq!(reply.body["sync_status"], "synced");
    let id = reply.body["id"].as_i64().expect("id");
    assert_eq!(
        reply.location.as_deref(),
        Some(format!("/api/v1/leads/{id}").as_str())
    );

    let contact = app.amo.contacts().pop().expect("contact created in AmoCRM");
    let lead = app.amo.leads().pop().expect("lead created in AmoCRM");
    assert_eq!(lead.contact_ids, [contact.id]);
    assert_eq!(reply.body["amocrm_id"].as_i64(), Some(lead.id));
    let local_contact = reply.body["contact_id"].as_i64().expect("contact_id");
    let contact_reply = app.get(&format!("/api/v1/contacts/{local_contact}")).await;
    assert_eq!(contact_reply.body["amocrm_id"].as_i64(), Some(contact.id));

    let again = app.post("/api/v1/leads", &body).await;
    assert_eq!((again.status, &again.body["id"]), (200, &reply.body["id"]));
    assert_eq!(app.amo.lead_creates(), 1);
}

#[tokio::test]
async fn the_same_name_with_another_contact_is_another_lead() {
    let app = spawn_app().await;
    let a = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "A", "phone": "+79160000001"}),
        )
        .await;
    let b = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "B", "phone": "+79160000002"}),
        )
        .await;
    let first = app
        .post(
            "/api/v1/leads",
            &json!({"name": "Доставка", "contact_id": a.body["id"]}),
        )
        .await;
    let second = app
        .post(
            "/api/v1/leads",
            &json!({"name": "Доставка", "contact_id": b.body["id"]}),
        )
        .await;
    assert_eq!((first.status, second.status), (201, 201));
    assert_ne!(first.body["id"], second.body["id"]);
    assert_eq!(app.amo.lead_creates(), 2);

    let listed = app
        .get(&format!("/api/v1/leads?contact_id={}", b.body["id"]))
        .await;
    let ids: Vec<_> = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| l["id"].clone())
        .collect();
    assert_eq!(ids, [second.body["id"].clone()]);
}

#[tokio::test]
async fn an_amocrm_lead_linked_to_the_contact_is_mirrored_but_one_linked_elsewhere_is_not() {
    let app = spawn_app().await;
    let ours = app.amo.add_contact("Иван", &["+79161234567"]);
    let other = app.amo.add_contact("Пётр", &["+79169999999"]);
    app.amo.add_lead("Ремонт", &[other]);
    let reply = app
        .post(
            "/api/v1/leads",
            &json!({"name": "Ремонт", "contact": {"name": "Иван", "phone": "89161234567"}}),
        )
        .await;
    assert_eq!(
        reply.status, 201,
        "the lead of another contact is not ours: {}",
        reply.body
    );

    let existing = app.amo.add_lead("Кухня", &[ours]);
    let reply = app
        .post(
            "/api/v1/leads",
            &json!({"name": "Кухня", "contact": {"name": "Иван", "phone": "89161234567"}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["amocrm_id"].as_i64(), Some(existing));
    assert_eq!(app.amo.lead_creates(), 1);
}

#[tokio::test]
async fn lead_names_are_compared_exactly() {
    let app = spawn_app().await;
    app.amo.add_lead("Заказ 10", &[]);
    app.amo.add_lead("заказ 1", &[]);
    let reply = app.post("/api/v1/leads", &json!({"name": "Заказ 1"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let lower = app.post("/api/v1/leads", &json!({"name": "заказ 1"})).await;
    assert_eq!(
        lower.status, 200,
        "the AmoCRM lead with this exact name is taken: {}",
        lower.body
    );
    assert_ne!(lower.body["id"], reply.body["id"]);
}

#[tokio::test]
async fn twenty_concurrent_identical_leads_create_one_lead() {
    let app = spawn_app().await;
    app.amo.set_latency(Duration::from_millis(200));
    let body =
        json!({"name": "Большой заказ", "contact": {"name": "Иван", "phone": "+79161234567"}});
    let replies =
        futures::future::join_all((0..20).map(|_| app.post("/api/v1/leads", &body))).await;
    for reply in &replies {
        assert!(
            matches!(reply.status, 200 | 201),
            "{} {}",
            reply.status,
            reply.body
        );
        assert_eq!(reply.body["id"], replies[0].body["id"]);
    }
    assert_eq!(app.amo.lead_creates(), 1);
    assert_eq!(app.amo.contact_creates(), 1);
    assert_eq!(app.count("leads"), 1);
    assert_eq!(app.count("contacts"), 1);
}

#[tokio::test]
async fn whole_numbers_written_as_floats_are_integers() {
    let app = spawn_app().await;
    let reply = app
        .post("/api/v1/leads", &json!({"name": "Заказ", "price": 1500.0}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["price"], 1500);
    assert_eq!(
        app.post(
            "/api/v1/leads",
            &json!({"name": "Заказ 2", "price": 1500.5})
        )
        .await
        .wrong_fields(),
        ["price"]
    );
}

#[tokio::test]
async fn contact_references_are_checked() {
    let app = spawn_app().await;
    assert_eq!(
        app.post("/api/v1/leads", &json!({"name": "X", "contact_id": 999}))
            .await
            .wrong_fields(),
        ["contact_id"]
    );
    let both =
        json!({"name": "X", "contact_id": 1, "contact": {"name": "A", "phone": "+79160000001"}});
    assert_eq!(
        app.post("/api/v1/leads", &both).await.wrong_fields(),
        ["contact"]
    );
    assert_eq!(app.count("leads"), 0);
}

#[tokio::test]
async fn a_pending_contact_is_finished_before_its_lead_is_created() {
    let app = spawn_app().await;
    app.amo.fail_with(Some(500));
    let contact = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван", "phone": "+79161234567"}),
        )
        .await;
    assert_eq!(contact.status, 202);
    let pending_id = contact.body["id"].clone();
    app.amo.fail_with(None);
    let lead = app
        .post(
            "/api/v1/leads",
            &json!({"name": "Заказ", "contact_id": pending_id}),
        )
        .await;
    assert_eq!(lead.status, 201, "{}", lead.body);
    let amo_contact = app.amo.contacts().pop().expect("contact created");
    assert_eq!(
        app.amo.leads().pop().map(|l| l.contact_ids),
        Some(vec![amo_contact.id])
    );
}

#[tokio::test]
async fn a_lead_waits_in_the_queue_behind_its_contact_while_amocrm_is_down() {
    let app = spawn_app().await;
    app.amo.fail_with(Some(503));
    let body =
        json!({"name": "Заказ в очереди", "contact": {"name": "Иван", "phone": "+79161234567"}});
    let reply = app.post("/api/v1/leads", &body).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["sync_status"], "pending");
    assert!(
        reply.body["contact_id"].as_i64().is_some(),
        "linked locally to the pending contact"
    );

    app.amo.fail_with(None);
    let path = format!("/api/v1/leads/{}", reply.body["id"]);
    let synced = app
        .eventually(&path, |r| r.body["sync_status"] == "synced")
        .await;
    let contact = app.amo.contacts().pop().expect("contact reached AmoCRM");
    let lead = app.amo.leads().pop().expect("lead reached AmoCRM");
    assert_eq!(
        lead.contact_ids,
        [contact.id],
        "created after its contact, and linked to it"
    );
    assert_eq!(synced.body["amocrm_id"].as_i64(), Some(lead.id));
    assert_eq!((app.amo.contact_creates(), app.amo.lead_creates()), (1, 1));
}
