//! A stored `sync_status` the service does not know is a server fault with its
//! cause in the log, never shown to a client as `pending`.

use crate::helpers::{CapturedLogs, TestApp};

#[tokio::test]
async fn a_row_with_an_unknown_sync_status_is_a_500_whose_log_names_the_value() {
    let captured = CapturedLogs::default();
    let app = TestApp::builder()
        .logging_to(captured.logger())
        .spawn()
        .await;
    app.db.execute(
        "INSERT INTO contacts (name, phone, sync_status) VALUES ('Анна', '+79160000001', 'archived')",
    );
    app.db
        .execute("INSERT INTO leads (name, sync_status) VALUES ('Заказ', 'archived')");
    let contact = app
        .db
        .query_i64("SELECT id AS n FROM contacts WHERE phone = '+79160000001'");
    let lead = app
        .db
        .query_i64("SELECT id AS n FROM leads WHERE name = 'Заказ'");

    for path in [
        format!("/api/v1/contacts/{contact}"),
        format!("/api/v1/leads/{lead}"),
    ] {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, 500, "{path}: {}", reply.body);
        assert_eq!(reply.problem_code(), "internal_error", "{path}");
        assert!(
            !reply.body.to_string().contains("archived"),
            "{path}: the cause reached the client: {}",
            reply.body
        );
    }
    let logs = captured.text();
    assert!(
        logs.contains("unknown sync status `archived`"),
        "the cause is not logged:\n{logs}"
    );
}

#[tokio::test]
async fn every_known_sync_status_reads_back_as_the_same_text() {
    let app = TestApp::builder().spawn().await;
    for (phone, status) in [("+79160000002", "pending"), ("+79160000003", "synced")] {
        app.db.execute(&format!(
            "INSERT INTO contacts (name, phone, amocrm_id, sync_status) \
             VALUES ('Анна', '{phone}', IF('{status}' = 'synced', 900, NULL), '{status}')"
        ));
        let id = app.db.query_i64(&format!(
            "SELECT id AS n FROM contacts WHERE phone = '{phone}'"
        ));
        let reply = app.get(&format!("/api/v1/contacts/{id}")).await;
        assert_eq!(reply.status, 200, "{status}: {}", reply.body);
        assert_eq!(reply.body["sync_status"], status);
    }
}
