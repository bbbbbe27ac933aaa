//! Webhook deliveries in AmoCRM's form-encoded v2 layout, and timing how fast
//! amosync's worker applies what is waiting in its inbox.

use std::io::Write;
use std::time::{Duration, Instant};

use diesel::mysql::MysqlConnection;
use diesel::prelude::*;

use crate::db::{self, webhook_inbox};
use crate::report;

const CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// The fake AmoCRM's default account, which amosync is configured to accept.
const ACCOUNT: &str = "account[subdomain]=example&account[id]=29000001";

/// One delivery updating `count` contacts with AmoCRM ids from `first` (the body
/// benches/webhooks.rs sends).
pub fn delivery(first: u64, count: u64) -> String {
    let mut body = String::from(ACCOUNT);
    for i in 0..count {
        let id = first + i;
        body.push_str(&format!(
            "&contacts[update][{i}][id]={id}&contacts[update][{i}][name]=Bench+{id}\
             &contacts[update][{i}][last_modified]=1700000000\
             &contacts[update][{i}][custom_fields][0][code]=PHONE\
             &contacts[update][{i}][custom_fields][0][values][0][value]=%2B7916{:07}",
            id % 10_000_000
        ));
    }
    body
}

#[derive(Debug, clap::Args)]
pub struct BodiesArgs {
    /// Where to write the bodies, one per line.
    #[arg(long)]
    out: std::path::PathBuf,
    /// How many deliveries (lines).
    #[arg(long)]
    count: u64,
    /// Contacts in each delivery.
    #[arg(long, default_value_t = 10)]
    contacts: u64,
    /// The first AmoCRM id; deliveries use consecutive ids after it.
    #[arg(long)]
    first_id: u64,
}

pub fn bodies(args: &BodiesArgs) -> crate::Result<()> {
    let file = std::fs::File::create(&args.out)
        .map_err(|e| format!("create {}: {e}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for n in 0..args.count {
        writeln!(
            out,
            "{}",
            delivery(args.first_id + n * args.contacts, args.contacts)
        )
        .map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// amosync's database.
    #[arg(long)]
    database_url: String,
    /// amosync's webhook URL (with the secret), to wake the worker.
    #[arg(long)]
    webhook_url: String,
    /// Deliveries put into the inbox.
    #[arg(long)]
    deliveries: u64,
    /// New contacts in each delivery.
    #[arg(long, default_value_t = 100)]
    contacts: u64,
    /// The first AmoCRM id (unused so far, so every contact is new).
    #[arg(long)]
    first_id: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// Puts `deliveries` into the inbox in one transaction (so the worker sees them all
/// at once, as after a burst it could not keep up with), wakes the worker with one
/// real delivery, and times until the inbox is empty: the worker's apply rate alone,
/// without acknowledgements competing for the CPU.
pub fn apply(args: &ApplyArgs) -> crate::Result<()> {
    let mut conn = db::connect(&args.database_url)?;
    let timeout = Duration::from_secs(args.timeout);
    wait_empty(&mut conn, timeout)?;
    let failed_before = failed(&mut conn)?;

    let bodies: Vec<String> = (0..args.deliveries)
        .map(|n| delivery(args.first_id + n * args.contacts, args.contacts))
        .collect();
    conn.transaction(|conn| {
        // 50 bodies per statement keeps each statement far below max_allowed_packet.
        for chunk in bodies.chunks(50) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|b| {
                    (
                        webhook_inbox::content_type.eq(CONTENT_TYPE),
                        webhook_inbox::body.eq(b.as_bytes()),
                    )
                })
                .collect();
            diesel::insert_into(webhook_inbox::table)
                .values(rows)
                .execute(conn)?;
        }
        diesel::QueryResult::Ok(())
    })
    .map_err(|e| format!("fill the inbox: {e}"))?;

    let wake_id = args.first_id + args.deliveries * args.contacts;
    let began = Instant::now();
    post(&args.webhook_url, &delivery(wake_id, 1))?;
    wait_empty(&mut conn, timeout)?;
    let took = began.elapsed().as_secs_f64();

    if failed(&mut conn)? > failed_before {
        return Err("the worker marked deliveries failed (see amosync's log)".into());
    }
    let expected = args.deliveries * args.contacts + 1;
    let applied = db::scalar(
        &mut conn,
        &format!(
            "SELECT COUNT(*) AS n FROM contacts WHERE amocrm_id BETWEEN {} AND {}",
            args.first_id, wake_id
        ),
    )?;
    if applied as u64 != expected {
        return Err(format!(
            "{applied} of {expected} contacts reached the mirror"
        ));
    }
    report("apply_entities", expected);
    report("apply_secs", format!("{took:.3}"));
    report("apply_rate", format!("{:.1}", expected as f64 / took));
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// amosync's database.
    #[arg(long)]
    database_url: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// How many deliveries are waiting now, and how long until none are.
pub fn drain(args: &DrainArgs) -> crate::Result<()> {
    let mut conn = db::connect(&args.database_url)?;
    let began = Instant::now();
    let waiting = pending(&mut conn)?;
    wait_empty(&mut conn, Duration::from_secs(args.timeout))?;
    report("drain_pending", waiting);
    report(
        "drain_secs",
        format!("{:.3}", began.elapsed().as_secs_f64()),
    );
    report("drain_failed", failed(&mut conn)?);
    Ok(())
}

fn pending(conn: &mut MysqlConnection) -> crate::Result<i64> {
    db::scalar(
        conn,
        "SELECT COUNT(*) AS n FROM webhook_inbox WHERE status = 'pending'",
    )
}

fn failed(conn: &mut MysqlConnection) -> crate::Result<i64> {
    db::scalar(
        conn,
        "SELECT COUNT(*) AS n FROM webhook_inbox WHERE status = 'failed'",
    )
}

fn wait_empty(conn: &mut MysqlConnection, timeout: Duration) -> crate::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = pending(conn)?;
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{left} deliveries still pending after {} s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn post(url: &str, body: &str) -> crate::Result<()> {
    let reply = ureq::post(url)
        .set("content-type", CONTENT_TYPE)
        .send_string(body);
    match reply {
        Ok(r) if r.status() == 200 => Ok(()),
        Ok(r) => Err(format!("webhook answered {}", r.status())),
        Err(e) => Err(format!("webhook: {e}")),
    }
}
