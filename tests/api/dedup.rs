//! `AMO_DEDUP`: with the mirror authoritative (full import, verified webhook, current
//! reconciliation) new contacts reach AmoCRM without phone searches; without it each
//! is searched; and two AmoCRM contacts with one phone are reported by reconciliation.

use std::process::Output;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, API_TOKEN};

const NEW_CONTACTS: usize = 20;

/// Runs the `amosync` binary and expects it to succeed.
fn amosync(app: &TestApp, args: &[&str]) -> Output {
    let out = app.cli(args);
    assert!(
        out.status.success(),
        "amosync {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn subscribe(app: &TestApp) {
    let reply = app
        .send(
            app.client
                .post(app.url("/api/v1/amocrm/webhooks"))
                .bearer_auth(API_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

/// Reconciliation every 5 s: its facts stay fresh (10 s) through the test.
async fn app_reconciling_every_5s() -> TestApp {
    TestApp::builder()
        .env(|env| {
            env.insert("RECONCILE_INTERVAL_SECS".into(), "5".into());
        })
        .spawn()
        .await
}

async fn wait_until_reconciled(app: &TestApp) {
    app.wait_for(
        "SELECT COUNT(*) AS n FROM mirror_facts WHERE name = 'reconciled'",
        1,
    )
    .await;
}

/// Posts `NEW_CONTACTS` new phones at once and waits until every one is synced.
async fn post_new_contacts(app: &TestApp) {
    let posts = (0..NEW_CONTACTS).map(|i| {
        let body = json!({ "name": format!("Новый {i}"), "phone": format!("+7916444{i:04}") });
        async move { app.post("/api/v1/contacts", &body).await }
    });
    for reply in futures::future::join_all(posts).await {
        assert!(
            [200, 201, 202].contains(&reply.status),
            "{} {}",
            reply.status,
            reply.body
        );
    }
    app.wait_for(
        "SELECT COUNT(*) AS n FROM contacts WHERE phone LIKE '+7916444%' AND sync_status = 'synced'",
        NEW_CONTACTS as i64,
    )
    .await;
}

#[tokio::test]
async fn after_a_full_import_subscription_and_reconcile_new_contacts_are_created_without_searches()
{
    let app = app_reconciling_every_5s().await;
    let known = app.amo.add_contact("Старый клиент", &["+7 916 555-00-01"]);
    wait_until_reconciled(&app).await;
    subscribe(&app).await;
    amosync(&app, &["sync", "--full"]);
    let ready = app
        .eventually("/ready", |r| r.body["mirror"]["authoritative"] == true)
        .await;
    assert_eq!(ready.body["mirror"]["dedup"], "auto", "{}", ready.body);

    let (requests, creates) = (app.amo.requests(), app.amo.create_requests());
    post_new_contacts(&app).await;
    // A phone the import brought in is answered from the mirror: no AmoCRM call at all.
    let old = app
        .post(
            "/api/v1/contacts",
            &json!({ "name": "Старый", "phone": "+79165550001" }),
        )
        .await;
    assert_eq!(
        (old.status, old.body["amocrm_id"].as_i64()),
        (200, Some(known)),
        "{}",
        old.body
    );

    assert_eq!(app.amo.searches(), 0, "no phone was searched in AmoCRM");
    assert_eq!(app.amo.contact_creates(), NEW_CONTACTS);
    let create_requests = app.amo.create_requests() - creates;
    // Besides the creates, only reconciliation's own calls (3 a round, every 5 s).
    let others = app.amo.requests() - requests - create_requests;
    assert!(
        others <= 9,
        "{others} calls besides {create_requests} creates"
    );
    assert_eq!(app.distinct_amo_phones(), NEW_CONTACTS + 1);
}

#[tokio::test]
async fn without_a_finished_full_import_every_new_contact_is_searched_in_amocrm_first() {
    let app = app_reconciling_every_5s().await;
    wait_until_reconciled(&app).await;
    subscribe(&app).await;
    let ready = app.get("/ready").await;
    assert_eq!(
        ready.body["mirror"]["authoritative"], false,
        "{}",
        ready.body
    );
    assert_eq!(
        ready.body["mirror"]["reason"], "no full import has finished",
        "{}",
        ready.body
    );

    post_new_contacts(&app).await;
    assert_eq!(app.amo.searches(), NEW_CONTACTS);
    assert_eq!(app.amo.contact_creates(), NEW_CONTACTS);
}

#[tokio::test]
async fn a_phone_a_manager_entered_moments_before_gives_two_contacts_and_reconciliation_reports_them(
) {
    // `mirror` trusts the mirror outright; reconciliation every 2 s finds the pair.
    let app = TestApp::builder()
        .env(|env| {
            env.insert("AMO_DEDUP".into(), "mirror".into());
            env.insert("RECONCILE_INTERVAL_SECS".into(), "2".into());
        })
        .spawn()
        .await;
    wait_until_reconciled(&app).await;
    // The manager's contact exists in AmoCRM, but no webhook or round has brought it yet.
    let manager = app.amo.add_contact("От менеджера", &["8 916 777-00-01"]);
    let reply = app
        .post(
            "/api/v1/contacts",
            &json!({ "name": "С сайта", "phone": "+79167770001" }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let ours = reply.body["amocrm_id"].as_i64().expect("created in AmoCRM");
    assert_ne!(ours, manager);
    assert_eq!(app.amo.searches(), 0);

    let pair = format!(
        "SELECT COUNT(*) AS n FROM contact_duplicates WHERE first_amocrm_id = {} \
         AND second_amocrm_id = {} AND phone = '+79167770001'",
        manager.min(ours),
        manager.max(ours)
    );
    app.wait_for_within(&pair, 1, Duration::from_secs(15)).await;
    // Later rounds see the same two contacts again; the pair stays reported once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.count("contact_duplicates"), 1);

    let out = amosync(&app, &["sync", "duplicates"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    let row = format!("{}\t{}\t+79167770001", manager.min(ours), manager.max(ours));
    assert!(listed.contains(&row), "{listed}");
    assert!(listed.contains("1 pair(s)"), "{listed}");
    // Nothing is merged: AmoCRM keeps both.
    assert_eq!(app.amo.contacts().len(), 2);

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let counted = metrics
        .lines()
        .find_map(|line| line.strip_prefix("amosync_contact_duplicates_total "))
        .and_then(|n| n.trim().parse::<f64>().ok());
    assert!(counted.is_some_and(|n| n >= 1.0), "{metrics}");
}
