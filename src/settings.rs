//! One typed `Settings`, read once from the environment (and `.env` when present).
//!
//! The variable names of the earlier Node service (`DB_*`, `AMO_*`, `PORT`,
//! `SERVER_URL`) keep working; `DATABASE_URL` and `AMO_BASE_URL` override them.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use crate::crypto::{EncryptionKey, TokenCipher};
use crate::domain::Region;

mod api_tokens;
mod exposure;
mod report;
mod sections;

pub use api_tokens::{ApiClientToken, Scope, Scopes, LEGACY_SCOPES};
pub use exposure::{Exposure, Refusal, DEMO_SWITCH};
pub use sections::{Amo, Db, Http, Log, Reconcile, Retention, Sync, Webhooks};

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

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`); unset is `false`.
fn flag(get: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<bool, SettingsError> {
    match get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(_) => Err(SettingsError::Invalid {
            name,
            reason: "use true or false".into(),
        }),
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn parse_or<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, SettingsError>
where
    T::Err: fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e: T::Err| SettingsError::Invalid {
            name,
            reason: e.to_string(),
        }),
    }
}

/// A whole number of seconds; unset is `default`.
fn secs_or(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, SettingsError> {
    parse_or(get, name, default.as_secs()).map(Duration::from_secs)
}

/// A whole number of milliseconds; unset is `default`.
fn millis_or(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, SettingsError> {
    let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    parse_or(get, name, default).map(Duration::from_millis)
}

fn parse_url(name: &'static str, raw: &str) -> Result<Url, SettingsError> {
    let url = Url::parse(raw).map_err(|e| SettingsError::Invalid {
        name,
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(SettingsError::Invalid {
            name,
            reason: format!("scheme `{other}` is not http(s)"),
        }),
    }
}

/// `DATABASE_URL` wins; otherwise the Node service's `DB_*` parts, user and
/// password percent-encoded so any character is allowed in them.
fn database_url(get: &impl Fn(&str) -> Option<String>) -> Result<String, SettingsError> {
    if let Some(url) = get("DATABASE_URL") {
        if !url.starts_with("mysql://") {
            return Err(SettingsError::Invalid {
                name: "DATABASE_URL",
                reason: "must start with mysql://".into(),
            });
        }
        return Ok(url);
    }
    let name = get("DB_NAME").ok_or(SettingsError::Missing("DATABASE_URL or DB_NAME"))?;
    let host = get("DB_HOST").unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = parse_or(get, "DB_PORT", 3306)?;
    let invalid = |reason: String| SettingsError::Invalid {
        name: "DB_HOST",
        reason,
    };
    let mut url =
        Url::parse(&format!("mysql://{host}:{port}/")).map_err(|e| invalid(e.to_string()))?;
    url.set_path(&name);
    url.set_username(&get("DB_USER").unwrap_or_else(|| "root".into()))
        .map_err(|_| invalid("cannot carry a user name".into()))?;
    if let Some(password) = get("DB_PASSWORD") {
        url.set_password(Some(&password))
            .map_err(|_| invalid("cannot carry a password".into()))?;
    }
    Ok(url.to_string())
}

/// `AMO_BASE_URL` wins (a local fake over plain http works); otherwise
/// `https://{AMO_DOMAIN}`, where a bare subdomain means `{it}.amocrm.ru`.
fn amo_base_url(get: &impl Fn(&str) -> Option<String>) -> Result<Url, SettingsError> {
    if let Some(raw) = get("AMO_BASE_URL") {
        let url = parse_url("AMO_BASE_URL", &raw)?;
        if url.scheme() == "http" && !is_local_host(&url) {
            return Err(SettingsError::Invalid {
                name: "AMO_BASE_URL",
                reason: "plain http would send the AmoCRM token in clear: use https://, \
                         or leave AMO_BASE_URL empty for https://{AMO_DOMAIN} (http is only \
                         for a local fake: loopback, a private address or a one-word host \
                         such as a compose service)"
                    .into(),
            });
        }
        return Ok(url);
    }
    let domain = get("AMO_DOMAIN").ok_or(SettingsError::Missing("AMO_BASE_URL or AMO_DOMAIN"))?;
    let host = domain
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let host = if host.contains('.') {
        host.to_owned()
    } else {
        format!("{host}.amocrm.ru")
    };
    parse_url("AMO_DOMAIN", &format!("https://{host}"))
}

/// `API_TOKENS=forms:write:token,crm:read+admin:token2` (see `api_tokens`); the name
/// before the first `:` names the client in logs, so tokens themselves never appear there.
fn api_tokens(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<ApiClientToken>, SettingsError> {
    let raw = get("API_TOKENS").ok_or(SettingsError::Missing("API_TOKENS"))?;
    let mut tokens = Vec::new();
    for (index, entry) in raw
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        tokens.push(api_tokens::parse_entry(entry, index)?);
    }
    if tokens.is_empty() {
        return Err(SettingsError::Missing("API_TOKENS"));
    }
    Ok(tokens)
}

/// A host a fake AmoCRM runs on: loopback, a private address, `localhost` or a name
/// without dots (a compose service). Never a real account's `*.amocrm.ru`.
fn is_local_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => crate::telemetry::is_internal(&IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => crate::telemetry::is_internal(&IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => name == "localhost" || !name.contains('.'),
        None => false,
    }
}

