//! Webhook shapes real AmoCRM accounts send that the mirror must apply: contacts with
//! several leads, companies under `contacts`, restores of unknown records, events
//! without a change time, records without a name, and event kinds not applied.

use std::time::Duration;

use serde_json::json;

use fake_amocrm::{FakeAmo, NoteTarget};

use crate::helpers::{ignored_events, spawn_app, TestApp, WEBHOOK_SECRET};

const FORM: &str = "application/x-www-form-urlencoded";
const ACCOUNT: &str = "account[subdomain]=example&account[id]=29000001";

async fn deliver(app: &TestApp, body: String) {
    let reply = app.deliver(WEBHOOK_SECRET, FORM, body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

async fn processed(app: &TestApp, n: i64) {
    app.wait_for(
        "SELECT COUNT(*) AS n FROM webhook_inbox WHERE status = 'processed'",
        n,
    )
    .await;
}

fn lead_add(id: i64, name: &str, updated_at: i64) -> String {
    format!(
        "leads[add][0][id]={id}&leads[add][0][name]={name}&leads[add][0][status_id]=10101\
         &leads[add][0][pipeline_id]=2020&leads[add][0][last_modified]={updated_at}&{ACCOUNT}"
    )
}

#[tokio::test]
async fn a_contact_linked_to_several_leads_is_applied_with_every_link() {
    let app = spawn_app().await;
    deliver(&app, lead_add(9982719, "First", 1_000)).await;
    deliver(&app, lead_add(9982767, "Second", 1_000)).await;
    processed(&app, 2).await;
    let contact = format!(
        "contacts[update][0][id]=22309159&contacts[update][0][name]=Ilya\
         &contacts[update][0][last_modified]=1538066975\
         &contacts[update][0][custom_fields][0][id]=54667\
         &contacts[update][0][custom_fields][0][values][0][value]=89031453455\
         &contacts[update][0][custom_fields][0][values][0][enum]=114611\
         &contacts[update][0][custom_fields][0][code]=PHONE\
         &contacts[update][0][linked_leads_id][9982719][ID]=9982719\
         &contacts[update][0][linked_leads_id][9982767][ID]=9982767\
         &contacts[update][0][linked_leads_id][9982773][ID]=9982773\
         &contacts[update][0][type]=contact&{ACCOUNT}"
    );
    deliver(&app, contact).await;
    processed(&app, 3).await;
    let failed = app.count_where("webhook_inbox", "status <> 'processed'");
    assert_eq!(failed, 0);
    let (id, phone) = (
        app.db
            .query_i64("SELECT id AS n FROM contacts WHERE amocrm_id = 22309159"),
        app.db.query_i64(
            "SELECT COUNT(*) AS n FROM contacts WHERE amocrm_id = 22309159 AND phone = '+79031453455' AND name = 'Ilya'",
        ),
    );
    assert_eq!(phone, 1);
    for lead in [9982719, 9982767] {
        let linked = app.db.query_i64(&format!(
            "SELECT contact_id AS n FROM leads WHERE amocrm_id = {lead}"
        ));
        assert_eq!(linked, id, "lead {lead}");
    }
}

#[tokio::test]
async fn a_company_is_mirrored_apart_and_never_matches_a_clients_phone() {
    let app = spawn_app().await;
    let company = format!(
        "contacts[update][0][id]=7793457&contacts[update][0][name]=Tallinn+Auto\
         &contacts[update][0][responsible_user_id]=6101560\
         &contacts[update][0][custom_fields][0][id]=1&contacts[update][0][custom_fields][0][code]=PHONE\
         &contacts[update][0][custom_fields][0][values][0][value]=%2B79161112233\
         &contacts[update][0][updated_at]=1642684812&contacts[update][0][type]=company&{ACCOUNT}"
    );
    deliver(&app, company).await;
    processed(&app, 1).await;
    assert_eq!(app.count("contacts"), 0);
    let stored = app.db.query_i64(
        "SELECT COUNT(*) AS n FROM companies WHERE amocrm_id = 7793457 \
         AND name = 'Tallinn Auto' AND responsible_user_id = 6101560 AND amo_updated_at = 1642684812",
    );
    assert_eq!(stored, 1);
    let listed = app.get("/api/v1/contacts?phone=%2B79161112233").await;
    assert_eq!(listed.body["items"], json!([]));
    let posted = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "A person", "phone": "+79161112233"}),
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    assert_ne!(posted.body["amocrm_id"], json!(7793457));

    let deleted =
        format!("contacts[delete][0][id]=7793457&contacts[delete][0][type]=company&{ACCOUNT}");
    deliver(&app, deleted).await;
    processed(&app, 2).await;
    assert_eq!(
        app.count_where(
            "companies",
            "amocrm_id = 7793457 AND deleted_at IS NOT NULL"
        ),
        1
    );
    assert_eq!(app.count("contacts"), 1, "only the person posted above");
}

