//! Retention against the real database: old processed deliveries, done jobs and
//! expired idempotency keys go in batches, failed and dead rows and recent ones stay,
//! and the totals are reported.

use std::time::Duration;

use crate::helpers::TestApp;

#[tokio::test]
async fn old_finished_rows_and_expired_keys_are_pruned_and_failed_dead_and_recent_ones_kept() {
    let app = TestApp::builder()
        .env(|env| {
            env.insert("RETENTION_INTERVAL_SECS".into(), "1".into());
            env.insert("WEBHOOK_INBOX_RETENTION_DAYS".into(), "7".into());
            env.insert("SYNC_JOBS_RETENTION_DAYS".into(), "30".into());
        })
        .spawn()
        .await;
    // In arrival order, as the service writes them: 2,500 old processed deliveries
    // (three batches), an old failed one, then a processed one inside the window.
    let old: Vec<String> = (0..2_500)
        .map(|i| {
            format!(
                "('application/x-www-form-urlencoded', 'a=1', 'processed', \
                 NOW(6) - INTERVAL 9 DAY + INTERVAL {i} SECOND)"
            )
        })
        .collect();
    app.db.execute(&format!(
        "INSERT INTO webhook_inbox (content_type, body, status, received_at) VALUES {}",
        old.join(",")
    ));
    app.db.execute(
        "INSERT INTO webhook_inbox (content_type, body, status, received_at, next_attempt_at) VALUES \
         ('application/x-www-form-urlencoded', 'failed=1', 'failed', NOW(6) - INTERVAL 8 DAY, NOW(6) + INTERVAL 1 DAY), \
         ('application/x-www-form-urlencoded', 'recent=1', 'processed', NOW(6) - INTERVAL 6 DAY, NOW(6))",
    );
    app.db.execute(
        "INSERT INTO sync_jobs (entity, record_id, status, created_at, updated_at, next_attempt_at) VALUES \
         ('contact', 1, 'done', NOW(6) - INTERVAL 40 DAY, NOW(6) - INTERVAL 39 DAY, NOW(6)), \
         ('contact', 2, 'dead', NOW(6) - INTERVAL 39 DAY, NOW(6) - INTERVAL 39 DAY, NOW(6)), \
         ('contact', 3, 'done', NOW(6) - INTERVAL 35 DAY, NOW(6) - INTERVAL 31 DAY, NOW(6)), \
         ('contact', 4, 'done', NOW(6) - INTERVAL 35 DAY, NOW(6) - INTERVAL 20 DAY, NOW(6)), \
         ('lead', 5, 'done', NOW(6) - INTERVAL 10 DAY, NOW(6) - INTERVAL 10 DAY, NOW(6))",
    );
    // 1,200 keys past their expiry (two batches) and one still replayable.
    let expired: Vec<String> = (0..1_200)
        .map(|i| {
            format!(
                "('forms', 'old-{i}', REPEAT('a', 64), 'done',                  NOW(6) - INTERVAL 2 DAY + INTERVAL {i} SECOND)"
            )
        })
        .collect();
    app.db.execute(&format!(
        "INSERT INTO idempotency_keys (client_id, idem_key, request_hash, status, expires_at) \
         VALUES {}, ('forms', 'live', REPEAT('b', 64), 'done', NOW(6) + INTERVAL 20 HOUR)",
        expired.join(",")
    ));

    app.wait_for_within(
        "SELECT COUNT(*) AS n FROM webhook_inbox",
        2,
        Duration::from_secs(30),
    )
    .await;
    app.wait_for_within(
        "SELECT COUNT(*) AS n FROM sync_jobs",
        3,
        Duration::from_secs(30),
    )
    .await;
    app.wait_for_within(
        "SELECT COUNT(*) AS n FROM idempotency_keys",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        app.db
            .query_strings("SELECT CONVERT(idem_key USING utf8mb4) AS s FROM idempotency_keys"),
        vec!["live"]
    );
    assert_eq!(
        app.db.query_strings(
            "SELECT CONVERT(body USING utf8mb4) AS s FROM webhook_inbox ORDER BY id"
        ),
        vec!["failed=1", "recent=1"]
    );
    assert_eq!(
        app.db.query_strings(
            "SELECT CONCAT(record_id, ':', status) AS s FROM sync_jobs ORDER BY record_id"
        ),
        vec!["2:dead", "4:done", "5:done"]
    );

    let metrics = app.get_text("/metrics").await;
    let pruned = |table: &str| {
        let series = format!(r#"amosync_retention_pruned_rows_total{{table="{table}"}} "#);
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Process-wide counters: other tests' apps may add to them, never take away.
    assert!(pruned("webhook_inbox") >= 2_500.0, "{metrics}");
    assert!(pruned("sync_jobs") >= 2.0, "{metrics}");
    assert!(pruned("idempotency_keys") >= 1_200.0, "{metrics}");

    let out = app.cli(&["db", "stats"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = |table: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        row("webhook_inbox").get(3).map(String::as_str),
        Some("2500"),
        "{stdout}"
    );
    assert_eq!(
        row("sync_jobs").get(3).map(String::as_str),
        Some("2"),
        "{stdout}"
    );
    assert_eq!(
        row("idempotency_keys").get(3).map(String::as_str),
        Some("1200"),
        "{stdout}"
    );
    assert_eq!(
        row("contacts").get(3).map(String::as_str),
        Some("0"),
        "{stdout}"
    );
}
