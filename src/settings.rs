//! One typed `Settings`, read once from the environment (and `.env` when present).
//!
//! The variable names of the earlier Node service (`DB_*`, `AMO_*`, `PORT`,
//! `SERVER_URL`) keep working; `DATABASE_URL` and `AMO_BASE_URL` override them.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::domain::Region;

mod api_tokens;
mod exposure;
mod parse;
mod report;
mod sections;

pub use api_tokens::{ApiClientToken, ApiTokens, Client, Scope, Scopes, LEGACY_SCOPES};
pub use exposure::{Exposure, Refusal, DEMO_SWITCH};
pub use sections::{Amo, Catalogue, Db, Http, Log, Reconcile, Retention, Sync, Webhooks};

use parse::{
    amo_access_token, amo_base_url, api_tokens, database_url, default_workers, flag, is_local_host,
    log_level, metrics_token, millis_or, parse_or, parse_url, secs_or, subdomain_of, token_cipher,
    trusted_proxies, webhook_secret,
};

/// A value that must never reach a log line or a `Debug` dump.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub http: Http,
    pub db: Db,
    pub amo: Amo,
    pub sync: Sync,
    pub webhooks: Webhooks,
    pub reconcile: Reconcile,
    pub retention: Retention,
    pub catalogue: Catalogue,
    pub log: Log,
    /// How a phone without a country code is read (`DEFAULT_PHONE_REGION`).
    pub default_phone_region: Region,
    /// `AMOSYNC_DEMO=true`: a throw-away demo against a local fake may run with the
    /// published sample values (see `exposure`).
    pub demo: bool,
}

/// Where a new contact's phone (or a new lead's name) is looked up before amosync
/// creates it in AmoCRM. The local mirror is always asked first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DedupMode {
    /// Search AmoCRM only while the mirror is not authoritative (full import done,
    /// webhook verified, reconciliation current).
    #[default]
    Auto,
    /// Always search AmoCRM first: one extra request per new record.
    Remote,
    /// Never search AmoCRM: trust the mirror, whatever its state.
    Mirror,
}

impl DedupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DedupMode::Auto => "auto",
            DedupMode::Remote => "remote",
            DedupMode::Mirror => "mirror",
        }
    }
}

impl std::str::FromStr for DedupMode {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.to_ascii_lowercase().as_str() {
            "auto" => Ok(DedupMode::Auto),
            "remote" => Ok(DedupMode::Remote),
            "mirror" => Ok(DedupMode::Mirror),
            other => Err(format!("`{other}` is not one of auto, remote, mirror")),
        }
    }
}

/// Loopback and private networks: where nginx runs next to amosync or in compose.
pub const DEFAULT_TRUSTED_PROXIES: &str =
    "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

/// What the webhook subscribes to unless `WEBHOOK_EVENTS` says otherwise. Company
/// events fill the companies mirror (AmoCRM sends them under `contacts[...]`).
pub const DEFAULT_WEBHOOK_EVENTS: [&str; 13] = [
    "add_contact",
    "update_contact",
    "delete_contact",
    "restore_contact",
    "add_lead",
    "update_lead",
    "delete_lead",
    "restore_lead",
    "status_lead",
    "add_company",
    "update_company",
    "delete_company",
    "restore_company",
];

