//! The effective configuration as `amosync check-config` prints it: every value that
//! matters to an operator, with secrets (tokens, passwords, the webhook secret) masked.

use url::Url;

use super::Settings;

const MASK: &str = "***";

impl Settings {
    /// `(variable, effective value)` pairs, safe to print or paste into a ticket.
    pub fn redacted(&self) -> Vec<(&'static str, String)> {
        let secs = |d: std::time::Duration| d.as_secs().to_string();
        let millis = |d: std::time::Duration| d.as_millis().to_string();
        let set_or_not = |set: bool| if set { MASK } else { "(not set)" }.to_owned();
        vec![
            ("BIND_ADDR", self.http.bind_addr.to_string()),
            ("PORT", self.http.port.to_string()),
            (
                "SERVER_URL",
                self.http
                    .server_url
                    .as_ref()
                    .map_or_else(|| "(not set)".to_owned(), masked_url),
            ),
            (
                "DATABASE_URL",
                Url::parse(self.db.url.expose())
                    .map(|u| masked_url(&u))
                    // Settings only accept mysql:// URLs, which parse; never echo one that does not.
                    .unwrap_or_else(|_| MASK.to_owned()),
            ),
            ("DB_POOL_SIZE", self.db.pool_size.to_string()),
            ("DB_CHECKOUT_TIMEOUT_MS", millis(self.db.checkout_timeout)),
            ("DB_WAIT_SECS", secs(self.db.wait)),
            ("AMO_BASE_URL", masked_url(&self.amo.base_url)),
            (
                "AMO_ACCESS_TOKEN",
                if self.amo.access_token.expose().is_empty() {
                    "(not set: OAuth mode)".to_owned()
                } else {
                    MASK.to_owned()
                },
            ),
            (
                "AMO_CLIENT_ID",
                self.amo
                    .client_id
                    .clone()
                    .unwrap_or_else(|| "(not set)".into()),
            ),
            (
                "AMO_CLIENT_SECRET",
                set_or_not(self.amo.client_secret.is_some()),
            ),
            (
                "AMO_REDIRECT_URI",
                self.amo.redirect_uri.as_deref().map_or_else(
                    || "(not set)".into(),
                    // Not necessarily a URL amosync parsed; never echoed if it does not parse.
                    |raw| Url::parse(raw).map_or_else(|_| MASK.to_owned(), |u| masked_url(&u)),
                ),
            ),
            (
                "AMO_ACCOUNT_ID",
                self.amo
                    .account_id
                    .map_or_else(|| "(not set)".to_owned(), |id| id.to_string()),
            ),
            ("AMO_CONNECT_TIMEOUT_SECS", secs(self.amo.connect_timeout)),
            ("AMO_TIMEOUT_SECS", secs(self.amo.request_timeout)),
            ("AMO_MAX_RPS", self.amo.max_rps.to_string()),
            ("AMO_ACCESS_PROBE_SECS", secs(self.amo.access_probe)),
            ("AMO_DEDUP", self.amo.dedup.as_str().to_owned()),
            (
                "API_TOKENS",
                // Client names are what logs show, scopes what each may do (as held:
                // a token written without scopes shows `write`); the tokens stay hidden.
                self.http
                    .api_tokens
                    .iter()
                    .map(|t| format!("{}:{}:{MASK}", t.client_id, t.scopes))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "WEBHOOK_SECRET",
                if self.webhooks.secret.is_some() {
                    MASK.to_owned()
                } else {
                    "(not set: webhooks are off)".to_owned()
                },
            ),
            (
                "WEBHOOK_MAX_BODY_BYTES",
                self.webhooks.max_body_bytes.to_string(),
            ),
            ("WEBHOOK_EVENTS", self.webhooks.events.join(",")),
            ("SYNC_INLINE_BUDGET_MS", millis(self.sync.inline_budget)),
            ("SYNC_MAX_ATTEMPTS", self.sync.max_attempts.to_string()),
            ("SYNC_RETRY_BASE_MS", millis(self.sync.retry_base)),
            ("SYNC_LEASE_SECS", secs(self.sync.lease)),
            ("RECONCILE_INTERVAL_SECS", secs(self.reconcile.interval)),
            ("RECONCILE_MAX_PAGES", self.reconcile.max_pages.to_string()),
            (
                "WEBHOOK_INBOX_RETENTION_DAYS",
                self.retention.inbox_days.to_string(),
            ),
            (
                "SYNC_JOBS_RETENTION_DAYS",
                self.retention.jobs_days.to_string(),
            ),
            ("RETENTION_INTERVAL_SECS", secs(self.retention.interval)),
            ("CATALOGUE_REFRESH_SECS", secs(self.catalogue.refresh)),
            (
                "TRUSTED_PROXIES",
                self.http
                    .trusted_proxies
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("MAX_BODY_BYTES", self.http.max_body_bytes.to_string()),
            ("HTTP_WORKERS", self.http.workers.to_string()),
            (
                "DEFAULT_PHONE_REGION",
                format!("{:?}", self.default_phone_region.id()),
            ),
            ("LOG_LEVEL", self.log.level.as_str().to_lowercase()),
            (
                "METRICS_TOKEN",
                set_or_not(self.http.metrics_token.is_some()),
            ),
            (super::DEMO_SWITCH, self.demo.to_string()),
        ]
    }
}

/// The URL with its password and every query value and fragment masked: a query
/// often carries a key (`?token=…`, a database's `ssl-key` path), and the report is
/// meant to be pasted into tickets.
fn masked_url(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        // Only fails for URLs that cannot carry credentials, which have none to hide.
        let _ = url.set_password(Some(MASK));
    }
    if url.query().is_some() {
        let names: Vec<String> = url
            .query_pairs()
            .map(|(name, _)| name.into_owned())
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(names.iter().map(|name| (name.as_str(), MASK)));
    }
    if url.fragment().is_some() {
        url.set_fragment(Some(MASK));
    }
    // `***` is written percent-encoded in a query; shown as typed.
    url.to_string().replace("%2A%2A%2A", MASK)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SECRETS: [&str; 8] = [
        "db-pass-Zq8",
        "amo-access-token-value",
        "client-token-aaaaaaaaaaaa",
        "webhook-secret-0123456789abcdefghijkl",
        "oauth-client-secret-value",
        "metrics-token-value-1234",
        "query-key-in-server-url",
        "query-key-in-redirect",
    ];

