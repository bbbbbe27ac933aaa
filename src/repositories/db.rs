//! The connection pool and the one helper through which every query runs: the
//! connection is checked out and used inside `spawn_blocking`, never on an async worker.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, ManageConnection, Pool};
use diesel::sql_types::{Integer, Nullable, Text};
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use slog::Logger;

use super::RepoError;
use crate::cause::Cause;
use crate::metrics::PoolState;
use crate::settings;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Every session speaks UTC, so `DATETIME` values mean the same on every instance.
#[derive(Debug)]
struct SessionSetup;

impl CustomizeConnection<Pooled, diesel::r2d2::Error> for SessionSetup {
    fn on_acquire(&self, conn: &mut Pooled) -> Result<(), diesel::r2d2::Error> {
        conn.inner
            .batch_execute("SET time_zone = '+00:00', NAMES utf8mb4")
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// A pooled connection and whether a query on it found the server gone.
pub struct Pooled {
    inner: MysqlConnection,
    lost: bool,
}

/// Diesel's manager without r2d2's test-on-checkout: a `SELECT 1` round trip before
/// every use costs about a fifth of a short request. Instead a connection on which a
/// query failed with a lost-connection error is marked and dropped when it comes
/// back, so a restarted server costs each stale connection one failed call (a 503
/// the client retries), not every call.
struct Manager(ConnectionManager<MysqlConnection>);

impl ManageConnection for Manager {
    type Connection = Pooled;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Pooled, Self::Error> {
        Ok(Pooled {
            inner: self.0.connect()?,
            lost: false,
        })
    }

    fn is_valid(&self, conn: &mut Pooled) -> Result<(), Self::Error> {
        self.0.is_valid(&mut conn.inner)
    }

    fn has_broken(&self, conn: &mut Pooled) -> bool {
        conn.lost || self.0.has_broken(&mut conn.inner)
    }
}

#[derive(Clone)]
pub struct Db {
    pool: Pool<Manager>,
}

impl Db {
    /// Builds the pool without connecting, so start-up can wait for a booting database.
    /// A checkout that waits longer than `checkout_timeout` fails as `Unavailable`.
    /// The pool the settings describe (`DATABASE_URL`, `DB_POOL_SIZE`, checkout timeout).
    pub fn connect(settings: &settings::Db) -> Db {
        Self::sized(settings, settings.pool_size)
    }

    /// The settings' database with a pool of `max_size`: a command's, or a task's own.
    pub fn sized(settings: &settings::Db, max_size: u32) -> Db {
        Self::new(settings.url.expose(), max_size, settings.checkout_timeout)
    }

    pub fn new(database_url: &str, max_size: u32, checkout_timeout: Duration) -> Db {
        let manager = Manager(ConnectionManager::<MysqlConnection>::new(database_url));
        let pool = Pool::builder()
            .max_size(max_size.max(1))
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(checkout_timeout)
            .connection_customizer(Box::new(SessionSetup))
            .build_unchecked(manager);
        Db { pool }
    }

    /// Pooled connections checked out and idle right now (for `/metrics`).
    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            in_use: state.connections.saturating_sub(state.idle_connections),
            idle: state.idle_connections,
        }
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, RepoError>
    where
        F: FnOnce(&mut MysqlConnection) -> Result<T, RepoError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| RepoError::Unavailable(Cause::new(e)))?;
            let result = f(&mut conn.inner);
            if let Err(RepoError::Unavailable(why)) = &result {
                conn.lost = super::is_connection_lost(&why.to_string());
            }
            result
        })
        .await
        .map_err(|e| RepoError::Query(Cause::new(e)))?
    }

    /// Waits, with growing pauses, until the database answers or `limit` has passed.
    pub async fn wait_until_reachable(
        &self,
        limit: Duration,
        logger: &Logger,
    ) -> Result<(), RepoError> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            match self.run(ping).await {
                Ok(()) => return Ok(()),
                // A wrong password or user is not a booting server: say so now.
                Err(err) if err.is_access_refused() => return Err(err),
                Err(err) if started.elapsed() + pause < limit => {
                    slog::warn!(logger, "database not reachable yet, retrying";
                        "error" => err.to_string(), "retry_in_ms" => pause.as_millis() as u64);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Connects once and runs `SELECT 1`, giving up after `timeout`: `check-config`
    /// must say at once whether the configured server and account work. On a timeout
    /// the connecting thread is left behind (the client library has no deadline of its
    /// own); the command exits right after.
    pub fn probe(database_url: &str, timeout: Duration) -> Result<(), RepoError> {
        let url = database_url.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = MysqlConnection::establish(&url)
                .map_err(|e| RepoError::Unavailable(Cause::new(e)))
                .and_then(|mut conn| ping(&mut conn));
            let _ = tx.send(result);
        });
        rx.recv_timeout(timeout).unwrap_or_else(|_| {
            Err(RepoError::Unavailable(
                format!("the server did not answer within {} s", timeout.as_secs()).into(),
            ))
        })
    }

    /// Applies pending migrations, serialised across instances by a MySQL named lock.
    pub async fn migrate(&self) -> Result<Vec<String>, RepoError> {
        self.run(|conn| {
            with_named_lock(conn, "amosync.migrations", 120, |conn| {
                let applied = conn
                    .run_pending_migrations(MIGRATIONS)
                    .map_err(|e| RepoError::Query(format!("migration failed: {e}").into()))?;
                Ok(applied.iter().map(|v| v.to_string()).collect())
            })
        })
        .await
    }

    /// `Ok(true)` when the database answers and no migration is pending.
    pub async fn is_ready(&self) -> Result<bool, RepoError> {
        self.run(|conn| {
            ping(conn)?;
            conn.has_pending_migration(MIGRATIONS)
                .map(|pending| !pending)
                .map_err(|e| RepoError::Query(format!("cannot read migration state: {e}").into()))
        })
        .await
    }
}