#[tokio::test]
async fn a_restore_of_records_the_mirror_never_held_brings_them_in_whole() {
    let app = spawn_app().await;
    let body = format!(
        "contacts[restore][0][id]=52171487&contacts[restore][0][name]=Autocontact+%2B14155237743\
         &contacts[restore][0][last_modified]=1457109209\
         &contacts[restore][0][custom_fields][0][code]=PHONE\
         &contacts[restore][0][custom_fields][0][values][0][value]=%2B14155237743\
         &leads[restore][0][id]=40334183&leads[restore][0][name]=Restored+lead\
         &leads[restore][0][status_id]=9931849&leads[restore][0][price]=\
         &leads[restore][0][last_modified]=1457109765&leads[restore][0][pipeline_id]=53218\
         &{ACCOUNT}"
    );
    deliver(&app, body).await;
    processed(&app, 1).await;
    let contact = app.db.query_i64(
        "SELECT id AS n FROM contacts WHERE amocrm_id = 52171487 AND deleted_at IS NULL",
    );
    let shown = app.get(&format!("/api/v1/contacts/{contact}")).await;
    assert_eq!(
        (shown.body["name"].as_str(), shown.body["phone"].as_str()),
        (Some("Autocontact +14155237743"), Some("+14155237743"))
    );
    let lead = app.db.query_i64(
        "SELECT status_id AS n FROM leads WHERE amocrm_id = 40334183 AND deleted_at IS NULL \
         AND name = 'Restored lead'",
    );
    assert_eq!(lead, 9931849);
}

#[tokio::test]
async fn a_status_event_without_a_time_is_read_back_from_amocrm_not_applied() {
    let app = spawn_app().await;
    let lead = app.amo.add_lead("Read back", &[]);
    assert!(app.amo.update_lead_status(lead, 142));
    let newest = app
        .amo
        .leads()
        .into_iter()
        .find(|l| l.id == lead)
        .expect("lead in the fake");
    // A stale short status (another stage than AmoCRM now holds), without any time.
    let stale = format!(
        "leads[status][0][id]={lead}&leads[status][0][status_id]=10101\
         &leads[status][0][pipeline_id]=2020&leads[status][0][old_status_id]=1&{ACCOUNT}"
    );
    deliver(&app, stale).await;
    processed(&app, 1).await;
    app.wait_for(
        &format!("SELECT COUNT(*) AS n FROM leads WHERE amocrm_id = {lead} AND status_id = 142"),
        1,
    )
    .await;
    let stored = app.db.query_i64(&format!(
        "SELECT amo_updated_at AS n FROM leads WHERE amocrm_id = {lead}"
    ));
    assert_eq!(stored, newest.updated_at, "AmoCRM's own time, not ours");
    app.wait_for("SELECT COUNT(*) AS n FROM mirror_refetch", 0)
        .await;
}

#[tokio::test]
async fn while_amocrm_is_down_untimed_events_wait_in_the_queue_and_the_inbox_moves_on() {
    let app = spawn_app().await;
    let lead = app.amo.add_lead("Waits", &[]);
    app.amo.fail_with(Some(503));
    let short = format!("leads[status][0][id]={lead}&leads[status][0][status_id]=143&{ACCOUNT}");
    deliver(&app, short).await;
    processed(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.count_where("leads", &format!("amocrm_id = {lead}")), 0);
    assert_eq!(app.count("mirror_refetch"), 1);
    app.amo.fail_with(None);
    // The first retry comes 5 s after the failure.
    app.wait_for_within(
        &format!("SELECT COUNT(*) AS n FROM leads WHERE amocrm_id = {lead} AND name = 'Waits'"),
        1,
        Duration::from_secs(20),
    )
    .await;
    app.wait_for("SELECT COUNT(*) AS n FROM mirror_refetch", 0)
        .await;
}

