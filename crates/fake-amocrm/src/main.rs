//! `amosync-fake-amocrm`: a fake AmoCRM account on a port, so amosync, its clients and its
//! webhooks can run end to end without a real account.
//!
//! Every flag has a `FAKE_AMO_*` environment fallback. Operators drive the account through the
//! `/_fake/` routes (`GET /_fake/state` to look, `POST /_fake/contacts` to change, ...).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use fake_amocrm::{FakeAmo, FakeConfig};

const OPERATOR_ROUTES: &str = "\
Operator routes (no bearer):
  GET    /_fake/state                     contacts, leads, webhooks and counters
  POST   /_fake/contacts                  {name, phones}            fires add_contact
  PATCH  /_fake/contacts/{id}             {name?, phones?}          fires update_contact
  DELETE /_fake/contacts/{id}                                       fires delete_contact
  POST   /_fake/contacts/{id}/restore                               fires restore_contact
  POST   /_fake/leads                     {name, price?, status_id?, pipeline_id?, contact_ids?}
  PATCH  /_fake/leads/{id}                the same fields, all optional; a new status fires status_lead
  DELETE /_fake/leads/{id}, POST /_fake/leads/{id}/restore
  POST   /_fake/companies                 {name}                    fires add_company (sent under contacts[...])
  PATCH  /_fake/companies/{id}            {name}                    fires update_company
  DELETE /_fake/companies/{id}, POST /_fake/companies/{id}/restore
  POST   /_fake/leads/{id}/notes          {text}                    fires note_lead (also /_fake/contacts/{id}/notes)
  POST   /_fake/fail                      {\"status\": 503} or {\"status\": null}
  POST   /_fake/latency                   {\"ms\": 150}
  POST   /_fake/oauth/code                a single-use authorization code
  POST   /_fake/unblock                   lifts the block after repeated 429s";

/// A fake AmoCRM (Kommo) API v4 server with OAuth, rate limits and a webhook emitter.
#[derive(Debug, Parser)]
#[command(name = "amosync-fake-amocrm", version, after_help = OPERATOR_ROUTES)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FAKE_AMO_BIND", default_value = "127.0.0.1")]
    bind: IpAddr,

    /// Port to listen on.
    #[arg(long, env = "FAKE_AMO_PORT", default_value_t = 8090)]
    port: u16,

    /// /api/v4 calls allowed in any one second before 429; 0 turns the limit off.
    #[arg(long, env = "FAKE_AMO_RPS_LIMIT", default_value_t = 7)]
    rps_limit: u32,

    /// After this many 429s every /api/v4 call gets a 403 page until POST /_fake/unblock.
    #[arg(long, env = "FAKE_AMO_BLOCK_AFTER_429S")]
    block_after_429s: Option<u32>,

    /// Delay added before every /api/v4 answer, in milliseconds.
    #[arg(long, env = "FAKE_AMO_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,

    /// The account id in tokens, objects and webhook bodies.
    #[arg(long, env = "FAKE_AMO_ACCOUNT_ID", default_value_t = 29_000_001)]
    account_id: i64,

    /// The account subdomain sent in webhook bodies.
    #[arg(long, env = "FAKE_AMO_SUBDOMAIN", default_value = "example")]
    subdomain: String,

    /// The integration's client id, checked by /oauth2/access_token.
    #[arg(long, env = "FAKE_AMO_CLIENT_ID", default_value = "fake-client-id")]
    client_id: String,

    /// The integration's client secret, checked by /oauth2/access_token.
    #[arg(
        long,
        env = "FAKE_AMO_CLIENT_SECRET",
        default_value = "fake-client-secret"
    )]
    client_secret: String,

    /// The registered redirect URI, checked by /oauth2/access_token.
    #[arg(
        long,
        env = "FAKE_AMO_REDIRECT_URI",
        default_value = "http://localhost/oauth/callback"
    )]
    redirect_uri: String,

    /// Lifetime of issued OAuth access tokens, in seconds.
    #[arg(long, env = "FAKE_AMO_ACCESS_TOKEN_TTL_SECS", default_value_t = 86_400)]
    access_token_ttl_secs: u64,

    /// A bearer token accepted forever; repeat the flag (or separate with commas) for several.
    #[arg(
        long = "long-lived-token",
        env = "FAKE_AMO_LONG_LIVED_TOKEN",
        value_delimiter = ',',
        default_value = "fake-amo-access-token"
    )]
    long_lived_tokens: Vec<String>,

    /// An authorization code accepted once; repeatable. More come from POST /_fake/oauth/code.
    #[arg(long = "auth-code", env = "FAKE_AMO_AUTH_CODE", value_delimiter = ',')]
    auth_codes: Vec<String>,

    /// How long a webhook destination may take to answer, in milliseconds.
    #[arg(long, env = "FAKE_AMO_WEBHOOK_TIMEOUT_MS", default_value_t = 2_000)]
    webhook_timeout_ms: u64,

    /// Waits before each retry of a failed delivery, in milliseconds, comma-separated.
    #[arg(
        long,
        env = "FAKE_AMO_WEBHOOK_RETRY_DELAYS_MS",
        value_delimiter = ',',
        default_value = "5000,15000"
    )]
    webhook_retry_delays_ms: Vec<u64>,

    /// A hook with more failed replies than this within two hours is disabled.
    #[arg(long, env = "FAKE_AMO_DISABLE_AFTER_FAILURES", default_value_t = 100)]
    disable_after_failures: usize,

    /// Demo contacts with Russian names and phones created at start (no webhooks fire).
    #[arg(long, env = "FAKE_AMO_SEED_CONTACTS", default_value_t = 0)]
    seed_contacts: usize,
}

