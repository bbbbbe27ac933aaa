//! The test database, taken the same way by every test binary: the server named by
//! `TEST_DATABASE_URL` (e.g. `mysql://root@127.0.0.1:3306`) or, when that is unset, a
//! MySQL 8.0 container started with testcontainers (a Docker engine must run). Each
//! test gets a database of its own, dropped when the test ends. Also where the tests that
//! run amosync's binary find the fake AmoCRM's.
//!
//! Each test binary uses a part of this module; the rest would warn as dead code.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use amosync::repositories::Db;
use diesel::{Connection, MysqlConnection, RunQueryDsl};
use tokio::sync::OnceCell;

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    server_url: String,
    name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        TestDb::create_named("amosync_test").await
    }

    /// A database whose name starts with `prefix` (to tell the binaries' leftovers apart).
    pub async fn create_named(prefix: &str) -> TestDb {
        let server_url = server_url().await;
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let (url, db) = (server_url.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            let mut conn = MysqlConnection::establish(&url).unwrap_or_else(|e| {
                panic!("cannot connect to the test database server {url}: {e}")
            });
            diesel::sql_query(format!(
                "CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            ))
            .execute(&mut conn)
            .expect("create test database");
        })
        .await
        .expect("create database task");
        TestDb { server_url, name }
    }

    /// `mysql://…/{name}`: this test's database.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server_url, self.name)
    }

    /// The server, without a database.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Applies the migrations the way the app does at start-up.
    pub async fn migrate(&self) {
        Db::new(&self.url(), 1, Duration::from_secs(5))
            .migrate()
            .await
            .expect("migrate");
    }

    /// Runs SQL against this test's database (for checks the API does not expose).
    pub fn query_i64(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = MysqlConnection::establish(&self.url()).expect("connect");
        let rows: Vec<Row> = diesel::sql_query(sql).load(&mut conn).expect("query");
        rows.first().map(|r| r.n).expect("one row")
    }

    /// The text column `s` of every row `sql` returns (`SELECT … AS s`), NULLs left out.
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            s: Option<String>,
        }
        let mut conn = MysqlConnection::establish(&self.url()).expect("connect");
        let rows: Vec<Row> = diesel::sql_query(sql).load(&mut conn).expect("query");
        rows.into_iter().filter_map(|r| r.s).collect()
    }

    /// Kills every server connection to this database, as a database restart would.
    pub fn kill_connections(&self) -> usize {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            id: i64,
        }
        let mut conn = MysqlConnection::establish(&self.server_url).expect("connect");
        let rows: Vec<Row> = diesel::sql_query(format!(
            "SELECT CAST(id AS SIGNED) AS id FROM information_schema.processlist \
             WHERE db = '{}' AND id <> CONNECTION_ID()",
            self.name
        ))
        .load(&mut conn)
        .expect("list connections");
        for row in &rows {
            // A connection that ended by itself meanwhile is fine.
            let _ = diesel::sql_query(format!("KILL CONNECTION {}", row.id)).execute(&mut conn);
        }
        rows.len()
    }

    pub fn execute(&self, sql: &str) {
        let mut conn = MysqlConnection::establish(&self.url()).expect("connect");
        diesel::sql_query(sql).execute(&mut conn).expect("execute");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut conn) = MysqlConnection::establish(&self.server_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS `{}`", self.name))
                .execute(&mut conn);
        }
    }
}

/// The database server every test of this binary shares, without a database name.
pub async fn server_url() -> String {
    if let Some(url) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        return url.trim().trim_end_matches('/').to_owned();
    }
    static CONTAINER: OnceCell<String> = OnceCell::const_new();
    CONTAINER.get_or_init(start_container).await.clone()
}

/// Without `TEST_DATABASE_URL`, a throw-away MySQL 8.0 in Docker serves every test.
async fn start_container() -> String {
    use testcontainers::runners::AsyncRunner;
    use testcontainers::ImageExt;
    let container = testcontainers_modules::mysql::Mysql::default()
        .with_tag("8.0")
        .start()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no test database: set TEST_DATABASE_URL (e.g. mysql://root@127.0.0.1:3306), \
                 or run a Docker engine for testcontainers ({e}); scripts/test does the set-up"
            )
        });
    let port = container
        .get_host_port_ipv4(3306)
        .await
        .expect("mapped MySQL port");
    // The container lives as long as the test process: every test shares it.
    std::mem::forget(container);
    format!("mysql://root@127.0.0.1:{port}")
}

/// Panics with what to do when `program` is not on PATH: a test that needs it then
/// says why it cannot run instead of failing somewhere inside.
pub fn require_program(program: &str, why: &str, install: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    assert!(
        found,
        "`{program}` is not on PATH: {why}. Install it ({install}), or run scripts/test, \
         which installs what a fresh machine lacks"
    );
}

/// The `amosync-fake-amocrm` binary, beside amosync's own in the target directory: it
/// belongs to the workspace's other package (crates/fake-amocrm), and a package's tests
/// are given `CARGO_BIN_EXE_*` only for its own binaries. `scripts/test` builds it first.
pub fn fake_amocrm_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_amosync")).with_file_name("amosync-fake-amocrm");
    assert!(
        path.is_file(),
        "no {}: build it with `cargo build --workspace --bin amosync-fake-amocrm` \
         (scripts/test does)",
        path.display()
    );
    path
}
