//! Prometheus metrics: HTTP requests (`http`, fed by `controllers::observe`), AmoCRM
//! call timings, and gauges of the queues and the pool that are refreshed when
//! `/metrics` is scraped.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

mod http;

pub use http::{method_label, status_label, UNMATCHED};

const NAMESPACE: &str = "amosync";

/// AmoCRM answers in tens of milliseconds to seconds; a timeout is 15 s by default.
const AMO_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0,
];

/// Process-wide, because the transport that feeds them is built before any registry;
/// every `Metrics` registry exposes the same collectors.
static AMO_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "amocrm_requests_total",
            "AmoCRM API calls by endpoint and status",
        )
        .namespace(NAMESPACE),
        &["endpoint", "status"],
    )
    .expect("valid metric definition")
});

static AMO_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "amocrm_request_duration_seconds",
            "Time until AmoCRM's response headers, by endpoint and status",
        )
        .namespace(NAMESPACE)
        .buckets(AMO_BUCKETS.to_vec()),
        &["endpoint", "status"],
    )
    .expect("valid metric definition")
});

static LIMITER_WAIT: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "amocrm_rate_limiter_wait_seconds",
            "How long AmoCRM calls waited for the rate limiter (0 when they did not)",
        )
        .namespace(NAMESPACE)
        .buckets(vec![
            0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
        ]),
        &[],
    )
    .expect("valid metric definition")
});

static TOKEN_REFRESHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "amocrm_token_refreshes_total",
            "OAuth token refreshes by result (ok, refused, failed)",
        )
        .namespace(NAMESPACE),
        &["result"],
    )
    .expect("valid metric definition")
});

/// Process-wide like the AmoCRM collectors: the sync worker, requests and `/ready`
/// all judge the mirror, whichever registry is scraped.
static MIRROR_AUTHORITATIVE: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::with_opts(
        Opts::new(
            "mirror_authoritative",
            "1 while the mirror is authoritative and AMO_DEDUP=auto skips AmoCRM's phone search",
        )
        .namespace(NAMESPACE),
    )
    .expect("valid metric definition")
});

static CONTACT_DUPLICATES: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::with_opts(
        Opts::new(
            "contact_duplicates_total",
            "Pairs of AmoCRM contacts found sharing one phone (each pair counted once)",
        )
        .namespace(NAMESPACE),
    )
    .expect("valid metric definition")
});

static WEBHOOK_EVENTS_IGNORED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "webhook_events_ignored_total",
            "Webhook event items acknowledged but not applied, by kind (entity[action]; \
             names outside AmoCRM's known vocabulary read `other`)",
        )
        .namespace(NAMESPACE),
        &["kind"],
    )
    .expect("valid metric definition")
});

static RETENTION_PRUNED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "retention_pruned_rows_total",
            "Rows retention deleted, by table (processed webhook deliveries, done sync jobs, \
             expired idempotency keys)",
        )
        .namespace(NAMESPACE),
        &["table"],
    )
    .expect("valid metric definition")
});

/// Counts rows retention deleted from `table`.
pub fn retention_pruned(table: &str, rows: usize) {
    RETENTION_PRUNED
        .with_label_values(&[table])
        .inc_by(rows as u64);
}

/// Counts applied deliveries' event items of kinds amosync does not apply. The
/// kinds come from `EventKind`'s fixed vocabulary, so the label set is bounded.
pub fn webhook_events_ignored(kinds: &[crate::webhooks::EventKind]) {
    for kind in kinds {
        WEBHOOK_EVENTS_IGNORED
            .with_label_values(&[kind.to_string().as_str()])
            .inc();
    }
}

/// Whether the mirror is authoritative, as last judged.
pub fn mirror_authoritative(authoritative: bool) {
    MIRROR_AUTHORITATIVE.set(i64::from(authoritative));
}

/// Counts newly found pairs of AmoCRM contacts with one phone.
pub fn contact_duplicates(pairs: usize) {
    CONTACT_DUPLICATES.inc_by(pairs as u64);
}

/// Records how long one AmoCRM call waited for its turn in the rate limiter.
pub fn limiter_wait(waited: Duration) {
    LIMITER_WAIT
        .with_label_values(&[] as &[&str])
        .observe(waited.as_secs_f64());
}

/// Records one OAuth refresh: `ok`, `refused` (re-authorisation needed) or `failed`.
pub fn token_refresh(result: &str) {
    TOKEN_REFRESHES.with_label_values(&[result]).inc();
}

/// Records one AmoCRM call. `what` is `"METHOD /path"` (never the query string);
/// numeric path segments become `{id}`, so the label set stays bounded.
/// `status` is `None` when no response came back (timeout, connection error).
pub fn amo_call(what: &str, status: Option<u16>, elapsed: Duration) {
    let endpoint = endpoint_label(what);
    let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
    let labels = [endpoint.as_str(), status.as_str()];
    AMO_REQUESTS.with_label_values(&labels).inc();
    AMO_DURATION
        .with_label_values(&labels)
        .observe(elapsed.as_secs_f64());
}

