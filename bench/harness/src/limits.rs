//! What the database server manages on its own, measured on the same server and
//! schema as amosync in the same run, so amosync's figures become ratios that mean
//! something on a shared, noisy machine.
//!
//! - `insert_rate`: single-row autocommit INSERTs into `webhook_inbox` with a real
//!   delivery body over N connections (what a webhook acknowledgement costs at least).
//! - `upsert_rows_rate`: 500-row `INSERT … ON DUPLICATE KEY UPDATE` into `contacts`
//!   with new AmoCRM ids on one connection, the statement amosync's webhook worker
//!   runs (the worker is one task, so one connection).
//! - `pk_select_rate`: primary-key SELECTs of a whole `contacts` row over N
//!   connections (what a `GET /api/v1/contacts/{id}` costs at least).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use diesel::mysql::MysqlConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use crate::db::{self, contacts, webhook_inbox};
use crate::report;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A database migrated with amosync's schema (it gets rows written into it).
    #[arg(long)]
    database_url: String,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Connections for the single-row INSERT and the SELECT measurements.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// A webhook delivery body, stored as the inbox rows' body.
    #[arg(long)]
    body_file: std::path::PathBuf,
}

/// Rows per multi-row upsert: amosync's `CHUNK` in src/repositories/mirror.rs.
const UPSERT_ROWS: usize = 500;

pub fn run(args: &Args) -> crate::Result<()> {
    let body = std::fs::read(&args.body_file)
        .map_err(|e| format!("read {}: {e}", args.body_file.display()))?;
    let secs = Duration::from_secs_f64(args.secs);

    let inserts = concurrently(&args.database_url, args.connections, secs, |conn, _| {
        diesel::insert_into(webhook_inbox::table)
            .values((
                webhook_inbox::content_type.eq("application/x-www-form-urlencoded"),
                webhook_inbox::body.eq(&body),
            ))
            .execute(conn)
            .map(|_| 1)
    })?;
    report("insert_rate", format!("{inserts:.1}"));

    let rows = upserts(&args.database_url, secs)?;
    report("upsert_rows_rate", format!("{rows:.1}"));

    let mut conn = db::connect(&args.database_url)?;
    let (low, high) = (
        db::scalar(&mut conn, "SELECT COALESCE(MIN(id), 0) AS n FROM contacts")?,
        db::scalar(&mut conn, "SELECT COALESCE(MAX(id), 0) AS n FROM contacts")?,
    );
    if high <= low {
        return Err("no contacts to select (the upsert measurement wrote none)".into());
    }
    let selects = concurrently(&args.database_url, args.connections, secs, |conn, rng| {
        contacts::table
            .find(rng.i64(low..=high))
            .select((
                contacts::id,
                contacts::amocrm_id,
                contacts::name,
                contacts::phone,
                contacts::sync_status,
                contacts::sync_attempts,
                contacts::sync_error,
                contacts::sync_lease_until,
                contacts::amo_updated_at,
                contacts::deleted_at,
                contacts::created_at,
                contacts::updated_at,
            ))
            .first::<ContactRow>(conn)
            .optional()
            .map(|_| 1)
    })?;
    report("pk_select_rate", format!("{selects:.1}"));
    Ok(())
}

type ContactRow = (
    i64,
    Option<i64>,
    String,
    Option<String>,
    String,
    i32,
    Option<String>,
    Option<chrono::NaiveDateTime>,
    Option<i64>,
    Option<chrono::NaiveDateTime>,
    chrono::NaiveDateTime,
    chrono::NaiveDateTime,
);

/// Runs `op` in a loop on `connections` threads, each with its own connection, all
/// starting together, for `secs`; returns the operations per second (`op` returns
/// how many it did). Any database error fails the measurement.
fn concurrently<F>(url: &str, connections: usize, secs: Duration, op: F) -> crate::Result<f64>
where
    F: Fn(&mut MysqlConnection, &mut fastrand::Rng) -> QueryResult<u64> + Sync,
{
    let connections = connections.max(1);
    let start = Barrier::new(connections);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let mut conns = (0..connections)
        .map(|_| db::connect(url))
        .collect::<crate::Result<Vec<_>>>()?;
    let took = std::thread::scope(|scope| {
        let workers: Vec<_> = conns
            .iter_mut()
            .enumerate()
            .map(|(n, conn)| {
                let (start, done, failed, op) = (&start, &done, &failed, &op);
                scope.spawn(move || -> crate::Result<Duration> {
                    let mut rng = fastrand::Rng::with_seed(n as u64);
                    start.wait();
                    let began = Instant::now();
                    let mut count = 0;
                    while began.elapsed() < secs && !failed.load(Ordering::Relaxed) {
                        match op(conn, &mut rng) {
                            Ok(n) => count += n,
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e.to_string());
                            }
                        }
                    }
                    done.fetch_add(count, Ordering::Relaxed);
                    Ok(began.elapsed())
                })
            })
            .collect();
        let mut longest = Duration::ZERO;
        for worker in workers {
            let took = worker
                .join()
                .map_err(|_| "a worker panicked".to_string())??;
            longest = longest.max(took);
        }
        Ok::<_, String>(longest)
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / took.as_secs_f64())
}

/// amosync's contact upsert (src/repositories/mirror.rs), same statement shape.
fn upsert_sql(rows: usize) -> String {
    const NEWER: &str = "VALUES(amo_updated_at) >= COALESCE(amo_updated_at, 0)";
    format!(
        "INSERT INTO contacts (amocrm_id, name, phone, sync_status, amo_updated_at) VALUES {} \
         ON DUPLICATE KEY UPDATE \
         name = IF({NEWER} AND VALUES(name) <> '', VALUES(name), name), \
         phone = IF({NEWER}, VALUES(phone), phone), \
         sync_status = 'synced', sync_error = NULL, \
         amo_updated_at = GREATEST(COALESCE(amo_updated_at, 0), VALUES(amo_updated_at))",
        vec!["(?, ?, ?, 'synced', ?)"; rows].join(", ")
    )
}

/// Multi-row upserts of new contacts on one connection: rows per second.
fn upserts(url: &str, secs: Duration) -> crate::Result<f64> {
    let mut conn = db::connect(url)?;
    // New AmoCRM ids above anything already in the table, so every row is an insert,
    // as it is for the apply scenario.
    let mut next = db::scalar(
        &mut conn,
        "SELECT COALESCE(MAX(amocrm_id), 0) AS n FROM contacts",
    )? + 1_000_000_000;
    let sql = upsert_sql(UPSERT_ROWS);
    let began = Instant::now();
    let mut rows = 0u64;
    while began.elapsed() < secs {
        let mut q = diesel::sql_query(sql.clone()).into_boxed::<diesel::mysql::Mysql>();
        for _ in 0..UPSERT_ROWS {
            q = q
                .bind::<BigInt, _>(next)
                .bind::<Text, _>(format!("Limit {next}"))
                .bind::<Nullable<Text>, _>(Some(format!("+7916{:07}", next % 10_000_000)))
                .bind::<BigInt, _>(1_700_000_000i64);
            next += 1;
        }
        q.execute(&mut conn).map_err(|e| format!("upsert: {e}"))?;
        rows += UPSERT_ROWS as u64;
    }
    Ok(rows as f64 / began.elapsed().as_secs_f64())
}
