//! `Redactor`: replaces the service's known secrets with `***` in text that leaves the
//! process: log lines, stored errors, error bodies, command output.
//!
//! The first defence is not to put foreign text there at all (AmoCRM's errors keep
//! only codes and field paths, see `amo::http::status`); this one catches what slips
//! through, like a remote error that echoes our own webhook URL back.

use std::borrow::Cow;
use std::sync::Arc;

use memchr::memmem;

use crate::settings::Settings;

const MASK: &str = "***";

/// Shorter values are not masked: replacing a common short word everywhere would
/// garble logs more than it protects (every token and secret amosync requires is
/// longer than this).
pub const MIN_SECRET_CHARS: usize = 8;

#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is masked whole.
    secrets: Arc<[memmem::Finder<'static>]>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub fn new<I, S>(secrets: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut values: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.chars().count() < MIN_SECRET_CHARS {
                continue;
            }
            values.push(secret.to_owned());
            // In a JSON log line a `"` or `\` in the value is escaped.
            let escaped = serde_json::to_string(secret).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            if escaped != secret {
                values.push(escaped.to_owned());
            }
        }
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        let secrets = values
            .iter()
            .map(|v| memmem::Finder::new(v.as_bytes()).into_owned())
            .collect();
        Redactor { secrets }
    }

    /// Every secret of the configuration: API and metrics tokens, the AmoCRM token and
    /// client secret, the webhook secret, the database password. (The token encryption
    /// keys are kept as ciphers only, never as text that could be logged.)
    pub fn from_settings(settings: &Settings) -> Redactor {
        let mut secrets: Vec<String> = settings
            .http
            .api_tokens
            .iter()
            .map(|t| t.token.expose().to_owned())
            .collect();
        let optional = [
            Some(&settings.amo.access_token),
            settings.amo.client_secret.as_ref(),
            settings.webhooks.secret.as_ref(),
            settings.http.metrics_token.as_ref(),
        ];
        secrets.extend(
            optional
                .into_iter()
                .flatten()
                .map(|s| s.expose().to_owned()),
        );
        if let Ok(url) = url::Url::parse(settings.db.url.expose()) {
            if let Some(password) = url.password() {
                secrets.push(password.to_owned());
                secrets.extend(percent_decoded(password));
            }
        }
        Redactor::new(secrets)
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every known secret replaced by `***`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self
            .secrets
            .iter()
            .any(|s| s.find(text.as_bytes()).is_some())
        {
            return Cow::Borrowed(text);
        }
        let mut bytes = text.as_bytes().to_vec();
        self.redact_bytes(&mut bytes);
        // Secrets are whole strings, so replacing them keeps the text valid UTF-8.
        Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Masks `bytes` in place (a log line on its way out).
    pub fn redact_bytes(&self, bytes: &mut Vec<u8>) {
        for secret in self.secrets.iter() {
            if secret.find(bytes).is_none() {
                continue;
            }
            let mut out = Vec::with_capacity(bytes.len());
            let mut rest: &[u8] = bytes;
            while let Some(at) = secret.find(rest) {
                out.extend_from_slice(&rest[..at]);
                out.extend_from_slice(MASK.as_bytes());
                rest = &rest[at + secret.needle().len()..];
            }
            out.extend_from_slice(rest);
            *bytes = out;
        }
    }
}

/// The percent-decoded form of a URL's password (`p%40ss` is `p@ss` to MySQL).
fn percent_decoded(raw: &str) -> Option<String> {
    // form_urlencoded reads `+` as a space; in a URL's userinfo it is itself.
    let query = format!("x={}", raw.replace('+', "%2B"));
    url::form_urlencoded::parse(query.as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_of_every_secret_is_masked() {
        let r = Redactor::new(["token-0123456789", "webhook-secret-abcdef", "short"]);
        let text = "a token-0123456789 b token-0123456789 https://x/webhooks/amocrm/webhook-secret-abcdef short";
        assert_eq!(
            r.redact(text),
            "a *** b *** https://x/webhooks/amocrm/*** short"
        );
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_secret_containing_another_is_masked_whole_and_json_escapes_are_caught() {
        let r = Redactor::new(["abcdefgh", "abcdefgh-longer", r#"quo"te-secret"#]);
        assert_eq!(r.redact("x abcdefgh-longer y"), "x *** y");
        let line = serde_json::json!({"msg": r#"got quo"te-secret"#}).to_string();
        let mut bytes = line.into_bytes();
        r.redact_bytes(&mut bytes);
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            r#"{"msg":"got ***"}"#
        );
    }

    #[test]
    fn the_settings_secrets_are_all_known() {
        let env = [
            ("DATABASE_URL", "mysql://u:db%40pass-word@db/x"),
            ("AMO_DOMAIN", "example"),
            ("AMO_ACCESS_TOKEN", "amo-access-token-value"),
            ("API_TOKENS", "forms:write:client-token-0123456789"),
            ("WEBHOOK_SECRET", "webhook-secret-0123456789abcdefghijkl"),
            ("METRICS_TOKEN", "metrics-token-0123456789"),
        ];
        let settings = Settings::from_lookup(|name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .expect("settings");
        let r = Redactor::from_settings(&settings);
        let text = "amo-access-token-value client-token-0123456789 \
            webhook-secret-0123456789abcdefghijkl metrics-token-0123456789 db@pass-word";
        assert_eq!(r.redact(text), "*** *** *** *** ***");
    }
}
