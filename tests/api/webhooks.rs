use serde_json::json;

use crate::helpers::{spawn_app, TestApp, TestDb, WEBHOOK_SECRET};

const FORM: &str = "application/x-www-form-urlencoded";
const MIXED: &str =
    include_str!("../fixtures/webhooks/contacts_update_with_leads_add_and_status.txt");
const ACCOUNT: &str = "account[subdomain]=example&account[id]=29000001";

/// A contacts delivery of one contact, in AmoCRM's form layout.
fn contact_form(action: &str, id: i64, name: &str, phone: &str, updated_at: i64) -> String {
    let name = name.replace(' ', "+");
    let phone = phone.replace('+', "%2B");
    format!(
        "contacts[{action}][0][id]={id}&contacts[{action}][0][name]={name}\
         &contacts[{action}][0][updated_at]={updated_at}&contacts[{action}][0][last_modified]={updated_at}\
         &contacts[{action}][0][custom_fields][0][id]=589001&contacts[{action}][0][custom_fields][0][code]=PHONE\
         &contacts[{action}][0][custom_fields][0][values][0][value]={phone}\
         &contacts[{action}][0][custom_fields][0][values][0][enum]=114611&{ACCOUNT}"
    )
}

async fn processed(app: &TestApp, n: i64) {
    app.wait_for(
        "SELECT COUNT(*) AS n FROM webhook_inbox WHERE status = 'processed'",
        n,
    )
    .await;
}

fn contact_id_of(app: &TestApp, amocrm_id: i64) -> i64 {
    app.db.query_i64(&format!(
        "SELECT id AS n FROM contacts WHERE amocrm_id = {amocrm_id}"
    ))
}

#[tokio::test]
async fn a_real_form_delivery_is_acknowledged_then_mirrored_with_its_links() {
    let app = spawn_app().await;
    let reply = app.deliver(WEBHOOK_SECRET, FORM, MIXED).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    processed(&app, 1).await;

    let contact = contact_id_of(&app, 32150001);
    let shown = app.get(&format!("/api/v1/contacts/{contact}")).await;
    assert_eq!(shown.body["name"], "John Smith Jr.");
    assert_eq!(shown.body["phone"], "+79995551122");
    assert_eq!(shown.body["sync_status"], "synced");

    // 18870001 is linked through the contact's linked_leads_id, 18870002 through main_contact_id.
    for lead in [18870001, 18870002] {
        let linked = app.db.query_i64(&format!(
            "SELECT contact_id AS n FROM leads WHERE amocrm_id = {lead}"
        ));
        assert_eq!(linked, contact, "lead {lead}");
    }
    let price = app
        .db
        .query_i64("SELECT price AS n FROM leads WHERE amocrm_id = 18870002");
    assert_eq!(price, 1500);
    let status = app
        .db
        .query_i64("SELECT status_id AS n FROM leads WHERE amocrm_id = 18870000");
    assert_eq!(
        status, 61234502,
        "a status change of an unknown lead is kept"
    );
}

#[tokio::test]
async fn the_same_shape_as_json_is_accepted() {
    let app = spawn_app().await;
    let body = json!({
        "account": {"subdomain": "example", "id": "29000001"},
        "contacts": {"add": [{"id": "777", "name": "Json Person", "updated_at": "1700000000",
            "custom_fields": [{"code": "PHONE", "values": [{"value": "8 916 000-00-07", "enum": "114611"}]}]}]}
    });
    let reply = app
        .deliver(WEBHOOK_SECRET, "application/json", body.to_string())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    processed(&app, 1).await;
    let phone_matches = app.db.query_i64(
        "SELECT COUNT(*) AS n FROM contacts WHERE amocrm_id = 777 AND phone = '+79160000007'",
    );
    assert_eq!(phone_matches, 1);
}

