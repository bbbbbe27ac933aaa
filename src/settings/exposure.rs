//! Sample values must not guard a reachable instance, and a real AmoCRM account must
//! never get a demo's defaults.
//!
//! The demo stack (`docker-compose.override.yml`), `.env.example` and the README
//! publish an API token and a webhook secret: anyone who reads them can post records
//! or forge webhooks (renaming contacts, wiping phones). `serve`, `webhooks subscribe`
//! and `check-config` therefore refuse them unless `AMOSYNC_DEMO=true` says this is a
//! throw-away demo, and refuse them always, together with placeholder AmoCRM
//! credentials and a `SERVER_URL` AmoCRM cannot reach, when amosync talks to a real
//! account (any `AMO_BASE_URL` that is not a local fake).

use std::fmt;

use super::{is_local_host, Secret, Settings};

/// The variable that allows the published sample values on a local demo.
pub const DEMO_SWITCH: &str = "AMOSYNC_DEMO";

/// Values this repository publishes (demo compose file, `.env.example`, README,
/// `scripts/dev-stack.sh`'s `.dev-stack.env`, the fake AmoCRM's default token).
/// Lower case.
const PUBLISHED: &[&str] = &[
    "change-me-local-dev-token-0001",
    "compose-first-run-webhook-secret-0001",
    "dev-stack-webhook-secret-0123456789abcdef",
    "fake-amo-access-token",
];

/// Parts of a value somebody was meant to replace. Lower case.
const PLACEHOLDER_MARKS: &[&str] = &["change-me", "changeme", "replace-me", "placeholder", "<"];

/// A published sample or a placeholder: never a secret.
pub fn is_sample(value: &str) -> bool {
    let value = value.trim().to_ascii_lowercase();
    PUBLISHED.contains(&value.as_str()) || PLACEHOLDER_MARKS.iter().any(|m| value.contains(m))
}

/// What start-up reports (`/ready`, the log) once the check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// `AMOSYNC_DEMO=true`.
    pub demo: bool,
    /// Variables holding a published sample value (only ever non-empty in demo mode
    /// once `check` passed).
    pub sample_values: Vec<&'static str>,
}

/// Why an instance may not run with these settings; each says what to set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{variable} holds a sample value published with amosync{whose}: anyone can use it. \
         Set your own ({how}){demo_hint}"
    )]
    SampleValue {
        variable: &'static str,
        whose: String,
        how: &'static str,
        demo_hint: DemoHint,
    },
    #[error(
        "SERVER_URL ({host}) is not a public address, but the real AmoCRM account at {amo} \
         delivers webhooks to it: set SERVER_URL to the public https:// URL of this service"
    )]
    PrivateServerUrl { host: String, amo: String },
}

/// The last part of a sample-value refusal: whether `AMOSYNC_DEMO` could allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoHint {
    /// A local fake: a demo may use the sample.
    Allowed,
    /// A real account: the demo switch does not apply.
    RealAccount,
    /// A real account with the demo switch on: most likely docker compose's demo
    /// override, which also pins the fake's AmoCRM token, whatever `.env` says.
    RealAccountInDemo,
}

impl fmt::Display for DemoHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoHint::Allowed => write!(
                f,
                ", or set {DEMO_SWITCH}=true for a throw-away demo against the fake AmoCRM \
                 that nobody else can reach"
            ),
            DemoHint::RealAccount => {
                write!(f, "; {DEMO_SWITCH} does not apply to a real AmoCRM account")
            }
            DemoHint::RealAccountInDemo => write!(
                f,
                "; {DEMO_SWITCH} does not apply to a real AmoCRM account. With docker \
                 compose, the demo (docker-compose.override.yml) sets {DEMO_SWITCH}, the \
                 fake's AMO_ACCESS_TOKEN and sample values over .env: put \
                 COMPOSE_FILE=docker-compose.yml in .env for a real account"
            ),
        }
    }
}

const GENERATE: &str = "e.g. openssl rand -hex 24";

impl Settings {
    /// Whether AmoCRM is a real account rather than a local fake.
    pub fn talks_to_real_account(&self) -> bool {
        !is_local_host(&self.amo.base_url)
    }

