//! The sections of `Settings`, one per part of the service that reads them; each
//! is handed whole to what needs it.

use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use super::{ApiClientToken, DedupMode, Secret};
use crate::crypto::TokenCipher;

/// The HTTP server and who may call it.
#[derive(Debug, Clone)]
pub struct Http {
    pub bind_addr: IpAddr,
    pub port: u16,
    /// Where AmoCRM reaches this service (`SERVER_URL`), for the webhook's address.
    pub server_url: Option<Url>,
    /// `HTTP_WORKERS`.
    pub workers: usize,
    /// `MAX_BODY_BYTES`: the largest JSON body accepted.
    pub max_body_bytes: usize,
    pub api_tokens: Vec<ApiClientToken>,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` are believed (the reverse proxy).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// When set, `GET /metrics` needs `Authorization: Bearer <METRICS_TOKEN>`.
    pub metrics_token: Option<Secret>,
}

/// The MySQL database.
#[derive(Debug, Clone)]
pub struct Db {
    /// `DATABASE_URL`, or made of the Node service's `DB_*` parts.
    pub url: Secret,
    pub pool_size: u32,
    /// How long start-up waits for the database to answer (`DB_WAIT_SECS`).
    pub wait: Duration,
    /// How long a query waits for a pooled connection (`DB_CHECKOUT_TIMEOUT_MS`).
    pub checkout_timeout: Duration,
}

/// The AmoCRM account and how it is called.
#[derive(Debug, Clone)]
pub struct Amo {
    pub base_url: Url,
    /// A long-lived token; empty in OAuth mode.
    pub access_token: Secret,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub redirect_uri: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Calls allowed in any one-second window (`AMO_MAX_RPS`, 0: no limit).
    pub max_rps: u32,
    /// While AmoCRM refuses access (401/402/403): one probe call this often (`AMO_ACCESS_PROBE_SECS`).
    pub access_probe: Duration,
    /// Whether a new contact or lead is first searched for in AmoCRM (`AMO_DEDUP`).
    pub dedup: DedupMode,
    /// Deliveries must come from this account (`AMO_ACCOUNT_ID`) ...
    pub account_id: Option<i64>,
    /// ... and this subdomain (taken from `AMO_DOMAIN`).
    pub subdomain: Option<String>,
    /// `TOKEN_ENCRYPTION_KEY` (and `_PREVIOUS`): seals the OAuth tokens in the
    /// database. Required in OAuth mode; a long-lived token is never stored.
    pub token_cipher: Option<TokenCipher>,
}

/// The outbox: how records reach AmoCRM.
#[derive(Debug, Clone, Copy)]
pub struct Sync {
    /// How long a request waits for AmoCRM before answering 202 (`SYNC_INLINE_BUDGET_MS`).
    pub inline_budget: Duration,
    /// Attempts before a sync job is dead (`SYNC_MAX_ATTEMPTS`).
    pub max_attempts: i32,
    /// How long a job's and a record's claim is exclusive, for requests and the worker
    /// alike (`SYNC_LEASE_SECS`): what a crash costs.
    pub lease: Duration,
    /// First retry delay of a failed sync job, doubled per attempt up to 5 min (`SYNC_RETRY_BASE_MS`).
    pub retry_base: Duration,
}

/// The sync settings' defaults, the only ones: what an unset variable means.
impl Default for Sync {
    fn default() -> Self {
        Sync {
            inline_budget: Duration::from_millis(1500),
            max_attempts: 10,
            // Longer than any single AmoCRM round (searches page through results, each
            // call has its own timeout); after a crash, a record waits this long.
            lease: Duration::from_secs(90),
            retry_base: Duration::from_secs(2),
        }
    }
}

/// AmoCRM's webhook.
#[derive(Debug, Clone)]
pub struct Webhooks {
    /// The secret path segment of the webhook URL; webhooks are off without it.
    pub secret: Option<Secret>,
    /// `WEBHOOK_MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// Events the webhook subscribes to in AmoCRM.
    pub events: Vec<String>,
}

/// Pulling AmoCRM's changes to heal lost webhooks.
#[derive(Debug, Clone, Copy)]
pub struct Reconcile {
    /// How often (`RECONCILE_INTERVAL_SECS`, 0: off).
    pub interval: Duration,
    /// Pages (of 250) per entity and round (`RECONCILE_MAX_PAGES`); the rest follows next round.
    pub max_pages: u32,
}

/// How long finished rows are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Days a processed webhook delivery is kept (`WEBHOOK_INBOX_RETENTION_DAYS`, 0: forever).
    pub inbox_days: u32,
    /// Days a done sync job is kept (`SYNC_JOBS_RETENTION_DAYS`, 0: forever).
    pub jobs_days: u32,
    /// Time between retention passes (`RETENTION_INTERVAL_SECS`).
    pub interval: Duration,
}

/// The AmoCRM account's catalogue (custom fields, pipelines, users) kept in the database.
#[derive(Debug, Clone, Copy)]
pub struct Catalogue {
    /// Time between refreshes (`CATALOGUE_REFRESH_SECS`, 0: only on demand).
    pub refresh: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Log {
    pub level: slog::Level,
}