/// `GET /api/v4/contacts/123/links` -> `GET /api/v4/contacts/{id}/links`.
pub fn endpoint_label(what: &str) -> String {
    let (method, path) = what.split_once(' ').unwrap_or(("", what));
    let path = path.split('?').next().unwrap_or_default();
    let path: Vec<&str> = path
        .split('/')
        .map(|segment| {
            if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                segment
            }
        })
        .collect();
    format!("{method} {}", path.join("/")).trim().to_owned()
}

/// The connection pool's occupancy (`repositories::Db::pool_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub in_use: u32,
    pub idle: u32,
}

/// The backlog of both queues, as of one query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub jobs_pending: i64,
    pub jobs_in_flight: i64,
    pub jobs_dead: i64,
    /// `None` when no job is pending.
    pub oldest_pending_job_secs: Option<i64>,
    pub inbox_pending: i64,
    /// Age of the oldest unapplied delivery; `None` when the inbox is drained.
    pub inbox_lag_secs: Option<i64>,
}

/// One table's approximate size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSize {
    pub table: String,
    /// InnoDB's estimate; it can be off by tens of percent.
    pub rows: i64,
    /// Data and indexes.
    pub bytes: i64,
}

/// One application's registry: the HTTP middleware, the AmoCRM collectors and the
/// gauges `/metrics` refreshes from the database and the pool.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http: http::HttpMetrics,
    sync_jobs: IntGaugeVec,
    oldest_pending_job: Gauge,
    inbox_pending: IntGauge,
    inbox_lag: Gauge,
    pool: IntGaugeVec,
    database_up: IntGauge,
    access_refused: IntGauge,
    dedup_mode: IntGaugeVec,
    table_rows: IntGaugeVec,
    table_bytes: IntGaugeVec,
    /// Every metric name this registry can expose, even before its first sample.
    names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct MetricsError(String);

impl From<prometheus::Error> for MetricsError {
    fn from(err: prometheus::Error) -> Self {
        MetricsError(err.to_string())
    }
}