    #[test]
    fn the_report_names_every_setting_and_hides_every_secret() {
        let env: HashMap<&str, String> = [
            (
                "DATABASE_URL",
                format!("mysql://amo:{}@db:3306/amosync", SECRETS[0]),
            ),
            ("AMO_BASE_URL", "https://example.amocrm.ru".into()),
            ("AMO_ACCESS_TOKEN", SECRETS[1].into()),
            ("API_TOKENS", format!("forms:{}", SECRETS[2])),
            ("WEBHOOK_SECRET", SECRETS[3].into()),
            ("AMO_CLIENT_SECRET", SECRETS[4].into()),
            ("METRICS_TOKEN", SECRETS[5].into()),
            (
                "SERVER_URL",
                format!("https://hooks.example.com/?key={}#x", SECRETS[6]),
            ),
            (
                "AMO_REDIRECT_URI",
                format!("https://app.example.com/cb?state={}", SECRETS[7]),
            ),
        ]
        .into_iter()
        .collect();
        let settings =
            Settings::from_lookup(|name| env.get(name).cloned()).expect("valid settings");
        let report = settings.redacted();
        let text = format!("{report:?}");
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} printed in {text}");
        }
        let value = |name: &str| {
            report
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            value("DATABASE_URL").as_deref(),
            Some("mysql://amo:***@db:3306/amosync")
        );
        assert_eq!(value("API_TOKENS").as_deref(), Some("forms:write:***"));
        assert_eq!(value("METRICS_TOKEN").as_deref(), Some("***"));
        assert_eq!(
            value("SERVER_URL").as_deref(),
            Some("https://hooks.example.com/?key=***#***")
        );
        assert_eq!(
            value("AMO_REDIRECT_URI").as_deref(),
            Some("https://app.example.com/cb?state=***")
        );
        assert_eq!(value("PORT").as_deref(), Some("3000"));
        assert_eq!(value("AMO_DEDUP").as_deref(), Some("auto"));
    }
}