    /// The variables that hold a published sample or placeholder value.
    pub fn sample_values(&self) -> Vec<&'static str> {
        self.sample_findings()
            .into_iter()
            .map(|(variable, _, _)| variable)
            .collect()
    }

    /// Refuses sample values (unless a demo against a fake) and, with a real
    /// account, placeholder AmoCRM credentials and a private `SERVER_URL`.
    pub fn check_exposure(&self) -> Result<Exposure, Vec<Refusal>> {
        let real = self.talks_to_real_account();
        let demo_hint = match (real, self.demo) {
            (true, true) => DemoHint::RealAccountInDemo,
            (true, false) => DemoHint::RealAccount,
            (false, _) => DemoHint::Allowed,
        };
        let mut refusals: Vec<Refusal> = self
            .sample_findings()
            .into_iter()
            .filter(|_| real || !self.demo)
            .map(|(variable, whose, how)| Refusal::SampleValue {
                variable,
                whose,
                how,
                demo_hint,
            })
            .collect();
        if real {
            if let Some(url) = self.http.server_url.as_ref().filter(|u| !is_public(u)) {
                refusals.push(Refusal::PrivateServerUrl {
                    host: url.host_str().unwrap_or_default().to_owned(),
                    amo: self.amo.base_url.as_str().trim_end_matches('/').to_owned(),
                });
            }
        }
        if !refusals.is_empty() {
            return Err(refusals);
        }
        Ok(Exposure {
            demo: self.demo,
            sample_values: self.sample_values(),
        })
    }

    /// `(variable, " (client …)" or "", how to make a real one)` for each sample value.
    /// AmoCRM's credentials count only with a real account: a fake accepts its own.
    fn sample_findings(&self) -> Vec<(&'static str, String, &'static str)> {
        let sample = |secret: Option<&Secret>| secret.is_some_and(|s| is_sample(s.expose()));
        let mut found = Vec::new();
        if let Some(client) = self
            .http
            .api_tokens
            .iter()
            .find(|t| is_sample(t.token.expose()))
        {
            let whose = format!(" (client `{}`)", client.client_id);
            found.push(("API_TOKENS", whose, GENERATE));
        }
        if sample(self.webhooks.secret.as_ref()) {
            found.push(("WEBHOOK_SECRET", String::new(), GENERATE));
        }
        if sample(self.http.metrics_token.as_ref()) {
            found.push(("METRICS_TOKEN", String::new(), GENERATE));
        }
        if self.talks_to_real_account() {
            if sample(Some(&self.amo.access_token)) {
                found.push((
                    "AMO_ACCESS_TOKEN",
                    String::new(),
                    "your integration's long-lived token",
                ));
            }
            if sample(self.amo.client_secret.as_ref()) {
                found.push((
                    "AMO_CLIENT_SECRET",
                    String::new(),
                    "your integration's secret key",
                ));
            }
        }
        found
    }
}