#[tokio::test]
async fn a_wrong_secret_or_account_stores_nothing() {
    let app = spawn_app().await;
    let wrong = app
        .deliver("not-the-secret-0123456789abcdef0123", FORM, MIXED)
        .await;
    assert_eq!(
        (wrong.status, wrong.problem_code()),
        (404, "not_found".to_owned())
    );
    let other_account = MIXED.replace("account[id]=29000001", "account[id]=1");
    let foreign = app.deliver(WEBHOOK_SECRET, FORM, other_account).await;
    assert_eq!(
        (foreign.status, foreign.problem_code()),
        (403, "forbidden".to_owned())
    );
    assert_eq!(app.count("webhook_inbox"), 0);
}

#[tokio::test]
async fn bad_bodies_are_4xx_problems_and_never_stored() {
    let app = spawn_app().await;
    let empty = app.deliver(WEBHOOK_SECRET, FORM, "").await;
    assert_eq!(
        (empty.status, empty.problem_code()),
        (400, "malformed_body".to_owned())
    );
    let cut = app
        .deliver(
            WEBHOOK_SECRET,
            FORM,
            format!("{ACCOUNT}&contacts[add][0][id]=5&contacts[add][0]["),
        )
        .await;
    assert_eq!(cut.status, 400);
    let json = app
        .deliver(WEBHOOK_SECRET, "application/json", "{\"contacts\": ")
        .await;
    assert_eq!(json.status, 400);
    let xml = app.deliver(WEBHOOK_SECRET, "text/xml", "<a/>").await;
    assert_eq!(xml.status, 415);
    let huge = format!("{ACCOUNT}&pad={}", "x".repeat(2 * 1024 * 1024));
    let too_large = app.deliver(WEBHOOK_SECRET, FORM, huge).await;
    assert_eq!(
        (too_large.status, too_large.problem_code()),
        (413, "payload_too_large".to_owned())
    );
    assert_eq!(app.count("webhook_inbox"), 0);
}

#[tokio::test]
async fn an_older_delivery_never_overwrites_newer_data_and_repeats_change_nothing() {
    let app = spawn_app().await;
    let newer = contact_form("update", 4242, "Newer Name", "+79160004242", 2_000);
    let older = contact_form("update", 4242, "Older Name", "+79160009999", 1_000);
    assert_eq!(
        app.deliver(WEBHOOK_SECRET, FORM, newer.clone())
            .await
            .status,
        200
    );
    processed(&app, 1).await;
    assert_eq!(app.deliver(WEBHOOK_SECRET, FORM, older).await.status, 200);
    assert_eq!(app.deliver(WEBHOOK_SECRET, FORM, newer).await.status, 200);
    processed(&app, 3).await;
    let id = contact_id_of(&app, 4242);
    let shown = app.get(&format!("/api/v1/contacts/{id}")).await;
    assert_eq!(
        (shown.body["name"].as_str(), shown.body["phone"].as_str()),
        (Some("Newer Name"), Some("+79160004242"))
    );
    assert_eq!(app.count("contacts"), 1);
}

#[tokio::test]
async fn deleted_records_are_hidden_until_restored() {
    let app = spawn_app().await;
    app.deliver(
        WEBHOOK_SECRET,
        FORM,
        contact_form("add", 5151, "Soon Gone", "+79160005151", 1_000),
    )
    .await;
    processed(&app, 1).await;
    let id = contact_id_of(&app, 5151);
    let delete =
        format!("contacts[delete][0][id]=5151&contacts[delete][0][last_modified]=1100&{ACCOUNT}");
    assert_eq!(app.deliver(WEBHOOK_SECRET, FORM, delete).await.status, 200);
    processed(&app, 2).await;

    assert_eq!(app.get(&format!("/api/v1/contacts/{id}")).await.status, 404);
    let list = app.get("/api/v1/contacts").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(0));
    let shown = app
        .get(&format!("/api/v1/contacts/{id}?include_deleted=true"))
        .await;
    assert_eq!(shown.status, 200);
    assert!(shown.body["deleted_at"].is_string());
    let listed = app.get("/api/v1/contacts?include_deleted=true").await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));

    let restore =
        format!("contacts[restore][0][id]=5151&contacts[restore][0][last_modified]=1200&{ACCOUNT}");
    app.deliver(WEBHOOK_SECRET, FORM, restore).await;
    processed(&app, 3).await;
    let back = app.get(&format!("/api/v1/contacts/{id}")).await;
    assert_eq!(
        (back.status, back.body["deleted_at"].is_null()),
        (200, true)
    );
}