impl Args {
    fn config(&self) -> FakeConfig {
        let ms = Duration::from_millis;
        FakeConfig {
            rps_limit: Some(self.rps_limit).filter(|n| *n > 0),
            latency: ms(self.latency_ms),
            account_id: self.account_id,
            subdomain: self.subdomain.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            redirect_uri: self.redirect_uri.clone(),
            access_token_ttl: Duration::from_secs(self.access_token_ttl_secs),
            long_lived_tokens: self.long_lived_tokens.clone(),
            auth_codes: self.auth_codes.clone(),
            webhook_timeout: ms(self.webhook_timeout_ms),
            webhook_retry_delays: self
                .webhook_retry_delays_ms
                .iter()
                .map(|d| ms(*d))
                .collect(),
            disable_after_failures: self.disable_after_failures,
            block_after_429s: self.block_after_429s,
            log_to_stdout: true,
            ..FakeConfig::default()
        }
    }
}

const FIRST_NAMES: [&str; 8] = [
    "Иван",
    "Мария",
    "Алексей",
    "Ольга",
    "Дмитрий",
    "Анна",
    "Сергей",
    "Елена",
];
const LAST_NAMES: [&str; 6] = [
    "Петров",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Соколов",
    "Лебедев",
];

/// Deterministic names and phones in the formats AmoCRM users really type.
fn seed(fake: &FakeAmo, count: usize) {
    for i in 0..count {
        let first = FIRST_NAMES[i % FIRST_NAMES.len()];
        let last = LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()];
        // A female first name takes the feminine surname.
        let last = match i % 2 {
            1 => format!("{last}а"),
            _ => last.to_owned(),
        };
        let n = 1_000_000 + i * 7_919 % 9_000_000;
        let (a, b, c) = (n / 10_000, n / 100 % 100, n % 100);
        let phone = match i % 3 {
            0 => format!("+7 (916) {a:03}-{b:02}-{c:02}"),
            1 => format!("8 925 {a:03} {b:02} {c:02}"),
            _ => format!("+7926{a:03}{b:02}{c:02}"),
        };
        fake.add_contact(&format!("{first} {last}"), &[&phone]);
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("listen for SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let addr = SocketAddr::new(args.bind, args.port);
    let fake = FakeAmo::bind(args.config(), addr)
        .await
        .unwrap_or_else(|e| panic!("bind the fake AmoCRM on {addr}: {e}"));
    seed(&fake, args.seed_contacts);
    println!(
        "amosync-fake-amocrm listening on {} (account {}, subdomain {}, rps limit {})",
        fake.base_url(),
        args.account_id,
        args.subdomain,
        args.rps_limit
    );
    shutdown_signal().await;
    println!("amosync-fake-amocrm shutting down");
    fake.stop().await;
}
