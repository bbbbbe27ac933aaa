//! `amosync check-config` run as an operator would: the real binary, a controlled
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
    // An empty directory, so a developer's .env cannot leak into the result.
    let dir = std::env::temp_dir().join(format!("amosync-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_amosync"))
        .arg("check-config")
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
