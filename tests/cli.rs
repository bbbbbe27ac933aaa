//! The `amosync` command line run as an operator would (and the refusals of
//! `serve`, `check-config` and `webhooks subscribe`): the real binary, a controlled
//! environment, and no `.env` file in its working directory.

#[path = "support/mod.rs"]
mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DB_PASSWORD: &str = "db-password-Zq8x";
const AMO_TOKEN: &str = "amo-access-token-for-cli-test";
const API_TOKEN: &str = "cli-client-token-0123456789";
const WEBHOOK_SECRET: &str = "cli-webhook-secret-0123456789abcdef";
const CLIENT_SECRET: &str = "cli-oauth-client-secret";
const METRICS_TOKEN: &str = "cli-metrics-token-0123";

fn valid_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "DATABASE_URL",
            format!("mysql://amo:{DB_PASSWORD}@127.0.0.1:3306/amosync"),
        ),
        ("AMO_DOMAIN", "example".into()),
        ("AMO_ACCESS_TOKEN", AMO_TOKEN.into()),
        ("AMO_CLIENT_SECRET", CLIENT_SECRET.into()),
        ("API_TOKENS", format!("forms:{API_TOKEN}")),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("METRICS_TOKEN", METRICS_TOKEN.into()),
    ]
}

/// `amosync args…` with exactly `env`, in an empty directory, so a developer's .env
/// cannot leak into the result.
fn amosync(args: &[&str], env: &[(&'static str, String)]) -> Output {
    let dir = std::env::temp_dir().join(format!("amosync-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_amosync"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&dir)
        .output()
        .expect("run amosync")
}

fn check_config(env: &[(&'static str, String)]) -> Output {
    amosync(&["check-config"], env)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `valid_env()` with `DATABASE_URL` replaced.
fn env_with_database(url: String) -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = valid_env()
        .into_iter()
        .filter(|(k, _)| *k != "DATABASE_URL")
        .collect();
    env.push(("DATABASE_URL", url));
    env
}

/// The test server's URL with another account: `user:password@`.
fn with_account(server: &str, user: &str, password: &str) -> String {
    let mut url = url::Url::parse(server).expect("database URL");
    url.set_username(user).expect("user");
    url.set_password(Some(password)).expect("password");
    url.to_string().trim_end_matches('/').to_owned()
}

#[test]
fn a_valid_environment_is_printed_with_every_secret_masked() {
    // The database behind this URL does not know the account: the report is printed
    // all the same, before the connection check fails.
    let out = check_config(&valid_env());
    let stdout = text(&out.stdout);
    for line in [
        "DATABASE_URL=mysql://amo:***@127.0.0.1:3306/amosync",
        "AMO_BASE_URL=https://example.amocrm.ru/",
        "AMO_ACCESS_TOKEN=***",
        "API_TOKENS=forms:write:***",
        "WEBHOOK_SECRET=***",
        "METRICS_TOKEN=***",
        "PORT=3000",
    ] {
        assert!(stdout.lines().any(|l| l == line), "no {line} in\n{stdout}");
    }
    for secret in [
        DB_PASSWORD,
        AMO_TOKEN,
        API_TOKEN,
        WEBHOOK_SECRET,
        CLIENT_SECRET,
        METRICS_TOKEN,
    ] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
}

#[test]
fn a_missing_variable_fails_and_is_named_on_stderr() {
    let env: Vec<_> = valid_env()
        .into_iter()
        .filter(|(k, _)| *k != "API_TOKENS")
        .collect();
    let out = check_config(&env);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("API_TOKENS"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing is printed as if it were valid"
    );
}

#[test]
fn an_invalid_value_fails_and_says_why() {
    let mut env = valid_env();
    env.push(("PORT", "not-a-port".into()));
    let out = check_config(&env);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PORT"), "{stderr}");
}

#[tokio::test]
async fn check_config_connects_to_the_database_and_says_so() {
    let db = support::TestDb::create_named("amosync_cli").await;
    let out = check_config(&env_with_database(db.url()));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("# database: reachable, account accepted"),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_config_fails_fast_for_a_user_the_database_does_not_know() {
    let server = support::server_url().await;
    let url = format!(
        "{}/amosync",
        with_account(&server, "no_such_user_4f2a", "wrong")
    );
    let started = Instant::now();
    let out = check_config(&env_with_database(url));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused DATABASE_URL's account"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong@"),
        "the password is masked: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn check_config_gives_up_on_a_silent_database_after_5_seconds() {
    // Accepts connections (the kernel does) but never greets them, like a firewall
    // that swallows packets or a hung server.
    let silent = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = silent.local_addr().expect("address").port();
    let started = Instant::now();
    let out = check_config(&env_with_database(format!(
        "mysql://root@127.0.0.1:{port}/amosync"
    )));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not answer within 5 s"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_wrong_database_password_fails_at_once_instead_of_waiting_for_the_server() {
    let server = support::server_url().await;
    let url = format!(
        "{}/amosync",
        with_account(&server, "no_such_user_4f2a", "wrong")
    );
    let started = Instant::now();
    // DB_WAIT_SECS (60 by default) is for a booting server, not a refused account.
    let out = amosync(&["migrate"], &env_with_database(url));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(text(&out.stderr).contains("Access denied"));
}

#[test]
fn sync_retry_without_an_id_is_a_usage_error() {
    let out = amosync(&["sync", "retry"], &valid_env());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Usage: amosync sync retry"), "{stderr}");
    assert!(out.stdout.is_empty(), "no log line: {}", text(&out.stdout));
}

#[test]
fn sync_jobs_refuses_an_unknown_status() {
    let out = amosync(&["sync", "jobs", "--status", "bogus"], &valid_env());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[possible values: pending, done, dead]"),
        "{stderr}"
    );
}

/// The values the demo stack and `.env.example` publish.
const SAMPLE_API_TOKENS: &str = "local-dev:change-me-local-dev-token-0001";
const SAMPLE_WEBHOOK_SECRET: &str = "compose-first-run-webhook-secret-0001";

/// `valid_env` with these variables replaced.
fn env_with(changes: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = valid_env()
        .into_iter()
        .filter(|(k, _)| !changes.iter().any(|(name, _)| name == k))
        .collect();
    env.extend(changes.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

fn refused(out: &Output, names: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for name in names {
        assert!(stderr.contains(name), "{name} not named in\n{stderr}");
    }
    assert!(
        out.stdout.is_empty(),
        "nothing is printed as if it were valid"
    );
}

#[test]
fn serve_refuses_the_published_sample_values_unless_the_demo_switch_is_set() {
    // A database that does not answer: without the check, serve would wait for it.
    let env = env_with(&[
        ("AMO_BASE_URL", "http://127.0.0.1:9"),
        ("DATABASE_URL", "mysql://root@127.0.0.1:1/amosync"),
        ("DB_WAIT_SECS", "1"),
        ("API_TOKENS", SAMPLE_API_TOKENS),
        ("WEBHOOK_SECRET", SAMPLE_WEBHOOK_SECRET),
    ]);
    let out = amosync(&["serve"], &env);
    refused(&out, &["API_TOKENS", "WEBHOOK_SECRET", "AMOSYNC_DEMO=true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("change-me-local-dev-token-0001"),
        "{stderr}"
    );

    let mut demo = env.clone();
    demo.push(("AMOSYNC_DEMO", "true".into()));
    // Past the refusal: the report is printed (the unreachable database then fails it).
    let out = check_config(&demo);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!stderr.contains("amosync: refused:"), "{stderr}");
    assert!(stdout.lines().any(|l| l == "AMOSYNC_DEMO=true"), "{stdout}");
}

#[test]
fn a_real_account_refuses_samples_and_a_private_server_url_whatever_the_demo_switch() {
    let env = env_with(&[
        ("AMO_ACCESS_TOKEN", "change-me"),
        ("API_TOKENS", SAMPLE_API_TOKENS),
        ("SERVER_URL", "http://nginx"),
        ("AMOSYNC_DEMO", "true"),
    ]);
    let out = check_config(&env);
    refused(
        &out,
        &[
            "API_TOKENS",
            "AMO_ACCESS_TOKEN",
            "SERVER_URL",
            "public https:// URL",
            "does not apply to a real AmoCRM account",
            // The switch on with a real account: most likely the compose demo.
            "COMPOSE_FILE=docker-compose.yml",
        ],
    );
}

#[test]
fn every_sync_option_has_help() {
    for (command, flag) in [
        (&["sync", "retry", "--help"][..], "--all-dead"),
        (&["sync", "jobs", "--help"][..], "--limit"),
        (&["sync", "duplicates", "--help"][..], "--limit"),
    ] {
        let out = amosync(command, &[]);
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("no {flag} in {stdout}"));
        // The help follows on the flag's line, or (long help) on the next one.
        let same_line = lines[at].trim_start().trim_start_matches(flag);
        let same_line = same_line.split_once("  ").map_or("", |(_, h)| h.trim());
        let next_line = lines.get(at + 1).map_or("", |l| l.trim());
        let help = if same_line.is_empty() && !next_line.starts_with('-') {
            next_line
        } else {
            same_line
        };
        assert!(!help.is_empty(), "{flag} has no help:\n{stdout}");
    }
}

/// The fake AmoCRM binary with `contacts` seeded, until dropped.
struct Fake(Child, u16);

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_fake(contacts: u32) -> Fake {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new(support::fake_amocrm_binary())
        .args(["--port", &port.to_string(), "--rps-limit", "0"])
        .args(["--long-lived-token", "cli-fake-token"])
        .args(["--seed-contacts", &contacts.to_string()])
        .env_clear()
        .stdout(Stdio::null())
        .spawn()
        .expect("start the fake AmoCRM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the fake never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    Fake(child, port)
}

#[tokio::test]
async fn a_second_full_import_with_nothing_new_imports_nothing() {
    let db = support::TestDb::create_named("amosync_cli").await;
    let fake = start_fake(5);
    let mut env = env_with_database(db.url());
    env.retain(|(k, _)| !matches!(*k, "AMO_DOMAIN" | "AMO_ACCESS_TOKEN"));
    env.push(("AMO_BASE_URL", format!("http://127.0.0.1:{}", fake.1)));
    env.push(("AMO_ACCESS_TOKEN", "cli-fake-token".into()));
    let run = || {
        let out = amosync(&["sync", "--full"], &env);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        stdout
    };
    let first = run();
    assert!(first.contains("contacts: 5 imported"), "{first}");
    let second = run();
    assert!(
        second.contains("contacts: 0 imported"),
        "a re-run reports nothing new:\n{second}"
    );
}

#[test]
fn webhooks_subscribe_never_registers_a_private_server_url_in_a_real_account() {
    let env = env_with(&[
        ("SERVER_URL", "http://localhost:8088"),
        ("AMO_CONNECT_TIMEOUT_SECS", "1"),
        ("DATABASE_URL", "mysql://root@127.0.0.1:1/amosync"),
    ]);
    refused(&amosync(&["webhooks", "subscribe"], &env), &["SERVER_URL"]);
}

#[tokio::test]
async fn amocrm_fields_pipelines_and_users_read_the_catalogue_once_and_then_print_the_stored_copy()
{
    let db = support::TestDb::create_named("amosync_cli").await;
    let fake = start_fake(0);
    let mut env = env_with_database(db.url());
    env.retain(|(k, _)| !matches!(*k, "AMO_DOMAIN" | "AMO_ACCESS_TOKEN"));
    env.push(("AMO_BASE_URL", format!("http://127.0.0.1:{}", fake.1)));
    env.push(("AMO_ACCESS_TOKEN", "cli-fake-token".into()));
    let run = |args: &[&str], env: &[(&'static str, String)]| {
        let out = amosync(args, env);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            text(&out.stderr)
        );
        stdout
    };
    let leads = run(&["amocrm", "fields", "--entity", "leads"], &env);
    let utm = leads
        .lines()
        .find(|l| l.contains("\tUTM_SOURCE\t"))
        .unwrap_or_else(|| panic!("no UTM_SOURCE field:\n{leads}"));
    assert!(
        utm.starts_with("leads\t") && utm.contains("\ttracking_data\t"),
        "{utm}"
    );
    assert!(leads.lines().all(|l| l.starts_with("leads\t")), "{leads}");
    let select = leads
        .lines()
        .find(|l| l.contains("\tselect\t"))
        .expect("a select field");
    assert!(
        select.contains("\t-\t") && select.contains("=Звонок"),
        "{select}"
    );

    let pipelines = run(&["amocrm", "pipelines"], &env);
    assert!(pipelines.contains("\tmain"), "{pipelines}");
    assert_eq!(
        pipelines
            .lines()
            .filter(|l| l.starts_with("  status\t142\t"))
            .count(),
        2,
        "won in both pipelines:\n{pipelines}"
    );
    let users = run(&["amocrm", "users"], &env);
    assert!(
        users.contains("\tactive\tadmin") && users.contains("\tinactive"),
        "{users}"
    );

    // Stored now: with AmoCRM gone, the stored copy is still printed; --refresh fails.
    drop(fake);
    let mut offline = env.clone();
    offline.retain(|(k, _)| *k != "AMO_BASE_URL");
    offline.push(("AMO_BASE_URL", "http://127.0.0.1:9".into()));
    let again = run(&["amocrm", "fields", "--entity", "leads"], &offline);
    assert_eq!(again, leads);
    let refused = amosync(&["amocrm", "fields", "--refresh"], &offline);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
}
