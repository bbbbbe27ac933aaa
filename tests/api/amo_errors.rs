//! What AmoCRM says when it refuses a request may quote the request back: a name, a
//! phone, our webhook URL with its secret. None of it may reach the client's 502,
//! the stored sync errors, the logs or the CLI; AmoCRM's codes and field paths do.

use serde_json::json;

use crate::helpers::{CapturedLogs, TestApp, API_TOKEN};

/// No digits, so only the redactor (not the scrubbing of numbers) can hide it.
const SECRET: &str = "webhook-secret-without-any-digits-abcdefghij";
const FIELD: &str = "custom_fields_values.0.values.0.value";

#[tokio::test]
async fn echoed_values_and_secrets_stay_out_of_every_place_an_error_goes() {
    let captured = CapturedLogs::default();
    let app = TestApp::builder()
        .logging_to(captured.logger())
        .env(|env| {
            env.insert("WEBHOOK_SECRET".into(), SECRET.into());
        })
        .spawn()
        .await;
    let echo = format!("The value \"+79161234567\" of Иван Эхов is not valid for {API_TOKEN}");
    app.amo.reject_writes_with(Some(json!({
        "title": "Bad Request", "status": 400, "detail": "Request validation failed",
        "validation-errors": [{"request_id": "0", "errors": [
            {"code": "NotSupportedChoice", "path": FIELD, "detail": echo}]}]
    })));
    let refused = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван Эхов", "phone": "8 916 123-45-67"}),
        )
        .await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert_eq!(refused.problem_code(), "amocrm_rejected");
    let detail = refused.body["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains(&format!("{FIELD} NotSupportedChoice")),
        "{detail}"
    );

    // A refusal in AmoCRM's own words, which names our secret outright.
    app.amo.reject_writes_with(Some(json!({
        "title": "Bad Request", "status": 400,
        "detail": format!("hook {SECRET} is unreachable (+7 (903) 111-22-33)")
    })));
    let other = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Пётр Эхов", "phone": "+7 903 111-22-33"}),
        )
        .await;
    assert_eq!(other.status, 502, "{}", other.body);
    let other_detail = other.body["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        other_detail.contains("hook *** is unreachable (…)"),
        "{other_detail}"
    );
    app.amo.reject_writes_with(None);

    let stored = [
        app.db
            .query_strings("SELECT last_error AS s FROM sync_jobs"),
        app.db.query_strings("SELECT sync_error AS s FROM contacts"),
    ]
    .concat();
    assert_eq!(stored.len(), 4, "{stored:?}");
    assert!(
        stored.iter().any(|e| e.contains("NotSupportedChoice")),
        "{stored:?}"
    );
    let cli = app.cli(&["sync", "jobs", "--status", "dead"]);
    let cli_out = String::from_utf8_lossy(&cli.stdout).into_owned();
    assert!(
        cli_out.contains(&format!("{FIELD} NotSupportedChoice")),
        "{cli_out}"
    );

    let logs = captured.text();
    let places = [
        ("the client's 502", format!("{detail} {other_detail}")),
        ("the stored errors", stored.join("\n")),
        ("the CLI", cli_out),
        ("the logs", logs),
    ];
    for (place, text) in places {
        for echoed in [
            "9161234567",
            "111-22-33",
            "Эхов",
            "is not valid",
            SECRET,
            API_TOKEN,
        ] {
            assert!(!text.contains(echoed), "{echoed} in {place}:\n{text}");
        }
    }
}