#[tokio::test]
async fn a_delete_that_overtakes_the_add_is_not_undone_by_it() {
    let app = spawn_app().await;
    let delete =
        format!("contacts[delete][0][id]=6161&contacts[delete][0][last_modified]=2000&{ACCOUNT}");
    app.deliver(WEBHOOK_SECRET, FORM, delete).await;
    app.deliver(
        WEBHOOK_SECRET,
        FORM,
        contact_form("add", 6161, "Late Add", "+79160006161", 1_000),
    )
    .await;
    processed(&app, 2).await;
    let visible = app.db.query_i64(
        "SELECT COUNT(*) AS n FROM contacts WHERE amocrm_id = 6161 AND deleted_at IS NULL",
    );
    assert_eq!(visible, 0);
}

#[tokio::test]
async fn the_echo_of_amosyncs_own_create_changes_nothing() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Echo", "phone": "+79160001212"}),
        )
        .await;
    assert_eq!(created.status, 201);
    let amocrm_id = created.body["amocrm_id"].as_i64().expect("amocrm id");
    app.deliver(
        WEBHOOK_SECRET,
        FORM,
        contact_form("add", amocrm_id, "Echo", "+79160001212", 1_000),
    )
    .await;
    processed(&app, 1).await;
    assert_eq!(app.count("contacts"), 1);
    let again = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Echo", "phone": "8 916 000 12 12"}),
        )
        .await;
    assert_eq!(
        (again.status, &again.body["id"]),
        (200, &created.body["id"])
    );
}

#[tokio::test]
async fn a_lead_keeps_its_contact_link_until_the_contact_arrives() {
    let app = spawn_app().await;
    let lead = format!(
        "leads[add][0][id]=9001&leads[add][0][name]=Early+lead&leads[add][0][main_contact_id]=8001\
         &leads[add][0][last_modified]=1000&{ACCOUNT}"
    );
    app.deliver(WEBHOOK_SECRET, FORM, lead).await;
    processed(&app, 1).await;
    let unlinked = app
        .db
        .query_i64("SELECT COUNT(*) AS n FROM leads WHERE amocrm_id = 9001 AND contact_id IS NULL");
    assert_eq!(unlinked, 1);
    app.deliver(
        WEBHOOK_SECRET,
        FORM,
        contact_form("add", 8001, "Late Contact", "+79160008001", 1_001),
    )
    .await;
    processed(&app, 2).await;
    let contact = contact_id_of(&app, 8001);
    let linked = app
        .db
        .query_i64("SELECT contact_id AS n FROM leads WHERE amocrm_id = 9001");
    assert_eq!(linked, contact);
}

