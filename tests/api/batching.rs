//! Records waiting together reach AmoCRM together: one `POST /contacts` for many
//! contacts, and a lead with its new contact in one `leads/complex` item.

use serde_json::json;

use crate::helpers::{spawn_app, TestApp};

#[tokio::test]
async fn contacts_queued_during_an_outage_are_created_in_a_few_batch_requests() {
    let app = TestApp::builder()
        .env(|env| {
            env.insert("SYNC_MAX_ATTEMPTS".into(), "1000".into());
        })
        .spawn()
        .await;
    app.amo.fail_with(Some(503));
    let app = &app;
    let posts = (0..60).map(|i| async move {
        let body = json!({"name": format!("Пачка {i}"), "phone": format!("+7916777{i:04}")});
        app.post("/api/v1/contacts", &body).await.status
    });
    let statuses = futures::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    let before = app.amo.create_requests();
    app.amo.fail_with(None);

    app.wait_for(
        "SELECT COUNT(*) AS n FROM contacts WHERE sync_status = 'synced'",
        60,
    )
    .await;
    assert_eq!(app.amo.contact_creates(), 60, "each contact created once");
    let requests = app.amo.create_requests() - before;
    assert!(
        requests <= 6,
        "60 contacts in {requests} create requests: sent in batches, not one by one"
    );
    assert_eq!(app.distinct_amo_phones(), 60, "every phone reached AmoCRM");
}

#[tokio::test]
async fn a_queued_lead_and_its_new_contact_reach_amocrm_linked_to_each_other() {
    let app = TestApp::builder()
        .env(|env| {
            env.insert("SYNC_MAX_ATTEMPTS".into(), "1000".into());
        })
        .spawn()
        .await;
    app.amo.fail_with(Some(503));
    for i in 0..5 {
        let body = json!({"name": format!("Заявка {i}"), "price": 100 * i,
            "contact": {"name": format!("Клиент {i}"), "phone": format!("+7916555{i:04}")}});
        let reply = app.post("/api/v1/leads", &body).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    app.amo.fail_with(None);

    app.wait_for(
        "SELECT COUNT(*) AS n FROM leads WHERE sync_status = 'synced'",
        5,
    )
    .await;
    app.wait_for(
        "SELECT COUNT(*) AS n FROM contacts WHERE sync_status = 'synced'",
        5,
    )
    .await;
    assert_eq!(
        (app.amo.lead_creates(), app.amo.contact_creates()),
        (5, 5),
        "each lead and contact created once"
    );
    let contacts = app.amo.contacts();
    for lead in app.amo.leads() {
        let i = lead.name.trim_start_matches("Заявка ");
        let linked: Vec<_> = contacts
            .iter()
            .filter(|c| lead.contact_ids.contains(&c.id))
            .collect();
        assert_eq!(linked.len(), 1, "{lead:?}");
        assert_eq!(linked[0].name, format!("Клиент {i}"), "{lead:?}");
    }
    println!("create requests: {}", app.amo.create_requests());
}

#[tokio::test]
async fn new_contacts_posted_together_share_a_create_from_the_first() {
    let app = spawn_app().await;
    app.amo.set_latency(std::time::Duration::from_millis(150));
    let app = &app;
    let posts = (0..20).map(|i| async move {
        let body = json!({"name": format!("Вместе {i}"), "phone": format!("+7916888{i:04}")});
        app.post("/api/v1/contacts", &body).await.status
    });
    let statuses = futures::future::join_all(posts).await;
    assert!(
        statuses.iter().all(|s| matches!(s, 201 | 202)),
        "{statuses:?}"
    );

    app.wait_for(
        "SELECT COUNT(*) AS n FROM contacts WHERE sync_status = 'synced'",
        20,
    )
    .await;
    assert_eq!(app.amo.contact_creates(), 20);
    let requests = app.amo.create_requests();
    assert!(
        requests <= 3,
        "20 contacts posted together took {requests} create requests"
    );
}
