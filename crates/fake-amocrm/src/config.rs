//! How a fake account behaves: limits, latency, OAuth client, tokens and webhook delivery.

use std::time::Duration;

/// The long-lived token a default account accepts (also [`crate::FakeAmo::TOKEN`]), and the
/// binary's default `--long-lived-token`.
pub const DEFAULT_TOKEN: &str = "fake-amo-access-token";

/// How the fake account behaves. `Default` suits tests: no rate limit, no latency, the static
/// [`DEFAULT_TOKEN`] accepted, and the webhook emitter on with retries after 100 and 300 ms.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Calls to `/api/v4` allowed in any one second; `None` for no limit.
    pub rps_limit: Option<u32>,
    /// Added before every `/api/v4` answer.
    pub latency: Duration,
    pub account_id: i64,
    /// Used in webhook bodies: `account[subdomain]` and `https://<subdomain>.amocrm.ru`.
    pub subdomain: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    /// The `expires_in` of issued OAuth access tokens.
    pub access_token_ttl: Duration,
    /// How long an access token keeps working after its refresh token was used.
    pub old_access_token_grace: Duration,
    /// Bearer tokens accepted forever, like AmoCRM's long-lived tokens.
    pub long_lived_tokens: Vec<String>,
    /// Authorization codes accepted once each, besides those minted at `/_fake/oauth/code`.
    pub auth_codes: Vec<String>,
    /// Whether changes are sent to subscribed webhooks at all.
    pub webhooks_enabled: bool,
    /// A hook that has not answered by then has failed; AmoCRM waits 2 s.
    pub webhook_timeout: Duration,
    /// The waits before each retry of a failed delivery; AmoCRM waits 5 and 15 minutes.
    pub webhook_retry_delays: Vec<Duration>,
    /// A hook with more failed replies than this within two hours, the latest one failed,
    /// is disabled.
    pub disable_after_failures: usize,
    /// After this many 429s every `/api/v4` call gets 403 until unblocked.
    pub block_after_429s: Option<u32>,
    /// One stdout line per request and per delivery attempt.
    pub log_to_stdout: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            rps_limit: None,
            latency: Duration::ZERO,
            account_id: 29_000_001,
            subdomain: "example".into(),
            client_id: "fake-client-id".into(),
            client_secret: "fake-client-secret".into(),
            redirect_uri: "http://localhost/oauth/callback".into(),
            access_token_ttl: Duration::from_secs(86_400),
            old_access_token_grace: Duration::from_secs(1),
            long_lived_tokens: vec![DEFAULT_TOKEN.to_owned()],
            auth_codes: Vec::new(),
            webhooks_enabled: true,
            webhook_timeout: Duration::from_secs(2),
            webhook_retry_delays: vec![Duration::from_millis(100), Duration::from_millis(300)],
            disable_after_failures: 100,
            block_after_429s: None,
            log_to_stdout: false,
        }
    }
}
