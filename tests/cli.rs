//! `amosync check-config` (and the refusals of `serve` and `webhooks subscribe`) run as an operator would: the real binary, a controlled
//! environment, and no `.env` file in its working directory.

use std::process::{Command, Output};

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

fn check_config(env: &[(&'static str, String)]) -> Output {
    amosync(&["check-config"], env)
}

fn amosync(args: &[&str], env: &[(&'static str, String)]) -> Output {
    // An empty directory, so a developer's .env cannot leak into the result.
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

#[test]
fn a_valid_environment_is_printed_with_every_secret_masked() {
    let out = check_config(&valid_env());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    assert!(!out.status.success());
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
    let out = check_config(&demo);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
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
        ],
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
