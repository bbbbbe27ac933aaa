//! What the benchmarks share: settings from the environment and a fresh database.

use diesel::{Connection, MysqlConnection, RunQueryDsl};

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