#[tokio::test]
async fn a_burst_of_a_thousand_contacts_in_one_delivery_is_applied() {
    let app = spawn_app().await;
    let mut body = String::from(ACCOUNT);
    for i in 0..1000 {
        body.push_str(&format!(
            "&contacts[add][{i}][id]={}&contacts[add][{i}][name]=Bulk+{i}&contacts[add][{i}][last_modified]=1000\
             &contacts[add][{i}][custom_fields][0][code]=PHONE&contacts[add][{i}][custom_fields][0][values][0][value]=%2B7916{:07}",
            100_000 + i,
            i
        ));
    }
    let reply = app.deliver(WEBHOOK_SECRET, FORM, body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    processed(&app, 1).await;
    assert_eq!(app.count("contacts"), 1000);
}

#[tokio::test]
async fn with_the_database_down_a_delivery_gets_503_so_amocrm_retries() {
    let app = TestApp::builder().without_database().spawn().await;
    let reply = app.deliver(WEBHOOK_SECRET, FORM, MIXED).await;
    assert_eq!(
        (reply.status, reply.problem_code()),
        (503, "database_unavailable".to_owned())
    );
}

#[tokio::test]
async fn deliveries_a_crashed_worker_held_are_applied_after_a_restart() {
    let db = TestDb::create().await;
    db.migrate().await;
    // A delivery that was accepted, then leased by a worker that died mid-way.
    let body = contact_form("add", 3131, "Survivor", "+79160003131", 1_000);
    db.execute(&format!(
        "INSERT INTO webhook_inbox (content_type, body, leased_until) \
         VALUES ('{FORM}', '{}', NOW(6) + INTERVAL 1 HOUR)",
        body.replace('\'', "''")
    ));
    let app = TestApp::builder().on(db).spawn().await;
    processed(&app, 1).await;
    assert_eq!(
        app.db
            .query_i64("SELECT COUNT(*) AS n FROM contacts WHERE amocrm_id = 3131"),
        1
    );
}

#[tokio::test]
async fn concurrent_deliveries_are_committed_together_and_each_ack_names_its_own_row() {
    let app = spawn_app().await;
    let deliveries = (0..200).map(|i| {
        let amocrm_id = 7_100_000 + i;
        let body = contact_form(
            "add",
            amocrm_id,
            &format!("Burst {i}"),
            &format!("+7916555{i:04}"),
            1_700_000_000,
        );
        let app = &app;
        async move { (amocrm_id, app.deliver(WEBHOOK_SECRET, FORM, body).await) }
    });
    let acks = futures::future::join_all(deliveries).await;

    let mut inbox_ids = Vec::new();
    for (amocrm_id, ack) in acks {
        assert_eq!(ack.status, 200, "{}", ack.body);
        let inbox_id = ack.body["inbox_id"].as_i64().expect("inbox_id");
        let own = app.db.query_i64(&format!(
            "SELECT COUNT(*) AS n FROM webhook_inbox WHERE id = {inbox_id} \
             AND body LIKE '%contacts[add][0][id]={amocrm_id}&%'"
        ));
        assert_eq!(own, 1, "ack {inbox_id} names the row holding {amocrm_id}");
        inbox_ids.push(inbox_id);
    }
    inbox_ids.sort_unstable();
    inbox_ids.dedup();
    assert_eq!(inbox_ids.len(), 200);
    app.wait_for(
        "SELECT COUNT(*) AS n FROM contacts WHERE amocrm_id >= 7100000",
        200,
    )
    .await;
}

/// Sends only the head of a POST to `path` announcing `length` bytes, and returns
/// the status line if one comes within two seconds.
async fn status_before_the_body(app: &TestApp, path: &str, length: usize) -> Option<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {FORM}\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let read = reader.read_line(&mut line);
    match tokio::time::timeout(std::time::Duration::from_secs(2), read).await {
        Ok(Ok(n)) if n > 0 => Some(line.trim_end().to_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn a_wrong_secret_is_refused_before_the_body_is_read() {
    let app = spawn_app().await;
    let wrong = "/webhooks/amocrm/not-the-secret-0123456789abcdefghij";
    let status = status_before_the_body(&app, wrong, 900_000).await;
    assert_eq!(
        status.as_deref(),
        Some("HTTP/1.1 404 Not Found"),
        "the stranger was made to send its body first"
    );
    // With the right secret the body is awaited, as it should be.
    let right = format!("/webhooks/amocrm/{WEBHOOK_SECRET}");
    assert_eq!(status_before_the_body(&app, &right, 1_000).await, None);
    assert_eq!(app.count("webhook_inbox"), 0);
}