impl Settings {
    /// `{SERVER_URL}/webhooks/amocrm/{WEBHOOK_SECRET}`, when both are set.
    pub fn webhook_destination(&self) -> Option<String> {
        let base = self
            .http
            .server_url
            .as_ref()?
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        let secret = self.webhooks.secret.as_ref()?;
        Some(format!("{base}/webhooks/amocrm/{}", secret.expose()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("missing required environment variable {0}")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Ok(Settings {
            http: Http {
                bind_addr: parse_or(&get, "BIND_ADDR", IpAddr::from([0, 0, 0, 0]))?,
                port: parse_or(&get, "PORT", 3000)?,
                server_url: get("SERVER_URL")
                    .map(|v| parse_url("SERVER_URL", &v))
                    .transpose()?,
                workers: parse_or(&get, "HTTP_WORKERS", default_workers())?,
                max_body_bytes: parse_or(&get, "MAX_BODY_BYTES", 64 * 1024)?,
                api_tokens: api_tokens(&get)?,
                trusted_proxies: trusted_proxies(
                    &get("TRUSTED_PROXIES").unwrap_or_else(|| DEFAULT_TRUSTED_PROXIES.into()),
                )?,
                metrics_token: metrics_token(&get)?,
            },
            db: Db {
                url: Secret(database_url(&get)?),
                pool_size: parse_or(&get, "DB_POOL_SIZE", 10)?,
                wait: Duration::from_secs(parse_or(&get, "DB_WAIT_SECS", 60)?),
                checkout_timeout: Duration::from_millis(parse_or(
                    &get,
                    "DB_CHECKOUT_TIMEOUT_MS",
                    3000,
                )?),
            },
            amo: Amo {
                base_url: amo_base_url(&get)?,
                access_token: amo_access_token(&get)?,
                client_id: get("AMO_CLIENT_ID"),
                client_secret: get("AMO_CLIENT_SECRET").map(Secret),
                redirect_uri: get("AMO_REDIRECT_URI"),
                connect_timeout: Duration::from_secs(parse_or(
                    &get,
                    "AMO_CONNECT_TIMEOUT_SECS",
                    5,
                )?),
                request_timeout: Duration::from_secs(parse_or(&get, "AMO_TIMEOUT_SECS", 15)?),
                max_rps: parse_or(&get, "AMO_MAX_RPS", 7)?,
                access_probe: Duration::from_secs(parse_or(&get, "AMO_ACCESS_PROBE_SECS", 60)?),
                dedup: parse_or(&get, "AMO_DEDUP", DedupMode::Auto)?,
                account_id: get("AMO_ACCOUNT_ID")
                    .map(|raw| {
                        raw.parse().map_err(|_| SettingsError::Invalid {
                            name: "AMO_ACCOUNT_ID",
                            reason: "not an integer".into(),
                        })
                    })
                    .transpose()?,
                subdomain: get("AMO_DOMAIN").map(|domain| subdomain_of(&domain)),
                token_cipher: token_cipher(&get)?,
            },
            sync: {
                let default = Sync::default();
                Sync {
                    inline_budget: millis_or(&get, "SYNC_INLINE_BUDGET_MS", default.inline_budget)?,
                    max_attempts: parse_or(&get, "SYNC_MAX_ATTEMPTS", default.max_attempts)?,
                    lease: secs_or(&get, "SYNC_LEASE_SECS", default.lease)?,
                    retry_base: millis_or(&get, "SYNC_RETRY_BASE_MS", default.retry_base)?,
                }
            },
            webhooks: Webhooks {
                secret: webhook_secret(&get)?,
                max_body_bytes: parse_or(&get, "WEBHOOK_MAX_BODY_BYTES", 1024 * 1024)?,
                events: match get("WEBHOOK_EVENTS") {
                    Some(raw) => raw
                        .split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    None => DEFAULT_WEBHOOK_EVENTS
                        .iter()
                        .map(|e| e.to_string())
                        .collect(),
                },
            },
            reconcile: Reconcile {
                interval: Duration::from_secs(parse_or(&get, "RECONCILE_INTERVAL_SECS", 300)?),
                max_pages: parse_or(&get, "RECONCILE_MAX_PAGES", 20)?,
            },
            retention: Retention {
                inbox_days: parse_or(&get, "WEBHOOK_INBOX_RETENTION_DAYS", 7)?,
                jobs_days: parse_or(&get, "SYNC_JOBS_RETENTION_DAYS", 30)?,
                interval: Duration::from_secs(
                    parse_or(&get, "RETENTION_INTERVAL_SECS", 600u64)?.max(1),
                ),
            },
            catalogue: Catalogue {
                refresh: Duration::from_secs(parse_or(&get, "CATALOGUE_REFRESH_SECS", 3600u64)?),
            },
            log: Log {
                level: log_level(&get)?,
            },
            default_phone_region: match get("DEFAULT_PHONE_REGION") {
                Some(v) => v.parse().map_err(|reason| SettingsError::Invalid {
                    name: "DEFAULT_PHONE_REGION",
                    reason,
                })?,
                None => Region::default(),
            },
            demo: flag(&get, DEMO_SWITCH)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    const BASE: &[(&str, &str)] = &[
        ("DB_NAME", "amosync"),
        ("AMO_DOMAIN", "example"),
        ("AMO_ACCESS_TOKEN", "secret-access-token"),
        ("API_TOKENS", "0123456789abcdef0123"),
    ];

    #[test]
    fn plain_http_is_only_for_a_local_fake() {
        for local in [
            "http://127.0.0.1:8090",
            "http://fake-amocrm:8090",
            "http://localhost:8090",
            "http://10.0.0.5",
            "https://example.amocrm.ru",
        ] {
            let mut vars = BASE.to_vec();
            vars.push(("AMO_BASE_URL", local));
            assert!(settings(&vars).is_ok(), "{local}");
        }
        for remote in [
            "http://example.amocrm.ru",
            "http://example.kommo.com/",
            "http://203.0.113.7",
        ] {
            let mut vars = BASE.to_vec();
            vars.push(("AMO_BASE_URL", remote));
            assert!(
                matches!(
                    settings(&vars).err(),
                    Some(SettingsError::Invalid { name: "AMO_BASE_URL", reason }) if reason.contains("https://")
                ),
                "{remote}"
            );
        }
    }

    #[test]
    fn node_service_variables_are_enough() {
        let s = settings(BASE).expect("valid");
        assert_eq!(s.db.url.expose(), "mysql://root@127.0.0.1:3306/amosync");
        assert_eq!(s.amo.base_url.as_str(), "https://example.amocrm.ru/");
        assert_eq!(s.http.port, 3000);
        assert_eq!(s.http.api_tokens[0].client_id, "client-1");
    }

    #[test]
    fn database_url_and_amo_base_url_win_over_their_parts() {
        let mut vars = BASE.to_vec();
        vars.push(("DATABASE_URL", "mysql://u:p@db:3307/x"));
        vars.push(("AMO_BASE_URL", "http://127.0.0.1:9000"));
        let s = settings(&vars).expect("valid");
        assert_eq!(s.db.url.expose(), "mysql://u:p@db:3307/x");
        assert_eq!(s.amo.base_url.as_str(), "http://127.0.0.1:9000/");
    }

    #[test]
    fn db_password_with_special_characters_is_encoded() {
        let mut vars = BASE.to_vec();
        vars.push(("DB_PASSWORD", "p@ss:w/rd"));
        vars.push(("DB_HOST", "db"));
        let s = settings(&vars).expect("valid");
        assert_eq!(
            s.db.url.expose(),
            "mysql://root:p%40ss%3Aw%2Frd@db:3306/amosync"
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        let vars: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != "API_TOKENS")
            .collect();
        assert_eq!(
            settings(&vars).err(),
            Some(SettingsError::Missing("API_TOKENS"))
        );
        let mut vars: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != "AMO_ACCESS_TOKEN")
            .collect();
        assert!(matches!(
            settings(&vars).err(),
            Some(SettingsError::Missing(name)) if name.starts_with("AMO_ACCESS_TOKEN")
        ));
        vars.extend([
            ("AMO_CLIENT_ID", "id"),
            ("AMO_CLIENT_SECRET", "s"),
            ("AMO_REDIRECT_URI", "https://x.example/cb"),
        ]);
        assert!(matches!(
            settings(&vars).err(),
            Some(SettingsError::Missing(name)) if name.starts_with("TOKEN_ENCRYPTION_KEY")
        ));
        vars.push(("TOKEN_ENCRYPTION_KEY", KEY));
        let oauth =
            crate::amo::OAuthClient::from_settings(&settings(&vars).expect("OAuth mode").amo)
                .expect("oauth client");
        assert_eq!(
            oauth.token_url.as_str(),
            "https://example.amocrm.ru/oauth2/access_token"
        );
        assert!(
            crate::amo::OAuthClient::from_settings(&settings(BASE).expect("long-lived").amo)
                .is_none()
        );
    }

    #[test]
    fn named_tokens_and_bad_values_are_understood() {
        let mut vars = BASE.to_vec();
        vars.retain(|(k, _)| *k != "API_TOKENS");
        vars.push((
            "API_TOKENS",
            "forms:aaaaaaaaaaaaaaaa, partner:bbbbbbbbbbbbbbbb",
        ));
        vars.push(("PORT", "nope"));
        assert!(matches!(
            settings(&vars).err(),
            Some(SettingsError::Invalid { name: "PORT", .. })
        ));
        vars.retain(|(k, _)| *k != "PORT");
        let s = settings(&vars).expect("valid");
        let ids: Vec<_> = s
            .http
            .api_tokens
            .iter()
            .map(|t| t.client_id.as_str())
            .collect();
        assert_eq!(ids, ["forms", "partner"]);
    }

    #[test]
    fn webhook_settings_have_safe_defaults_and_checks() {
        let s = settings(BASE).expect("valid");
        assert!(s.webhooks.secret.is_none());
        assert_eq!(s.webhook_destination(), None);
        assert_eq!(s.amo.subdomain.as_deref(), Some("example"));
        assert_eq!(s.webhooks.events.len(), 13);
        assert!(s.webhooks.events.iter().any(|e| e == "update_company"));
        let mut vars = BASE.to_vec();
        vars.push(("WEBHOOK_SECRET", "too-short"));
        assert!(matches!(
            settings(&vars).err(),
            Some(SettingsError::Invalid {
                name: "WEBHOOK_SECRET",
                ..
            })
        ));
        vars.pop();
        vars.push(("WEBHOOK_SECRET", "0123456789abcdef0123456789abcdef"));
        vars.push(("SERVER_URL", "https://hooks.example.com/"));
        vars.push(("WEBHOOK_EVENTS", "add_contact, update_lead"));
        let s = settings(&vars).expect("valid");
        assert_eq!(
            s.webhook_destination().as_deref(),
            Some("https://hooks.example.com/webhooks/amocrm/0123456789abcdef0123456789abcdef")
        );
        assert_eq!(s.webhooks.events, ["add_contact", "update_lead"]);
        assert!(!format!("{s:?}").contains("0123456789abcdef0123456789abcdef"));
    }

    const KEY: &str = "q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng=";

    #[test]
    fn encryption_keys_are_checked_and_the_previous_one_needs_a_current_one() {
        assert!(settings(BASE)
            .expect("long-lived")
            .amo
            .token_cipher
            .is_none());
        let mut vars = BASE.to_vec();
        vars.push(("TOKEN_ENCRYPTION_KEY", "too-short"));
        assert!(matches!(
            settings(&vars).err(),
            Some(SettingsError::Invalid { name: "TOKEN_ENCRYPTION_KEY", reason })
                if reason.contains("openssl rand -base64 32")
        ));
        vars.pop();
        vars.push(("TOKEN_ENCRYPTION_KEY_PREVIOUS", KEY));
        assert!(matches!(
            settings(&vars).err(),
            Some(SettingsError::Invalid {
                name: "TOKEN_ENCRYPTION_KEY_PREVIOUS",
                ..
            })
        ));
        vars.push((
            "TOKEN_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ));
        let s = settings(&vars).expect("valid");
        assert!(s.amo.token_cipher.is_some());
        assert!(!format!("{s:?}").contains(KEY));
    }

    #[test]
    fn a_short_metrics_token_is_refused() {
        let mut vars = BASE.to_vec();
        vars.push(("METRICS_TOKEN", "short-token"));
        assert!(matches!(
            settings(&vars).err(),
            Some(SettingsError::Invalid {
                name: "METRICS_TOKEN",
                ..
            })
        ));
        vars.pop();
        vars.push(("METRICS_TOKEN", "scrape-token-0123456789"));
        assert!(settings(&vars).expect("valid").http.metrics_token.is_some());
    }

    #[test]
    fn trusted_proxies_take_addresses_networks_or_none() {
        let s = settings(BASE).expect("valid");
        assert!(s
            .http
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&"172.18.0.5".parse::<IpAddr>().expect("ip"))));
        let mut vars = BASE.to_vec();
        vars.push(("TRUSTED_PROXIES", "10.1.2.3, 192.168.0.0/16"));
        assert_eq!(
            settings(&vars).expect("valid").http.trusted_proxies.len(),
            2
        );
        vars.pop();
        vars.push(("TRUSTED_PROXIES", "none"));
        assert!(settings(&vars)
            .expect("valid")
            .http
            .trusted_proxies
            .is_empty());
        vars.pop();
        vars.push(("TRUSTED_PROXIES", "nginx"));
        assert!(matches!(
            settings(&vars).err(),
            Some(SettingsError::Invalid {
                name: "TRUSTED_PROXIES",
                ..
            })
        ));
    }

    #[test]
    fn dedup_defaults_to_auto_and_takes_only_known_modes() {
        assert_eq!(settings(BASE).expect("valid").amo.dedup, DedupMode::Auto);
        let mut vars = BASE.to_vec();
        vars.push(("AMO_DEDUP", "Mirror"));
        assert_eq!(settings(&vars).expect("valid").amo.dedup, DedupMode::Mirror);
        vars.pop();
        vars.push(("AMO_DEDUP", "never"));
        assert!(matches!(
            settings(&vars).err(),
            Some(SettingsError::Invalid {
                name: "AMO_DEDUP",
                ..
            })
        ));
    }

    #[test]
    fn sync_settings_default_from_the_section_and_read_their_variables() {
        let s = settings(BASE).expect("valid");
        assert_eq!(s.sync.lease, Sync::default().lease);
        assert_eq!(s.sync.lease, Duration::from_secs(90));
        let mut vars = BASE.to_vec();
        vars.push(("SYNC_LEASE_SECS", "40"));
        vars.push(("SYNC_RETRY_BASE_MS", "250"));
        let s = settings(&vars).expect("valid");
        assert_eq!(s.sync.lease, Duration::from_secs(40));
        assert_eq!(s.sync.retry_base, Duration::from_millis(250));
        vars.push(("SYNC_INLINE_BUDGET_MS", "soon"));
        assert!(matches!(
            settings(&vars).err(),
            Some(SettingsError::Invalid {
                name: "SYNC_INLINE_BUDGET_MS",
                ..
            })
        ));
    }

    /// The compose files pass every variable of `.env.example` as `VAR: ${VAR:-}`, so
    /// each one `.env` leaves out reaches amosync empty: that must mean its default.
    #[test]
    fn every_variable_compose_passes_empty_means_its_default() {
        let names: Vec<&str> = include_str!("../.env.example")
            .lines()
            .map(|line| line.strip_prefix('#').unwrap_or(line))
            .map(|line| line.strip_prefix(' ').unwrap_or(line))
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .filter(|name| {
                name.starts_with(|c: char| c.is_ascii_uppercase())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .filter(|name| !BASE.iter().any(|(set, _)| set == name))
            .collect();
        assert!(names.len() > 40, "{names:?}");
        let mut vars = BASE.to_vec();
        vars.extend(names.iter().map(|name| (*name, "")));
        let empty = settings(&vars).expect("empty values read as unset");
        let unset = settings(BASE).expect("valid");
        assert_eq!(format!("{empty:?}"), format!("{unset:?}"));
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = settings(BASE).expect("valid");
        let dump = format!("{s:?}");
        assert!(!dump.contains("secret-access-token"));
        assert!(!dump.contains("0123456789abcdef0123"));
    }
}
