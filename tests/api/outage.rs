use std::time::{Duration, Instant};

use serde_json::json;

use crate::fake_amo::{FakeAmo, FakeConfig};
use crate::helpers::{TestApp, TestDb};

const SUBMISSIONS: usize = 500;
const OUTAGE: Duration = Duration::from_secs(30);

/// AmoCRM answers 429 to everything for 30 s while 500 submissions arrive.
#[tokio::test]
async fn submissions_during_a_rate_limit_outage_are_all_accepted_and_synced_once_without_bursting()
{
    let fake = FakeAmo::start_with(FakeConfig {
        rps_limit: Some(7),
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::builder()
        .against(fake)
        .on(TestDb::create().await)
        .env(|env| {
            env.insert("AMO_MAX_RPS".into(), "7".into());
            env.insert("SYNC_MAX_ATTEMPTS".into(), "1000".into());
        })
        .spawn()
        .await;
    app.amo.fail_with(Some(429));
    let started = Instant::now();
    let app = &app;
    // Spread over most of the outage: a steady stream, not one burst.
    let gap = OUTAGE.mul_f64(0.9) / SUBMISSIONS as u32;
    let posts = (0..SUBMISSIONS).map(|i| async move {
        tokio::time::sleep(gap * i as u32).await;
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
    tokio::time::sleep(OUTAGE.saturating_sub(started.elapsed())).await;
    app.amo.fail_with(None);

    // 500 phone searches at 7 a second, after the worker's pause ends.
    app.wait_for_within(
        "SELECT COUNT(*) AS n FROM contacts WHERE sync_status = 'synced'",
        SUBMISSIONS as i64,
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(app.count("contacts"), SUBMISSIONS as i64);
    assert_eq!(
        app.amo.contact_creates(),
        SUBMISSIONS,
        "one AmoCRM contact per submission"
    );
    assert_eq!(
        app.distinct_amo_phones(),
        SUBMISSIONS,
        "no duplicates in AmoCRM"
    );
    assert!(
        app.amo.max_requests_in_one_second() <= 7,
        "seen {}",
        app.amo.max_requests_in_one_second()
    );
}
