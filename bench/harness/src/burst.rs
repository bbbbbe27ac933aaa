//! The burst scenario (new contacts posted as fast as clients can, then the wait
//! until AmoCRM has every one of them) and the URL lists for the read scenario.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::RunQueryDsl;

use crate::db;
use crate::report;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// amosync's base URL (`http://127.0.0.1:3000`).
    #[arg(long)]
    api_url: String,
    /// A client token from amosync's API_TOKENS.
    #[arg(long)]
    token: String,
    /// amosync's database.
    #[arg(long)]
    database_url: String,
    /// The fake AmoCRM's base URL (for its request counters).
    #[arg(long)]
    fake_url: String,
    /// New contacts to post.
    #[arg(long)]
    count: u64,
    /// Client connections posting at once.
    #[arg(long, default_value_t = 64)]
    connections: u64,
    /// Give up waiting for the sync after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// Prefix of the reported keys and of the contacts' names, so several bursts
    /// can run against one stack.
    #[arg(long, default_value = "burst")]
    key: String,
    /// The first contact's number; phones follow from it.
    #[arg(long, default_value_t = 0)]
    first: u64,
}

pub fn run(args: &Args) -> crate::Result<()> {
    let key = args.key.as_str();
    let before = fake_counters(&args.fake_url)?;
    let url = format!("{}/api/v1/contacts", args.api_url.trim_end_matches('/'));
    let auth = format!("Bearer {}", args.token);

    let next = AtomicU64::new(0);
    let statuses = Mutex::new(std::collections::BTreeMap::<u16, u64>::new());
    let errors = Mutex::new(Vec::<String>::new());
    let began = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.connections.max(1) {
            scope.spawn(|| {
                // One agent per client: one keep-alive connection each.
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(120))
                    .build();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= args.count {
                        break;
                    }
                    let i = args.first + n;
                    let body = serde_json::json!({
                        "name": format!("{key} {i}"),
                        "phone": format!("+7916{:07}", 1_000_000 + i),
                    });
                    let status = match agent.post(&url).set("authorization", &auth).send_json(body)
                    {
                        Ok(reply) => reply.status(),
                        Err(ureq::Error::Status(code, _)) => code,
                        Err(e) => {
                            errors.lock().unwrap().push(e.to_string());
                            0
                        }
                    };
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                }
            });
        }
    });
    let accept_secs = began.elapsed().as_secs_f64();
    let statuses = statuses.into_inner().unwrap();
    let accepted: u64 = statuses
        .iter()
        .filter(|(code, _)| (200..=202).contains(*code))
        .map(|(_, n)| n)
        .sum();
    for (code, n) in &statuses {
        report(&format!("{key}_status_{code}"), n);
    }
    report(&format!("{key}_accepted"), accepted);
    report(&format!("{key}_accept_secs"), format!("{accept_secs:.2}"));
    if let Some(first) = errors.into_inner().unwrap().first() {
        eprintln!("amosync-bench: first transport error: {first}");
    }

    // Wait until every accepted contact is synced (it has its AmoCRM id).
    let mut conn = db::connect(&args.database_url)?;
    let synced_sql = format!(
        "SELECT COUNT(*) AS n FROM contacts WHERE name LIKE '{key} %' AND sync_status = 'synced'"
    );
    let deadline = began + Duration::from_secs(args.timeout);
    let mut last_note = Instant::now();
    let synced = loop {
        let synced = db::scalar(&mut conn, &synced_sql)? as u64;
        if synced >= accepted {
            break synced;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{synced} of {accepted} contacts synced after {} s",
                args.timeout
            ));
        }
        if last_note.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "  burst: {synced} of {accepted} synced after {:.0} s",
                began.elapsed().as_secs_f64()
            );
            last_note = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    report(&format!("{key}_synced"), synced);
    report(
        &format!("{key}_synced_secs"),
        format!("{:.2}", began.elapsed().as_secs_f64()),
    );
    report(
        &format!("{key}_dead_jobs"),
        db::scalar(
            &mut conn,
            "SELECT COUNT(*) AS n FROM sync_jobs WHERE status = 'dead'",
        )?,
    );

    let after = fake_counters(&args.fake_url)?;
    for counter_key in [
        "requests",
        "contact_creates",
        "create_requests",
        "searches",
        "rate_limited",
    ] {
        report(
            &format!("{key}_amo_{counter_key}"),
            counter(&after, counter_key) - counter(&before, counter_key),
        );
    }
    // The fake keeps this one for its whole life; it starts fresh for the suite.
    report(
        &format!("{key}_amo_max_requests_in_one_second"),
        counter(&after, "max_requests_in_one_second"),
    );
    Ok(())
}

fn fake_counters(fake_url: &str) -> crate::Result<serde_json::Value> {
    let url = format!("{}/_fake/state", fake_url.trim_end_matches('/'));
    let state: serde_json::Value = ureq::get(&url)
        .call()
        .map_err(|e| format!("{url}: {e}"))?
        .into_json()
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(state["counters"].clone())
}

fn counter(counters: &serde_json::Value, key: &str) -> i64 {
    counters[key].as_i64().unwrap_or(0)
}

#[derive(Debug, clap::Args)]
pub struct ReadUrlsArgs {
    /// amosync's database.
    #[arg(long)]
    database_url: String,
    /// amosync's base URL.
    #[arg(long)]
    api_url: String,
    /// File for `GET /api/v1/contacts/{id}` URLs.
    #[arg(long)]
    ids_out: std::path::PathBuf,
    /// File for `GET /api/v1/contacts?phone=…` URLs.
    #[arg(long)]
    list_out: std::path::PathBuf,
    /// How many different records.
    #[arg(long, default_value_t = 2000)]
    count: u64,
}

#[derive(diesel::QueryableByName)]
struct Pick {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    phone: String,
}

/// Random existing, visible contacts: every URL answers 200 with a record.
pub fn read_urls(args: &ReadUrlsArgs) -> crate::Result<()> {
    let mut conn = db::connect(&args.database_url)?;
    let picks: Vec<Pick> = diesel::sql_query(format!(
        "SELECT id, phone FROM contacts WHERE deleted_at IS NULL AND phone IS NOT NULL \
         ORDER BY RAND() LIMIT {}",
        args.count
    ))
    .load(&mut conn)
    .map_err(|e| format!("pick contacts: {e}"))?;
    if picks.is_empty() {
        return Err("no contacts to read".into());
    }
    let base = args.api_url.trim_end_matches('/');
    let write = |path: &std::path::Path, line: &dyn Fn(&Pick) -> String| {
        let file =
            std::fs::File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        for pick in &picks {
            writeln!(out, "{}", line(pick)).map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())
    };
    write(&args.ids_out, &|p| {
        format!("{base}/api/v1/contacts/{}", p.id)
    })?;
    write(&args.list_out, &|p| {
        format!(
            "{base}/api/v1/contacts?phone={}&limit=50",
            p.phone.replace('+', "%2B")
        )
    })?;
    report("read_urls", picks.len());
    Ok(())
}