/// A long-lived token, or (OAuth mode, token empty) the three integration settings.
fn amo_access_token(get: &impl Fn(&str) -> Option<String>) -> Result<Secret, SettingsError> {
    match get("AMO_ACCESS_TOKEN") {
        Some(token) => Ok(Secret(token)),
        None if ["AMO_CLIENT_ID", "AMO_CLIENT_SECRET", "AMO_REDIRECT_URI"]
            .iter()
            .all(|k| get(k).is_some()) =>
        {
            Ok(Secret(String::new()))
        }
        None => Err(SettingsError::Missing(
            "AMO_ACCESS_TOKEN (or AMO_CLIENT_ID, AMO_CLIENT_SECRET and AMO_REDIRECT_URI for OAuth)",
        )),
    }
}

/// The OAuth tokens' encryption keys; OAuth mode (no `AMO_ACCESS_TOKEN`) needs one.
fn token_cipher(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<TokenCipher>, SettingsError> {
    let key = |name: &'static str| {
        get(name)
            .map(|raw| {
                EncryptionKey::from_base64(&raw)
                    .map_err(|reason| SettingsError::Invalid { name, reason })
            })
            .transpose()
    };
    let current = key("TOKEN_ENCRYPTION_KEY")?;
    let previous = key("TOKEN_ENCRYPTION_KEY_PREVIOUS")?;
    match (current, previous) {
        (Some(current), previous) => Ok(Some(TokenCipher::new(current, previous))),
        (None, Some(_)) => Err(SettingsError::Invalid {
            name: "TOKEN_ENCRYPTION_KEY_PREVIOUS",
            reason:
                "set TOKEN_ENCRYPTION_KEY too: the previous key only opens, the current one seals"
                    .into(),
        }),
        (None, None) if get("AMO_ACCESS_TOKEN").is_none() => Err(SettingsError::Missing(
            "TOKEN_ENCRYPTION_KEY (OAuth mode keeps AmoCRM's tokens in the database, \
             encrypted with it; 32 random bytes in base64: openssl rand -base64 32)",
        )),
        (None, None) => Ok(None),
    }
}

/// A scraper's bearer token: as long as an API token at least.
fn metrics_token(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Secret>, SettingsError> {
    let Some(token) = get("METRICS_TOKEN") else {
        return Ok(None);
    };
    if token.chars().count() < api_tokens::MIN_TOKEN_CHARS {
        return Err(SettingsError::Invalid {
            name: "METRICS_TOKEN",
            reason: format!(
                "use at least {} random characters (e.g. openssl rand -hex 24)",
                api_tokens::MIN_TOKEN_CHARS
            ),
        });
    }
    Ok(Some(Secret(token)))
}

fn webhook_secret(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Secret>, SettingsError> {
    let Some(secret) = get("WEBHOOK_SECRET") else {
        return Ok(None);
    };
    if secret.len() < 32
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(SettingsError::Invalid {
            name: "WEBHOOK_SECRET",
            reason: "use at least 32 random characters from A-Z, a-z, 0-9, - and _".into(),
        });
    }
    Ok(Some(Secret(secret)))
}

/// `10.0.0.0/8, 192.168.1.10` (a bare address is a one-address network); `none` trusts nobody.
fn trusted_proxies(raw: &str) -> Result<Vec<ipnet::IpNet>, SettingsError> {
    if raw.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    raw.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<ipnet::IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| SettingsError::Invalid {
                    name: "TRUSTED_PROXIES",
                    reason: format!("`{part}` is not an address or CIDR network"),
                })
        })
        .collect()
}

/// `example.amocrm.ru`, `https://example.kommo.com/` or `example` -> `example`.
fn subdomain_of(domain: &str) -> String {
    let host = domain
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    host.split(['.', '/'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn log_level(get: &impl Fn(&str) -> Option<String>) -> Result<slog::Level, SettingsError> {
    let raw = get("LOG_LEVEL")
        .unwrap_or_else(|| "info".into())
        .to_ascii_lowercase();
    let level = match raw.as_str() {
        "trace" => slog::Level::Trace,
        "debug" => slog::Level::Debug,
        "info" => slog::Level::Info,
        "warn" | "warning" => slog::Level::Warning,
        "error" => slog::Level::Error,
        "critical" => slog::Level::Critical,
        _ => {
            return Err(SettingsError::Invalid {
                name: "LOG_LEVEL",
                reason: format!("`{raw}` is not one of trace, debug, info, warn, error, critical"),
            })
        }
    };
    Ok(level)
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
        let oauth = settings(&vars)
            .expect("OAuth mode")
            .amo
            .oauth()
            .expect("oauth client");
        assert_eq!(
            oauth.token_url.as_str(),
            "https://example.amocrm.ru/oauth2/access_token"
        );
        assert!(settings(BASE).expect("long-lived").amo.oauth().is_none());
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

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = settings(BASE).expect("valid");
        let dump = format!("{s:?}");
        assert!(!dump.contains("secret-access-token"));
        assert!(!dump.contains("0123456789abcdef0123"));
    }
}
