use std::time::Duration;

use serde_json::json;

use crate::fake_amo::{FakeAmo, FakeConfig};
use crate::helpers::{spawn_app_against, TestDb};

#[tokio::test]
async fn submissions_during_a_rate_limit_outage_are_all_accepted_and_synced_once_without_bursting()
{
    let fake = FakeAmo::start_with(FakeConfig {
        rps_limit: Some(7),
        ..FakeConfig::default()
    })
    .await;
    let app = spawn_app_against(fake, TestDb::create().await, |env| {
        env.insert("AMO_MAX_RPS".into(), "6".into());
        env.insert("SYNC_MAX_ATTEMPTS".into(), "1000".into());
    })
    .await;
    app.amo.fail_with(Some(429));
    let app = &app;
    let posts = (0..24).map(|i| async move {
        let body = json!({"name": format!("Клиент {i}"), "phone": format!("+7916555{:04}", i)});
        app.post("/api/v1/contacts", &body).await
    });
    let replies = futures::future::join_all(posts).await;
    for reply in &replies {
        assert!(
            matches!(reply.status, 200..=299),
            "{} {}",
            reply.status,
            reply.body
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.amo.fail_with(None);

    app.wait_for(
        "SELECT COUNT(*) AS n FROM contacts WHERE sync_status = 'synced'",
        24,
    )
    .await;
    assert_eq!(app.count("contacts"), 24);
    assert_eq!(
        app.amo.contact_creates(),
        24,
        "one AmoCRM contact per submission"
    );
    let mut phones: Vec<_> = app
        .amo
        .contacts()
        .into_iter()
        .flat_map(|c| c.phones)
        .collect();
    phones.sort();
    phones.dedup();
    assert_eq!(phones.len(), 24, "no duplicates in AmoCRM");
    assert!(
        app.amo.max_requests_in_one_second() <= 7,
        "seen {}",
        app.amo.max_requests_in_one_second()
    );
}