/// A URL AmoCRM's servers could reach: not loopback, private, link-local, a one-word
/// host (a compose service) or a name reserved for local networks.
fn is_public(url: &url::Url) -> bool {
    if is_local_host(url) {
        return false;
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    ![".localhost", ".local", ".internal", ".lan", ".home.arpa"]
        .iter()
        .any(|suffix| host.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SettingsError;
    use std::collections::HashMap;

    const OWN_TOKEN: &str = "ops:write+read+admin:9f3c1d7e5b2a4c6e8d0f1a3b";
    const OWN_SECRET: &str = "4b8e2d6f0a1c3e5b7d9f1a2c4e6b8d0f";
    const FAKE: &str = "http://127.0.0.1:8090";
    const REAL: &str = "https://example.amocrm.ru";

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let mut map: HashMap<&str, &str> = [
            ("DB_NAME", "amosync"),
            ("AMO_ACCESS_TOKEN", "long-lived-token-of-the-account"),
            ("API_TOKENS", OWN_TOKEN),
            ("WEBHOOK_SECRET", OWN_SECRET),
            ("SERVER_URL", "https://amosync.example.com"),
        ]
        .into_iter()
        .collect();
        map.extend(vars.iter().copied());
        Settings::from_lookup(|name| map.get(name).map(|v| v.to_string()))
    }

    fn refusals(vars: &[(&str, &str)]) -> Vec<Refusal> {
        match settings(vars).expect("valid settings").check_exposure() {
            Ok(exposure) => panic!("accepted: {exposure:?}"),
            Err(refusals) => refusals,
        }
    }

    fn names(refusals: &[Refusal]) -> Vec<&'static str> {
        refusals
            .iter()
            .map(|r| match r {
                Refusal::SampleValue { variable, .. } => *variable,
                Refusal::PrivateServerUrl { .. } => "SERVER_URL",
            })
            .collect()
    }

    #[test]
    fn own_values_pass_against_a_real_account_and_a_fake() {
        for base in [REAL, FAKE] {
            let s = settings(&[("AMO_BASE_URL", base)]).expect("valid");
            let exposure = s.check_exposure().expect("accepted");
            assert_eq!(
                exposure,
                Exposure {
                    demo: false,
                    sample_values: vec![]
                }
            );
        }
    }

    #[test]
    fn the_published_samples_are_refused_without_the_demo_switch_and_say_what_to_set() {
        let found = refusals(&[
            ("AMO_BASE_URL", FAKE),
            ("API_TOKENS", "local-dev:change-me-local-dev-token-0001"),
            ("WEBHOOK_SECRET", "compose-first-run-webhook-secret-0001"),
        ]);
        assert_eq!(names(&found), ["API_TOKENS", "WEBHOOK_SECRET"]);
        let message = found[0].to_string();
        assert!(message.contains("client `local-dev`"), "{message}");
        assert!(message.contains("openssl rand -hex 24"), "{message}");
        assert!(message.contains("AMOSYNC_DEMO=true"), "{message}");
        assert!(!message.contains("change-me-local-dev-token-0001"));
    }

    #[test]
    fn the_demo_switch_allows_samples_against_a_fake_and_reports_them() {
        let s = settings(&[
            ("AMO_BASE_URL", "http://fake-amocrm:8090"),
            ("AMO_ACCESS_TOKEN", "fake-amo-access-token"),
            (
                "API_TOKENS",
                "demo:write+read+admin:change-me-local-dev-token-0001",
            ),
            ("SERVER_URL", "http://nginx"),
            ("AMOSYNC_DEMO", "true"),
        ])
        .expect("valid");
        assert_eq!(
            s.check_exposure().expect("a demo"),
            Exposure {
                demo: true,
                sample_values: vec!["API_TOKENS"]
            }
        );
    }

    #[test]
    fn a_real_account_refuses_samples_even_in_demo_mode() {
        let found = refusals(&[
            ("AMO_BASE_URL", ""),
            ("AMO_DOMAIN", "example"),
            ("AMOSYNC_DEMO", "true"),
            ("AMO_ACCESS_TOKEN", "change-me"),
            ("WEBHOOK_SECRET", "compose-first-run-webhook-secret-0001"),
        ]);
        assert_eq!(names(&found), ["WEBHOOK_SECRET", "AMO_ACCESS_TOKEN"]);
        assert!(found[0]
            .to_string()
            .contains("does not apply to a real AmoCRM"));
        assert!(found[1].to_string().contains("long-lived token"));
        // The demo switch on: the compose demo is the likely cause, and how to leave it.
        assert!(found[1]
            .to_string()
            .contains("put COMPOSE_FILE=docker-compose.yml in .env"));
    }

    #[test]
    fn without_the_demo_switch_a_real_account_refusal_does_not_mention_the_demo() {
        let found = refusals(&[("AMO_BASE_URL", REAL), ("AMO_ACCESS_TOKEN", "change-me")]);
        assert_eq!(names(&found), ["AMO_ACCESS_TOKEN"]);
        let message = found[0].to_string();
        assert!(
            message.contains("does not apply to a real AmoCRM"),
            "{message}"
        );
        assert!(!message.contains("COMPOSE_FILE"), "{message}");
    }

    #[test]
    fn a_real_account_refuses_a_server_url_it_cannot_reach() {
        for private in [
            "http://nginx",
            "http://localhost:8080",
            "http://127.0.0.1",
            "http://192.168.1.20:3000",
            "https://amosync.internal",
        ] {
            let found = refusals(&[("AMO_BASE_URL", REAL), ("SERVER_URL", private)]);
            assert_eq!(names(&found), ["SERVER_URL"], "{private}");
            assert!(found[0].to_string().contains("public https:// URL"));
        }
        // A fake next to it reaches it fine.
        let s = settings(&[("AMO_BASE_URL", FAKE), ("SERVER_URL", "http://nginx")]);
        assert!(s.expect("valid").check_exposure().is_ok());
    }

    /// The secrets' values in a published file: `NAME=value`, `NAME="value"` and
    /// compose's `NAME: ${NAME:-value}`; an API token entry's token part.
    fn published_values(text: &str) -> Vec<String> {
        const NAMES: [&str; 4] = [
            "API_TOKENS",
            "WEBHOOK_SECRET",
            "METRICS_TOKEN",
            "AMO_ACCESS_TOKEN",
        ];
        let mut found = Vec::new();
        for line in text.lines().map(str::trim) {
            for name in NAMES {
                let Some(rest) = line
                    .strip_prefix(name)
                    .and_then(|r| r.strip_prefix('=').or_else(|| r.strip_prefix(':')))
                else {
                    continue;
                };
                let value = rest.trim().trim_matches('"');
                let value = match value.strip_prefix(&format!("${{{name}:-")) {
                    Some(default) => default.trim_end_matches('}'),
                    None => value,
                };
                if value.is_empty() || value.starts_with('$') {
                    continue;
                }
                for entry in value.split(',') {
                    let token = entry.rsplit(':').next().unwrap_or(entry);
                    found.push(token.to_owned());
                }
            }
        }
        found
    }

    #[test]
    fn every_secret_the_repository_publishes_counts_as_a_sample() {
        let files = [
            (".env.example", include_str!("../../.env.example")),
            (
                "docker-compose.override.yml",
                include_str!("../../docker-compose.override.yml"),
            ),
            (
                "scripts/dev-stack.sh",
                include_str!("../../scripts/dev-stack.sh"),
            ),
        ];
        let mut checked = 0;
        for (file, text) in files {
            for value in published_values(text) {
                assert!(
                    is_sample(&value),
                    "{file} publishes {value}, not known as a sample"
                );
                checked += 1;
            }
        }
        // .env.example's token and AmoCRM token, the demo's token, secret and fake
        // token, dev-stack's secret.
        assert!(checked >= 6, "only {checked} published values found");
    }

    #[test]
    fn placeholders_count_as_samples() {
        for value in [
            "change-me",
            "CHANGEME-please-0000",
            "<your-token-here-000>",
            "fake-amo-access-token",
            "dev-stack-webhook-secret-0123456789abcdef",
        ] {
            assert!(is_sample(value), "{value}");
        }
        assert!(!is_sample("9f3c1d7e5b2a4c6e8d0f1a3b"));
    }
}