#[tokio::test]
async fn a_lead_without_a_name_reads_as_null_until_it_gets_one() {
    let app = spawn_app().await;
    deliver(&app, lead_add(7001, "", 1_000)).await;
    processed(&app, 1).await;
    let id = app
        .db
        .query_i64("SELECT id AS n FROM leads WHERE amocrm_id = 7001");
    let shown = app.get(&format!("/api/v1/leads/{id}")).await;
    assert_eq!(shown.status, 200);
    assert!(shown.body["name"].is_null(), "{}", shown.body);
    let listed = app.get("/api/v1/leads").await;
    assert!(listed.body["items"][0]["name"].is_null());

    deliver(&app, lead_add(7001, "Chat+lead", 1_001)).await;
    processed(&app, 2).await;
    let named = app.get(&format!("/api/v1/leads/{id}")).await;
    assert_eq!(named.body["name"], "Chat lead");
    // A short status carries no name: the name stays.
    let status = format!(
        "leads[status][0][id]=7001&leads[status][0][status_id]=142\
         &leads[status][0][last_modified]=1002&{ACCOUNT}"
    );
    deliver(&app, status).await;
    processed(&app, 3).await;
    let moved = app.get(&format!("/api/v1/leads/{id}")).await;
    assert_eq!(
        (
            moved.body["name"].as_str(),
            moved.body["status_id"].as_i64()
        ),
        (Some("Chat lead"), Some(142))
    );
}

#[tokio::test]
async fn event_kinds_not_applied_are_counted_by_a_bounded_kind() {
    let app = spawn_app().await;
    let body = format!(
        "message[add][0][id]=9402b05b&message[add][0][chat_id]=dfa7f0e5&message[add][0][text]=Hi\
         &leads[note][0][note][id]=60864725&leads[note][0][note][element_id]=40700289\
         &leads[note][0][note][note_type]=4&leads[note][0][note][text]=Called\
         &unsorted[add][0][uid]=abc&leads[call_in][0][id]=5\
         &x{0}[y{0}][0][id]=1&{ACCOUNT}",
        "a".repeat(40)
    );
    let kinds = [
        "message[add]",
        "leads[note]",
        "unsorted[add]",
        "leads[call_in]",
        "other[other]",
    ];
    // The counter is process-wide and other tests run alongside: compare, do not equate.
    let before = app.get_text("/metrics").await;
    deliver(&app, body).await;
    processed(&app, 1).await;
    let after = app.get_text("/metrics").await;
    for kind in kinds {
        let (was, is) = (ignored_events(&before, kind), ignored_events(&after, kind));
        assert!(is >= was + 1.0, "{kind}: {was} then {is}\n{after}");
    }
    assert!(
        !after.contains("xaaaa"),
        "a sender's own names never become labels"
    );
    assert_eq!(app.count("leads"), 0, "nothing applied");
}

#[tokio::test]
async fn what_the_fake_amocrm_emits_for_companies_notes_and_closed_leads_is_mirrored() {
    let app = spawn_app().await;
    let destination = format!("{}/webhooks/amocrm/{WEBHOOK_SECRET}", app.address);
    let settings = [
        "add_company",
        "update_company",
        "note_lead",
        "add_lead",
        "update_lead",
    ];
    let subscribed = app
        .client
        .post(format!("{}/api/v4/webhooks", app.amo.base_url()))
        .bearer_auth(FakeAmo::TOKEN)
        .json(&json!({"destination": destination, "settings": settings}))
        .send()
        .await
        .expect("subscribe at the fake");
    assert!(subscribed.status().is_success());
    let before = app.get_text("/metrics").await;

    let company = app.amo.create_company("ООО Ромашка");
    assert!(app.amo.rename_company(company, "ООО Ромашка и партнёры"));
    let lead = app.amo.create_lead("Крупный заказ", &[]);
    app.amo
        .add_note(NoteTarget::Lead(lead), "Перезвонить")
        .expect("a live lead");
    assert!(app.amo.update_lead_status(lead, 142));

    app.wait_for(
        &format!(
            "SELECT COUNT(*) AS n FROM companies WHERE amocrm_id = {company} \
             AND name = 'ООО Ромашка и партнёры'"
        ),
        1,
    )
    .await;
    app.wait_for(
        &format!("SELECT COUNT(*) AS n FROM leads WHERE amocrm_id = {lead} AND status_id = 142"),
        1,
    )
    .await;
    assert_eq!(app.count("contacts"), 0, "a company is never a contact");
    let after = app.get_text("/metrics").await;
    let kind = "leads[note]";
    assert!(ignored_events(&after, kind) > ignored_events(&before, kind));
}
