//! `SYNC_LEASE_SECS` is the one knob of crash recovery: a job a crashed worker
//! claimed comes back once it lapses, not after some multiple of it.

use std::time::Duration;

use crate::fake_amo::{FakeAmo, FakeConfig};
use crate::helpers::{TestApp, TestDb};

#[tokio::test]
async fn a_claimed_job_is_leased_for_sync_lease_secs_not_longer() {
    // A record and its job as a crashed instance left them: pending, claims lapsed.
    let db = TestDb::create().await;
    db.migrate().await;
    db.execute("INSERT INTO contacts (name, phone) VALUES ('Иван', '+79161234567')");
    db.execute("INSERT INTO sync_jobs (entity, record_id) SELECT 'contact', id FROM contacts");
    // Slow enough that the worker's claim can be read while it is in AmoCRM.
    let fake = FakeAmo::start_with(FakeConfig {
        latency: Duration::from_secs(3),
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::builder()
        .against(fake)
        .on(db)
        .env(|env| {
            env.insert("SYNC_LEASE_SECS".into(), "40".into());
            env.insert("AMO_TIMEOUT_SECS".into(), "10".into());
        })
        .spawn()
        .await;

    app.wait_for(
        "SELECT COUNT(*) AS n FROM sync_jobs WHERE leased_until IS NOT NULL",
        1,
    )
    .await;
    let lease_secs = app
        .db
        .query_i64("SELECT TIMESTAMPDIFF(SECOND, NOW(6), leased_until) AS n FROM sync_jobs");
    assert!(
        (30..=40).contains(&lease_secs),
        "the job is claimed for {lease_secs} s; SYNC_LEASE_SECS is 40"
    );
}