impl Metrics {
    /// One HTTP request's count and latency sample, labelled from bounded sets.
    pub fn observe_request(
        &self,
        endpoint: &str,
        method: &actix_web::http::Method,
        status: actix_web::http::StatusCode,
        elapsed: Duration,
    ) {
        self.http.observe(endpoint, method, status, elapsed);
    }

    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let http = http::HttpMetrics::register(&registry)?;
        let sync_jobs = IntGaugeVec::new(
            Opts::new(
                "sync_jobs",
                "Sync jobs by status (in_flight: pending and leased by a worker)",
            )
            .namespace(NAMESPACE),
            &["status"],
        )?;
        let oldest_pending_job = Gauge::with_opts(
            Opts::new(
                "sync_oldest_pending_job_age_seconds",
                "Age of the oldest pending sync job (0 when none)",
            )
            .namespace(NAMESPACE),
        )?;
        let inbox_pending = IntGauge::with_opts(
            Opts::new(
                "webhook_inbox_pending",
                "Webhook deliveries stored but not yet applied",
            )
            .namespace(NAMESPACE),
        )?;
        let inbox_lag = Gauge::with_opts(
            Opts::new(
                "webhook_inbox_lag_seconds",
                "Age of the oldest unapplied webhook delivery (0 when none)",
            )
            .namespace(NAMESPACE),
        )?;
        let pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state")
                .namespace(NAMESPACE),
            &["state"],
        )?;
        let database_up = IntGauge::with_opts(
            Opts::new(
                "database_up",
                "1 when the last scrape's queue query succeeded, 0 when the database failed it",
            )
            .namespace(NAMESPACE),
        )?;
        let access_refused = IntGauge::with_opts(
            Opts::new(
                "amocrm_access_refused",
                "1 while AmoCRM refuses access (401, 402, 403) and calls are held back",
            )
            .namespace(NAMESPACE),
        )?;
        let dedup_mode = IntGaugeVec::new(
            Opts::new("dedup_mode", "AMO_DEDUP in force: 1 for its mode").namespace(NAMESPACE),
            &["mode"],
        )?;
        let table_rows = IntGaugeVec::new(
            Opts::new(
                "table_rows",
                "Approximate rows per table (InnoDB's estimate)",
            )
            .namespace(NAMESPACE),
            &["table"],
        )?;
        let table_bytes = IntGaugeVec::new(
            Opts::new(
                "table_bytes",
                "Approximate bytes per table, data and indexes",
            )
            .namespace(NAMESPACE),
            &["table"],
        )?;
        let mut names = http.names();
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(AMO_REQUESTS.clone()),
            Box::new(AMO_DURATION.clone()),
            Box::new(LIMITER_WAIT.clone()),
            Box::new(TOKEN_REFRESHES.clone()),
            Box::new(MIRROR_AUTHORITATIVE.clone()),
            Box::new(CONTACT_DUPLICATES.clone()),
            Box::new(WEBHOOK_EVENTS_IGNORED.clone()),
            Box::new(RETENTION_PRUNED.clone()),
            Box::new(sync_jobs.clone()),
            Box::new(oldest_pending_job.clone()),
            Box::new(inbox_pending.clone()),
            Box::new(inbox_lag.clone()),
            Box::new(pool.clone()),
            Box::new(database_up.clone()),
            Box::new(access_refused.clone()),
            Box::new(dedup_mode.clone()),
            Box::new(table_rows.clone()),
            Box::new(table_bytes.clone()),
        ];
        for collector in collectors {
            names.extend(collector.desc().iter().map(|d| d.fq_name.clone()));
            registry.register(collector)?;
        }
        Ok(Metrics {
            registry,
            http,
            sync_jobs,
            oldest_pending_job,
            inbox_pending,
            inbox_lag,
            pool,
            database_up,
            access_refused,
            dedup_mode,
            table_rows,
            table_bytes,
            names,
        })
    }

    /// The names of every metric this registry exposes (histograms as their base
    /// name), whether or not a sample was recorded yet: what alert rules and
    /// dashboards may refer to.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether the database answered the scrape's queries.
    pub fn record_database_up(&self, up: bool) {
        self.database_up.set(i64::from(up));
    }

    /// AmoCRM access as the transport last saw it, and the dedup mode in force.
    pub fn record_amocrm(&self, access_refused: bool, dedup_mode: &str) {
        self.access_refused.set(i64::from(access_refused));
        for mode in ["auto", "remote", "mirror"] {
            self.dedup_mode
                .with_label_values(&[mode])
                .set(i64::from(mode == dedup_mode));
        }
    }

    pub fn record_tables(&self, tables: &[TableSize]) {
        for t in tables {
            self.table_rows.with_label_values(&[&t.table]).set(t.rows);
            self.table_bytes.with_label_values(&[&t.table]).set(t.bytes);
        }
    }

    pub fn record_queues(&self, stats: &QueueStats) {
        self.sync_jobs
            .with_label_values(&["pending"])
            .set(stats.jobs_pending);
        self.sync_jobs
            .with_label_values(&["in_flight"])
            .set(stats.jobs_in_flight);
        self.sync_jobs
            .with_label_values(&["dead"])
            .set(stats.jobs_dead);
        self.oldest_pending_job
            .set(stats.oldest_pending_job_secs.unwrap_or(0).max(0) as f64);
        self.inbox_pending.set(stats.inbox_pending);
        self.inbox_lag
            .set(stats.inbox_lag_secs.unwrap_or(0).max(0) as f64);
    }

    pub fn record_pool(&self, state: PoolState) {
        self.pool
            .with_label_values(&["in_use"])
            .set(i64::from(state.in_use));
        self.pool
            .with_label_values(&["idle"])
            .set(i64::from(state.idle));
    }

    /// The registry in Prometheus' text exposition format.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| MetricsError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_labels_replace_ids_and_drop_queries() {
        let cases = [
            ("GET /api/v4/contacts", "GET /api/v4/contacts"),
            ("GET /api/v4/contacts/123", "GET /api/v4/contacts/{id}"),
            ("POST /api/v4/leads/77/link", "POST /api/v4/leads/{id}/link"),
            ("GET /api/v4/contacts?query=7916", "GET /api/v4/contacts"),
            ("DELETE /api/v4/webhooks", "DELETE /api/v4/webhooks"),
        ];
        for (what, want) in cases {
            assert_eq!(endpoint_label(what), want, "{what}");
        }
    }

    #[test]
    fn a_recorded_amocrm_call_appears_in_every_registry() {
        let metrics = Metrics::new().expect("registry");
        amo_call(
            "PATCH /api/v4/contacts/98765",
            Some(200),
            Duration::from_millis(20),
        );
        amo_call("GET /api/v4/leads", None, Duration::from_secs(2));
        let text = metrics.encode().expect("encode");
        assert!(
            text.contains(
                r#"amosync_amocrm_requests_total{endpoint="PATCH /api/v4/contacts/{id}",status="200"}"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"endpoint="GET /api/v4/leads",status="error""#));
        assert!(!text.contains("98765"));
    }

    #[test]
    fn queue_gauges_show_what_was_recorded() {
        let metrics = Metrics::new().expect("registry");
        metrics.record_queues(&QueueStats {
            jobs_pending: 3,
            jobs_in_flight: 1,
            jobs_dead: 2,
            oldest_pending_job_secs: Some(42),
            inbox_pending: 5,
            inbox_lag_secs: None,
        });
        metrics.record_pool(PoolState { in_use: 4, idle: 6 });
        let text = metrics.encode().expect("encode");
        for line in [
            r#"amosync_sync_jobs{status="dead"} 2"#,
            r#"amosync_sync_jobs{status="pending"} 3"#,
            "amosync_sync_oldest_pending_job_age_seconds 42",
            "amosync_webhook_inbox_pending 5",
            "amosync_webhook_inbox_lag_seconds 0",
            r#"amosync_db_pool_connections{state="in_use"} 4"#,
        ] {
            assert!(text.contains(line), "missing {line} in {text}");
        }
    }
}