fn ping(conn: &mut MysqlConnection) -> Result<(), RepoError> {
    conn.batch_execute("SELECT 1").map_err(RepoError::from)
}

/// Runs `f` while holding the MySQL named lock `name` (waiting up to `timeout_secs`).
/// Named locks belong to the session, not the transaction, so they are released
/// explicitly whatever `f` returns.
pub fn with_named_lock<T>(
    conn: &mut MysqlConnection,
    name: &str,
    timeout_secs: i32,
    f: impl FnOnce(&mut MysqlConnection) -> Result<T, RepoError>,
) -> Result<T, RepoError> {
    let got: Option<i32> = diesel::select(
        diesel::dsl::sql::<Nullable<Integer>>("GET_LOCK(")
            .bind::<Text, _>(name)
            .sql(", ")
            .bind::<Integer, _>(timeout_secs)
            .sql(")"),
    )
    .get_result(conn)?;
    if got != Some(1) {
        return Err(RepoError::Unavailable(
            format!("could not take lock {name} within {timeout_secs}s").into(),
        ));
    }
    let result = f(conn);
    let released: Result<Option<i32>, _> = diesel::select(
        diesel::dsl::sql::<Nullable<Integer>>("RELEASE_LOCK(")
            .bind::<Text, _>(name)
            .sql(")"),
    )
    .get_result(conn);
    match (result, released) {
        (Ok(value), Ok(_)) => Ok(value),
        (Err(err), _) => Err(err),
        (Ok(_), Err(err)) => Err(err.into()),
    }
}

/// Runs `f` (one transaction) again when InnoDB picked it as a deadlock victim: the
/// server rolled it back whole, so a retry is safe, and concurrent claims and
/// inserts on the same indexes do deadlock now and then. A lock wait that timed out
/// is not retried: it has already waited `innodb_lock_wait_timeout`.
pub fn retry_deadlocks<T>(
    conn: &mut MysqlConnection,
    mut f: impl FnMut(&mut MysqlConnection) -> Result<T, RepoError>,
) -> Result<T, RepoError> {
    // Doubling pauses from 5 ms (capped at 160 ms) give the winning transaction,
    // e.g. a worker's claim of hundreds of rows on a busy disk, about a second in
    // all to commit before the caller hears `Unavailable`.
    const ATTEMPTS: u32 = 9;
    let mut attempt = 1;
    loop {
        match f(conn) {
            Err(RepoError::Unavailable(why)) if attempt < ATTEMPTS && is_deadlock(&why) => {
                let pause = (5u64 << (attempt - 1)).min(160);
                std::thread::sleep(Duration::from_millis(pause + fastrand::u64(0..pause)));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn is_deadlock(cause: &Cause) -> bool {
    cause.to_string().contains("Deadlock found")
}
