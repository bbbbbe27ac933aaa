//! Reading single variables: numbers and durations with their defaults, URLs,
//! secrets with their strength checks, and the values with a syntax of their own
//! (`API_TOKENS`, `TRUSTED_PROXIES`, `LOG_LEVEL`, the Node service's `DB_*` parts).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use super::api_tokens::{parse_entry, MIN_TOKEN_CHARS};
use super::{ApiClientToken, Secret, SettingsError};
use crate::crypto::{EncryptionKey, TokenCipher};

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`); unset is `false`.
pub(super) fn flag(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<bool, SettingsError> {
    match get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(_) => Err(SettingsError::Invalid {
            name,
            reason: "use true or false".into(),
        }),
    }
}

pub(super) fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

pub(super) fn parse_or<T: std::str::FromStr>(
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
pub(super) fn secs_or(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, SettingsError> {
    parse_or(get, name, default.as_secs()).map(Duration::from_secs)
}

/// A whole number of milliseconds; unset is `default`.
pub(super) fn millis_or(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, SettingsError> {
    let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    parse_or(get, name, default).map(Duration::from_millis)
}

pub(super) fn parse_url(name: &'static str, raw: &str) -> Result<Url, SettingsError> {
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
pub(super) fn database_url(get: &impl Fn(&str) -> Option<String>) -> Result<String, SettingsError> {
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
pub(super) fn amo_base_url(get: &impl Fn(&str) -> Option<String>) -> Result<Url, SettingsError> {
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
pub(super) fn api_tokens(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<ApiClientToken>, SettingsError> {
    let raw = get("API_TOKENS").ok_or(SettingsError::Missing("API_TOKENS"))?;
    let mut tokens = Vec::new();
    for (index, entry) in raw
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        tokens.push(parse_entry(entry, index)?);
    }
    if tokens.is_empty() {
        return Err(SettingsError::Missing("API_TOKENS"));
    }
    Ok(tokens)
}

/// A host a fake AmoCRM runs on: loopback, a private address, `localhost` or a name
/// without dots (a compose service). Never a real account's `*.amocrm.ru`.
pub(super) fn is_local_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => crate::domain::is_internal(&IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => crate::domain::is_internal(&IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => name == "localhost" || !name.contains('.'),
        None => false,
    }
}

/// A long-lived token, or (OAuth mode, token empty) the three integration settings.
pub(super) fn amo_access_token(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Secret, SettingsError> {
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
pub(super) fn token_cipher(
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
pub(super) fn metrics_token(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, SettingsError> {
    let Some(token) = get("METRICS_TOKEN") else {
        return Ok(None);
    };
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(SettingsError::Invalid {
            name: "METRICS_TOKEN",
            reason: format!(
                "use at least {MIN_TOKEN_CHARS} random characters (e.g. openssl rand -hex 24)"
            ),
        });
    }
    Ok(Some(Secret(token)))
}

pub(super) fn webhook_secret(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, SettingsError> {
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
pub(super) fn trusted_proxies(raw: &str) -> Result<Vec<ipnet::IpNet>, SettingsError> {
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
pub(super) fn subdomain_of(domain: &str) -> String {
    let host = domain
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    host.split(['.', '/'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

pub(super) fn log_level(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<slog::Level, SettingsError> {
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
