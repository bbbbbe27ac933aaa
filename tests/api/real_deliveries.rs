//! The corpus of real AmoCRM webhook bodies (`tests/fixtures/webhooks/real/`), each
//! delivered to a fresh service and database, and the mirror it leaves checked.
//!
//! Every `<name>.txt` is a body as captured; its `<name>.json` records where it was
//! found (`source`) and what it must do (`expect`): the answer (`status`, 200 unless
//! said), rows that must exist with the given columns (`contacts`, `leads`,
//! `companies`; `deleted` checks the tombstone, `linked` that a lead points at its
//! contact's row), table sizes (`counts`), records that must be read back from AmoCRM
//! instead of applied (`read_back`), event kinds counted as not applied (`ignored`),
//! and SQL to run first (`seed_sql`). A 400 must leave every table empty.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::helpers::{ignored_events, TestApp, WEBHOOK_SECRET};

const FORM: &str = "application/x-www-form-urlencoded";

struct Fixture {
    name: String,
    body: String,
    meta: Value,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks/real")
}

fn corpus() -> Vec<Fixture> {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "txt").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let dir = corpus_dir();
            let body = std::fs::read_to_string(dir.join(format!("{name}.txt"))).expect("body");
            let meta = std::fs::read_to_string(dir.join(format!("{name}.json")))
                .unwrap_or_else(|_| panic!("{name}.json records the body's source"));
            let meta = serde_json::from_str(&meta).unwrap_or_else(|e| panic!("{name}.json: {e}"));
            Fixture { name, body, meta }
        })
        .collect()
}

fn quoted(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::String(text) => format!("'{}'", text.replace('\'', "''")),
        other => other.to_string(),
    }
}

/// `column = value` (or `IS NULL`) for each expected column of one row.
fn conditions(table: &str, row: &Map<String, Value>) -> Vec<String> {
    row.iter()
        .map(|(column, value)| match (column.as_str(), value) {
            ("deleted", Value::Bool(true)) => "deleted_at IS NOT NULL".to_owned(),
            ("deleted", _) => "deleted_at IS NULL".to_owned(),
            ("linked", _) => format!(
                "contact_id = (SELECT c.id FROM contacts c WHERE c.amocrm_id = {table}.contact_amocrm_id)"
            ),
            (_, Value::Null) => format!("{column} IS NULL"),
            (_, value) => format!("{column} = {}", quoted(value)),
        })
        .collect()
}

async fn check(fixture: Fixture) {
    let Fixture { name, body, meta } = fixture;
    let source = &meta["source"];
    assert!(
        source["repository"].is_string() && source["how"].is_string(),
        "{name}: the source is recorded"
    );
    // Captured bodies come from many accounts: no account is pinned.
    let mut app = TestApp::builder()
        .env(|env| {
            env.remove("AMO_ACCOUNT_ID");
            env.insert("DB_POOL_SIZE".into(), "3".into());
        })
        .spawn()
        .await;
    deliver_and_check(&app, &name, body, &meta["expect"]).await;
    // Its pool would otherwise hold connections to the shared server until the
    // test binary exits.
    if let Some(trigger) = app.shutdown.take() {
        trigger.shutdown().await;
    }
}

async fn deliver_and_check(app: &TestApp, name: &str, body: String, expect: &Value) {
    for sql in expect["seed_sql"].as_array().into_iter().flatten() {
        app.db.execute(sql.as_str().unwrap_or_default());
    }
    let before = app.get_text("/metrics").await;
    let reply = app.deliver(WEBHOOK_SECRET, FORM, body).await;
    let status = expect["status"].as_u64().unwrap_or(200);
    assert_eq!(u64::from(reply.status), status, "{name}: {}", reply.body);
    if status != 200 {
        for table in ["webhook_inbox", "contacts", "leads", "companies"] {
            assert_eq!(app.count(table), 0, "{name}: {table} stays empty");
        }
        return;
    }
    app.wait_for(
        "SELECT COUNT(*) AS n FROM webhook_inbox WHERE status = 'processed'",
        1,
    )
    .await;
    check_rows(app, name, expect);
    if let Some(records) = expect["read_back"].as_array() {
        for record in records {
            let (entity, id) = (record[0].as_str().unwrap_or_default(), &record[1]);
            let stamped = app.count_where(entity, &format!("amocrm_id = {id}"));
            assert_eq!(
                stamped, 0,
                "{name}: {entity} {id} is not applied without a time"
            );
        }
        // Asked of AmoCRM (which does not hold these ids) and done.
        app.wait_for("SELECT COUNT(*) AS n FROM mirror_refetch", 0)
            .await;
        assert!(app.amo.requests() >= 1, "{name}: AmoCRM was asked");
    } else {
        assert_eq!(
            app.count("mirror_refetch"),
            0,
            "{name}: nothing to read back"
        );
    }
    if let Some(kinds) = expect["ignored"].as_array() {
        let after = app.get_text("/metrics").await;
        for kind in kinds.iter().filter_map(Value::as_str) {
            let (was, is) = (ignored_events(&before, kind), ignored_events(&after, kind));
            assert!(is > was, "{name}: {kind} counted ({was} then {is})");
        }
    }
}

fn check_rows(app: &TestApp, name: &str, expect: &Value) {
    for table in ["contacts", "leads", "companies"] {
        for row in expect[table].as_array().into_iter().flatten() {
            let Some(row) = row.as_object() else { continue };
            let clauses = conditions(table, row).join(" AND ");
            let found = app.count_where(table, &clauses);
            assert_eq!(found, 1, "{name}: one {table} row where {clauses}");
        }
    }
    if let Some(counts) = expect["counts"].as_object() {
        for (table, want) in counts {
            assert_eq!(
                app.count(table),
                want.as_i64().unwrap_or(-1),
                "{name}: rows in {table}"
            );
        }
    }
}

#[tokio::test]
async fn every_real_delivery_leaves_the_mirror_its_source_implies() {
    let fixtures = corpus();
    let sources: std::collections::BTreeSet<String> = fixtures
        .iter()
        .map(|f| {
            f.meta["source"]["repository"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert!(fixtures.len() >= 20, "{} real bodies", fixtures.len());
    assert!(sources.len() >= 4, "{} sources", sources.len());
    // A few at a time: each runs a service with a small pool of its own on the
    // shared database server, closed before the next group starts.
    let mut fixtures = fixtures.into_iter();
    loop {
        let group: Vec<Fixture> = fixtures.by_ref().take(4).collect();
        if group.is_empty() {
            break;
        }
        futures::future::join_all(group.into_iter().map(check)).await;
    }
}
