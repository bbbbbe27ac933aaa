//! What the benchmarks share: settings from the environment and a fresh database.

use amosync::settings::Settings;
use amosync::startup::Application;
use diesel::{Connection, MysqlConnection, RunQueryDsl};

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts the real application in-process on a loopback port with `env` plus the
/// settings every benchmark shares (quiet logs, a 16-connection pool); returns the port.
pub async fn spawn_app(database_url: &str, env: &[(&str, String)]) -> u16 {
    let settings = settings(database_url, env);
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let app = Application::build(settings, logger).await.expect("app");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    port
}

/// The settings `spawn_app` starts the application with.
pub fn settings(database_url: &str, env: &[(&str, String)]) -> Settings {
    let mut all: std::collections::HashMap<&str, String> = [
        ("DATABASE_URL", database_url.to_owned()),
        ("BIND_ADDR", "127.0.0.1".into()),
        ("PORT", "0".into()),
        ("DB_POOL_SIZE", "16".into()),
    ]
    .into_iter()
    .collect();
    all.extend(env.iter().cloned());
    Settings::from_lookup(|k| all.get(k).cloned()).expect("settings")
}

/// A database created for one run on the server named by `BENCH_DATABASE_URL` (or
/// `TEST_DATABASE_URL`, default `mysql://root@127.0.0.1:3306`), dropped on drop.
pub struct BenchDatabase {
    admin: MysqlConnection,
    name: String,
    pub url: String,
}

impl BenchDatabase {
    pub fn create(prefix: &str) -> Self {
        let server = std::env::var("BENCH_DATABASE_URL")
            .or_else(|_| std::env::var("TEST_DATABASE_URL"))
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
        let server = server.trim_end_matches('/').to_owned();
        let name = format!("{prefix}_{}", std::process::id());
        let mut admin = MysqlConnection::establish(&server).expect("database server");
        diesel::sql_query(format!("CREATE DATABASE `{name}`"))
            .execute(&mut admin)
            .expect("create db");
        let url = format!("{server}/{name}");
        BenchDatabase { admin, name, url }
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        let _ =
            diesel::sql_query(format!("DROP DATABASE `{}`", self.name)).execute(&mut self.admin);
    }
}
