use crate::helpers::{spawn_app, TestApp};

#[tokio::test]
async fn changes_whose_webhooks_were_lost_are_pulled_by_reconciliation() {
    let app = TestApp::builder()
        .env(|env| {
            env.insert("RECONCILE_INTERVAL_SECS".into(), "1".into());
        })
        .spawn()
        .await;
    // No webhook subscription at all: only reconciliation can bring these in.
    let id = app.amo.add_contact("Потерянный", &["8 916 000-11-11"]);
    let path = format!(
        "SELECT COUNT(*) AS n FROM contacts WHERE amocrm_id = {id} AND phone = '+79160001111'"
    );
    app.wait_for(&path, 1).await;

    app.amo.update_contact(id, Some("Переименован"), None);
    let renamed = format!(
        "SELECT COUNT(*) AS n FROM contacts WHERE amocrm_id = {id} AND name = 'Переименован'"
    );
    app.wait_for(&renamed, 1).await;
    assert_eq!(app.count("contacts"), 1);
}

#[tokio::test]
async fn the_full_import_fills_an_empty_mirror_and_resumes_without_duplicates() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.amo
            .add_contact(&format!("Контакт {i}"), &[&format!("+7916000000{i}")]);
    }
    let contact = app.amo.add_contact("С заказом", &["+79160000009"]);
    app.amo.add_lead("Импортный заказ", &[contact]);
    let run = || app.cli(&["sync", "--full"]);
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("contacts: 4 imported"), "{stdout}");
    assert!(stdout.contains("leads: 1 imported"), "{stdout}");
    assert_eq!(app.count("contacts"), 4);
    let linked = app.db.query_i64(&format!(
        "SELECT COUNT(*) AS n FROM leads l JOIN contacts c ON c.id = l.contact_id WHERE c.amocrm_id = {contact}"
    ));
    assert_eq!(linked, 1, "the lead is linked to its mirrored contact");

    assert!(
        run().status.success(),
        "a second run resumes from the cursor"
    );
    assert_eq!(app.count("contacts"), 4);
    assert_eq!(app.count("leads"), 1);
}
