//! `/metrics`: route patterns as labels, queue gauges read at scrape time, the token.

use serde_json::json;

use crate::helpers::{spawn_app, TestApp, WEBHOOK_SECRET};
use crate::noise::{http_series, random_requests};

async fn scrape(app: &TestApp) -> String {
    let res = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(res.status().as_u16(), 200);
    res.text().await.expect("metrics text")
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn http_requests_are_counted_by_route_pattern_never_by_raw_path() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван Петров", "phone": "+79161234567"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(app.get("/api/v1/contacts/987654321").await.status, 404);
    // Scanners' made-up paths must not become label values either.
    assert_eq!(app.get("/api/v1/scan-probe-31337").await.status, 404);
    assert_eq!(app.get("/wp-login-31337.php").await.status, 404);
    let wrong_secret = "wrong-secret-value-0123456789abcdef";
    assert_eq!(
        app.deliver(wrong_secret, "application/x-www-form-urlencoded", "a=1")
            .await
            .status,
        404
    );

    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            r#"amosync_http_requests_total{endpoint="/api/v1/contacts/{id}",method="GET",status="404"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"amosync_http_requests_total{endpoint="/api/v1/contacts",method="POST",status="201"}"#
        ),
        Some(1.0)
    );
    assert!(text.contains(r#"amosync_http_requests_duration_seconds_bucket{endpoint="/api/v1/contacts",method="POST",status="201",le="#));
    assert!(text.contains(r#"endpoint="/webhooks/amocrm/{secret}""#));
    // AmoCRM calls are labelled by endpoint, without the phone the search carried.
    assert!(
        text.contains(r#"amosync_amocrm_requests_total{endpoint="GET /api/v4/contacts",status="#)
    );
    assert!(text.contains(
        r#"amosync_amocrm_request_duration_seconds_bucket{endpoint="POST /api/v4/contacts","#
    ));
    for raw in [
        "987654321",
        wrong_secret,
        WEBHOOK_SECRET,
        "9161234567",
        "31337",
    ] {
        assert!(!text.contains(raw), "{raw} leaked into the metrics");
    }
    assert!(sample(&text, r#"amosync_db_pool_connections{state="idle"}"#).is_some());
}

#[tokio::test]
async fn job_and_inbox_gauges_follow_the_tables() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    for series in [
        r#"amosync_sync_jobs{status="pending"}"#,
        r#"amosync_sync_jobs{status="dead"}"#,
        "amosync_webhook_inbox_pending",
        "amosync_sync_oldest_pending_job_age_seconds",
        "amosync_webhook_inbox_lag_seconds",
    ] {
        assert_eq!(sample(&before, series), Some(0.0), "{series} in {before}");
    }

    // Not due for an hour, so neither worker touches them while we look.
    app.db.execute(
        "INSERT INTO sync_jobs (entity, record_id, status, next_attempt_at, created_at) VALUES \
         ('contact', 1, 'pending', NOW(6) + INTERVAL 1 HOUR, NOW(6) - INTERVAL 120 SECOND), \
         ('contact', 2, 'dead', NOW(6), NOW(6)), ('lead', 3, 'dead', NOW(6), NOW(6))",
    );
    app.db.execute(
        "INSERT INTO webhook_inbox (content_type, body, next_attempt_at, received_at) VALUES \
         ('application/x-www-form-urlencoded', 'a=1', NOW(6) + INTERVAL 1 HOUR, \
          NOW(6) - INTERVAL 90 SECOND)",
    );

    let after = scrape(&app).await;
    assert_eq!(
        sample(&after, r#"amosync_sync_jobs{status="pending"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, r#"amosync_sync_jobs{status="dead"}"#),
        Some(2.0)
    );
    assert_eq!(sample(&after, "amosync_webhook_inbox_pending"), Some(1.0));
    let job_age = sample(&after, "amosync_sync_oldest_pending_job_age_seconds").unwrap_or(0.0);
    assert!((120.0..600.0).contains(&job_age), "job age {job_age}");
    let lag = sample(&after, "amosync_webhook_inbox_lag_seconds").unwrap_or(0.0);
    assert!((90.0..600.0).contains(&lag), "inbox lag {lag}");
}

#[tokio::test]
async fn with_metrics_token_set_metrics_need_that_bearer_token() {
    const TOKEN: &str = "scrape-token-0123456789";
    let app = TestApp::builder()
        .env(|env| {
            env.insert("METRICS_TOKEN".into(), TOKEN.into());
        })
        .spawn()
        .await;
    let anonymous = app.send(app.client.get(app.url("/metrics"))).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.problem_code(), "unauthorized");
    let wrong = app
        .send(
            app.client
                .get(app.url("/metrics"))
                .bearer_auth(format!("{TOKEN}x")),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let res = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("scrape");
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.expect("text");
    assert!(text.contains("amosync_sync_jobs"), "{text}");
}

#[tokio::test]
async fn invented_methods_and_paths_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    let mut rng = fastrand::Rng::with_seed(22);
    random_requests(&app.client, &app.address, 1_000, &mut rng).await;
    let warm = scrape(&app).await;
    random_requests(&app.client, &app.address, 10_000, &mut rng).await;
    let text = scrape(&app).await;
    let (before, after) = (http_series(&warm), http_series(&text));
    // Endpoints × {GET, POST, OTHER} × the few statuses these requests can get.
    assert!(
        after <= 40,
        "{after} request series after 11,000 requests:\n{text}"
    );
    assert!(
        after <= before + 3,
        "the series count kept growing: {before} -> {after}"
    );
    assert!(
        text.len() < 64 * 1024,
        "/metrics grew to {} bytes",
        text.len()
    );
    assert!(text.contains(r#"method="OTHER""#), "{text}");
    assert!(text.contains(r#"endpoint="UNMATCHED""#), "{text}");
}

/// A scrape from loopback (a trusted proxy) on behalf of `forwarded_for`.
async fn scrape_for(app: &TestApp, forwarded_for: &str, token: Option<&str>) -> u16 {
    let mut request = app
        .client
        .get(app.url("/metrics"))
        .header("x-forwarded-for", forwarded_for);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("reply").status().as_u16()
}

#[tokio::test]
async fn without_metrics_token_only_internal_networks_may_scrape() {
    let app = spawn_app().await;
    assert_eq!(scrape_for(&app, "10.20.30.40", None).await, 200);
    assert_eq!(scrape_for(&app, "203.0.113.7", None).await, 403);
    let refused = app
        .send(
            app.client
                .get(app.url("/metrics"))
                .header("x-forwarded-for", "203.0.113.7")
                .bearer_auth("a-guessed-token-0123456789"),
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.problem_code(), "forbidden");

    // Whoever cannot be a proxy cannot claim to forward for someone either.
    let direct = TestApp::builder()
        .env(|env| {
            env.insert("TRUSTED_PROXIES".into(), "none".into());
        })
        .spawn()
        .await;
    assert_eq!(scrape_for(&direct, "203.0.113.7", None).await, 200);
}

#[tokio::test]
async fn with_metrics_token_remote_scrapers_get_in_with_it() {
    const TOKEN: &str = "remote-scrape-token-0123456789";
    let app = TestApp::builder()
        .env(|env| {
            env.insert("METRICS_TOKEN".into(), TOKEN.into());
        })
        .spawn()
        .await;
    assert_eq!(scrape_for(&app, "203.0.113.7", Some(TOKEN)).await, 200);
    assert_eq!(scrape_for(&app, "203.0.113.7", None).await, 401);
    assert_eq!(scrape_for(&app, "10.0.0.9", None).await, 401);
}

/// What the alert rules read: the database answering, AmoCRM refusing access, the
/// dedup mode, and each table's size.
#[tokio::test]
async fn operations_gauges_show_database_amocrm_access_mode_and_table_sizes() {
    let app = TestApp::builder()
        .env(|env| {
            env.insert("AMO_DEDUP".into(), "remote".into());
        })
        .spawn()
        .await;
    let text = scrape(&app).await;
    assert_eq!(sample(&text, "amosync_database_up"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "amosync_amocrm_access_refused"), Some(0.0));
    assert_eq!(
        sample(&text, r#"amosync_dedup_mode{mode="remote"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"amosync_dedup_mode{mode="auto"}"#),
        Some(0.0)
    );
    for table in [
        "contacts",
        "leads",
        "sync_jobs",
        "webhook_inbox",
        "idempotency_keys",
    ] {
        let bytes = sample(&text, &format!(r#"amosync_table_bytes{{table="{table}"}}"#));
        assert!(
            bytes.is_some_and(|b| b > 0.0),
            "{table}: {bytes:?} in {text}"
        );
        let rows = sample(&text, &format!(r#"amosync_table_rows{{table="{table}"}}"#));
        assert!(rows.is_some(), "{table} rows in {text}");
    }
    assert!(!text.contains("__diesel_schema_migrations"));

    app.amo.fail_with(Some(403));
    let refused = app
        .post(
            "/api/v1/contacts",
            &json!({"name": "Иван Петров", "phone": "+79161234567"}),
        )
        .await;
    assert_eq!(refused.status, 202, "{}", refused.body);
    let text = scrape(&app).await;
    assert_eq!(sample(&text, "amosync_amocrm_access_refused"), Some(1.0));
}

#[tokio::test]
async fn a_database_that_does_not_answer_reads_database_up_0() {
    let app = TestApp::builder().without_database().spawn().await;
    let text = scrape(&app).await;
    assert_eq!(sample(&text, "amosync_database_up"), Some(0.0), "{text}");
}
