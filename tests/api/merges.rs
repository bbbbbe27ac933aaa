//! An id amosync handed out stays addressable when its record turns out to be a
//! contact AmoCRM already holds under another phone.

use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_contact_folded_into_its_amocrm_twin_keeps_its_id_and_phone() {
    let app = spawn_app().await;
    let amo_id = app
        .amo
        .add_contact("Анна", &["+79160000001", "+79160000002"]);
    let first = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Анна", "phone": "+79160000001"}),
        )
        .await;
    assert_eq!(first.status, 200, "found in AmoCRM: {}", first.body);
    let survivor = first.body["id"].as_i64().expect("id");

    // AmoCRM is slow: the second phone is accepted with an id of its own.
    app.amo.set_latency(Duration::from_millis(1800));
    let second = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Анна", "phone": "8 916 000-00-02"}),
        )
        .await;
    assert_eq!(second.status, 202, "{}", second.body);
    let handed_out = second.body["id"].as_i64().expect("id");
    assert_ne!(handed_out, survivor);
    let location = second.location.clone().expect("Location");

    // The worker finds the AmoCRM contact and folds the new row into the mirrored one.
    app.wait_for("SELECT COUNT(*) AS n FROM contacts", 1).await;
    app.amo.set_latency(Duration::ZERO);
    let got = app.get(&location).await;
    assert_eq!(got.status, 200, "{location}: {}", got.body);
    assert_eq!(got.body["id"], survivor);
    assert_eq!(got.body["amocrm_id"], amo_id);

    let listed = app.get("/api/v1/contacts?phone=%2B79160000002").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let ids: Vec<_> = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(survivor)], "{}", listed.body);

    let searches = app.amo.searches();
    let again = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Анна", "phone": "+79160000002"}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["id"], survivor);
    assert_eq!(
        app.amo.searches(),
        searches,
        "the second phone is known now"
    );
    assert_eq!(
        app.db
            .query_i64("SELECT COUNT(*) AS n FROM contact_merges WHERE merged_into = (SELECT id FROM contacts)"),
        1,
        "the merge is recorded"
    );
}
