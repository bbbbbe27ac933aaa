//! Burst benchmark: how long a burst of new contacts takes to be fully synced to
//! AmoCRM, and how many AmoCRM requests it used.
//!
//! Starts the real application in-process against a fresh database on the server
//! named by `BENCH_DATABASE_URL` (or `TEST_DATABASE_URL`, default
//! `mysql://root@127.0.0.1:3306`) and the fake AmoCRM with `BENCH_LATENCY_MS` of
//! latency (default 150) and a limit of `BENCH_AMO_RPS` requests/s (default 7, also
//! amosync's `AMO_MAX_RPS`). Then it posts `BENCH_CONTACTS` new contacts (default
//! 5000) over 64 connections as fast as they go, and waits until every one is
//! synced. It prints the time to accept them, the time until all were synced, the
//! AmoCRM requests used (per contact, too), the most requests AmoCRM saw in one
//! second, and the 429s it answered. Two figures are timed at the fake, where AmoCRM
//! would see them: the limiter's utilisation (calls per second from the burst's
//! first call to its last, divided by `AMO_MAX_RPS`) and the mean time from a
//! contact's POST to the arrival of the call that created it in AmoCRM. Also from
//! the arrivals: the time lost against the full rate (stalls, and the rest) and the
//! tightest span of `rps + 1` consecutive calls; `BENCH_ARRIVALS_FILE=<path>` writes
//! each arrival (milliseconds from the first, creates marked) for a closer look.
//!
//! By default (`BENCH_AUTHORITATIVE=1`) the mirror is made authoritative first, as
//! an operator would: a full import (of the empty fake), the webhook subscribed, a
//! reconciliation round; `AMO_DEDUP=auto` then skips AmoCRM's phone search and the
//! burst costs batched creates of 250. `BENCH_AUTHORITATIVE=0` leaves the mirror
//! untrusted: every contact costs one phone search at AmoCRM's 7 requests/s, so 5000
//! take about twelve minutes; `BENCH_CONTACTS=500` gives a quick look.
//!
//! Run with `cargo bench --bench burst`. It prints numbers; it asserts nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amosync::repositories::Db;
use amosync::settings::Settings;
use amosync::startup::importer;
use diesel::{Connection, MysqlConnection, RunQueryDsl};
use fake_amocrm::{FakeAmo, FakeConfig};

mod common;
use common::env_or;

const API_TOKEN: &str = "bench-token-0123456789";
const CONNECTIONS: usize = 64;
const WEBHOOK_SECRET: &str = "bench-webhook-secret-0123456789abcdef";

/// The three facts of an authoritative mirror, as in production: `sync --full`
/// (done here through the library), the webhook subscribed through the API, and the
/// reconciler's round at start-up. Returns whether `/ready` then says authoritative.
async fn make_mirror_authoritative(settings: &Settings, app_url: &str) -> bool {
    let db = Db::new(settings.db.url.expose(), 2, Duration::from_secs(5));
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let imported = importer(settings, &db, logger)
        .expect("AmoCRM client")
        .import_all(|_, _| {})
        .await;
    assert!(matches!(imported, Ok(Some(_))), "full import: {imported:?}");
    let client = reqwest::Client::new();
    let subscribed = client
        .post(format!("{app_url}/api/v1/amocrm/webhooks"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .map(|r| r.status().is_success());
    assert!(matches!(subscribed, Ok(true)), "subscribe: {subscribed:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let ready: Option<serde_json::Value> =
            match client.get(format!("{app_url}/ready")).send().await {
                Ok(reply) => reply.json().await.ok(),
                Err(_) => None,
            };
        if ready.is_some_and(|r| r["mirror"]["authoritative"] == true) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn synced(db_url: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let Ok(mut conn) = MysqlConnection::establish(db_url) else {
        return 0;
    };
    diesel::sql_query("SELECT COUNT(*) AS n FROM contacts WHERE sync_status = 'synced'")
        .load::<Row>(&mut conn)
        .ok()
        .and_then(|rows| rows.first().map(|r| r.n))
        .unwrap_or(0)
}

/// The burst's contacts by phone (as posted, E.164), each with when it was posted.
type Posted = Arc<Mutex<HashMap<String, Instant>>>;

/// Posts `count` contacts over `CONNECTIONS` connections; returns (2xx, other).
async fn post_all(url: String, count: usize, posted: Posted) -> (usize, usize) {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, url, next) = (client.clone(), url.clone(), Arc::clone(&next));
        let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
        let posted = Arc::clone(&posted);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let phone = format!("+7916{:07}", 1_000_000 + i);
                let body = serde_json::json!({"name": format!("Burst {i}"), "phone": &phone});
                if let Ok(mut posted) = posted.lock() {
                    posted.insert(phone, Instant::now());
                }
                let reply = client
                    .post(&url)
                    .bearer_auth(API_TOKEN)
                    .json(&body)
                    .send()
                    .await;
                match reply {
                    Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

#[tokio::main]
async fn main() {
    let database = common::BenchDatabase::create("amosync_burst");
    let db_url = database.url.clone();

    let count = env_or("BENCH_CONTACTS", 5000) as usize;
    let latency = Duration::from_millis(env_or("BENCH_LATENCY_MS", 150));
    let rps = env_or("BENCH_AMO_RPS", 7) as u32;
    let fake = FakeAmo::start_with(FakeConfig {
        rps_limit: Some(rps),
        latency,
        webhooks_enabled: false,
        ..FakeConfig::default()
    })
    .await;

    let authoritative = env_or("BENCH_AUTHORITATIVE", 1) != 0;
    let env = [
        ("AMO_BASE_URL", fake.base_url()),
        ("AMO_ACCESS_TOKEN", FakeAmo::TOKEN.into()),
        ("AMO_MAX_RPS", rps.to_string()),
        ("API_TOKENS", format!("bench:write+admin:{API_TOKEN}")),
        // The subscription only has to exist for the webhook check; the fake sends
        // no deliveries (webhooks_enabled is off), so nothing listens there.
        ("SERVER_URL", "http://127.0.0.1:9".into()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        // Long enough that the facts of the set-up stay fresh through the burst.
        ("RECONCILE_INTERVAL_SECS", "120".into()),
    ];
    let port = common::spawn_app(&db_url, &env).await;
    let app_url = format!("http://127.0.0.1:{port}");
    let url = format!("{app_url}/api/v1/contacts");
    let trusted = authoritative
        && make_mirror_authoritative(&common::settings(&db_url, &env), &app_url).await;

    println!(
        "burst of {count} new contacts; fake AmoCRM: {} ms latency, {rps} requests/s; \
         mirror authoritative: {trusted}",
        latency.as_millis()
    );
    let (setup_requests, setup_searches) = (fake.requests(), fake.searches());
    let started = Instant::now();
    let posted = Posted::default();
    let (ok, failed) = post_all(url, count, Arc::clone(&posted)).await;
    let accepted_in = started.elapsed();
    println!(
        "  accepted   {ok} (failed {failed}) in {:.1} s: {:.0} submissions/s",
        accepted_in.as_secs_f64(),
        ok as f64 / accepted_in.as_secs_f64()
    );

    let mut last_report = Instant::now();
    let deadline = started + Duration::from_secs(3600);
    loop {
        let done = synced(&db_url);
        if done as usize >= ok || Instant::now() > deadline {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            println!(
                "  … {done} synced after {:.0} s, {} AmoCRM requests so far",
                started.elapsed().as_secs_f64(),
                fake.requests() - setup_requests
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let synced_in = started.elapsed();
    let requests = fake.requests() - setup_requests;
    println!(
        "  synced     {} in {:.1} s",
        synced(&db_url),
        synced_in.as_secs_f64()
    );
    println!(
        "  AmoCRM     {requests} requests ({:.3} per contact; {} searches, {} creates), \
         {} contacts created, at most {} in one second, {} answered 429",
        requests as f64 / count.max(1) as f64,
        fake.searches() - setup_searches,
        fake.create_requests(),
        fake.contact_creates(),
        fake.max_requests_in_one_second(),
        fake.rate_limited()
    );
    let arrivals: Vec<Instant> = fake
        .api_arrivals()
        .into_iter()
        .filter(|at| *at >= started)
        .collect();
    if let (Some(first), Some(last)) = (arrivals.first(), arrivals.last()) {
        let span = last.duration_since(*first).as_secs_f64();
        let per_second = (arrivals.len() - 1) as f64 / span.max(f64::EPSILON);
        println!(
            "  limiter    {per_second:.2} calls/s at AmoCRM from the first call to the last \
             ({} calls in {span:.1} s): utilisation {:.1} % of AMO_MAX_RPS={rps}",
            arrivals.len(),
            100.0 * per_second / f64::from(rps.max(1))
        );
        let creates: HashSet<Instant> = fake
            .contact_arrivals()
            .into_iter()
            .map(|(_, at)| at)
            .collect();
        print_where_the_time_went(&arrivals, &creates, rps);
    }
    let posted = posted.lock().map(|p| p.clone()).unwrap_or_default();
    let waits: Vec<f64> = fake
        .contact_arrivals()
        .into_iter()
        .filter_map(|(phone, at)| at.checked_duration_since(*posted.get(&phone)?))
        .map(|wait| wait.as_secs_f64())
        .collect();
    if !waits.is_empty() {
        println!(
            "  POST→AmoCRM mean {:.1} s over {} contacts (their create call's arrival at AmoCRM)",
            waits.iter().sum::<f64>() / waits.len() as f64,
            waits.len()
        );
    }

    drop(database);
}

/// Where a burst's time went, from the arrivals at the fake: the time lost against
/// one call per `1 / rps` split into stalls (gaps of more than two spacings: nothing
/// was asking for a call, as between rounds) and the rest (margin, late wake-ups);
/// and the tightest span of `rps + 1` consecutive arrivals, which the strict window
/// refuses below one second (its distance from 1 s is the margin left).
fn print_where_the_time_went(arrivals: &[Instant], creates: &HashSet<Instant>, rps: u32) {
    let spacing = 1.0 / f64::from(rps.max(1));
    let gaps: Vec<f64> = arrivals
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    let stalls: Vec<f64> = gaps
        .iter()
        .copied()
        .filter(|g| *g > 2.0 * spacing)
        .collect();
    let lost_in_stalls: f64 = stalls.iter().map(|g| g - spacing).sum();
    let lost: f64 = gaps.iter().sum::<f64>() - gaps.len() as f64 * spacing;
    let n = rps.max(1) as usize;
    let mut spans: Vec<f64> = arrivals
        .windows(n + 1)
        .map(|w| w[n].duration_since(w[0]).as_secs_f64() * 1000.0)
        .collect();
    spans.sort_by(f64::total_cmp);
    let at = |q: f64| {
        spans
            .get(((spans.len() as f64 - 1.0) * q) as usize)
            .copied()
    };
    println!(
        "  time lost  {lost:.1} s against one call per {:.0} ms: {lost_in_stalls:.1} s in \
         {} stalls (gaps over {:.0} ms, longest {:.2} s), {:.1} s in the other gaps",
        spacing * 1000.0,
        stalls.len(),
        2000.0 * spacing,
        stalls.iter().copied().fold(0.0, f64::max),
        lost - lost_in_stalls
    );
    if let (Some(min), Some(p01), Some(p50)) = (at(0.0), at(0.01), at(0.5)) {
        println!(
            "  {} calls  spanned at least {min:.1} ms (1 %: {p01:.1} ms, median {p50:.1} ms); \
             under 1000 ms the strict window refuses",
            n + 1
        );
    }
    // One line per call (milliseconds from the first; creates marked), to look closer.
    if let Ok(path) = std::env::var("BENCH_ARRIVALS_FILE") {
        let first = arrivals[0];
        let lines: String = arrivals
            .iter()
            .map(|at| {
                let ms = at.duration_since(first).as_secs_f64() * 1000.0;
                let kind = if creates.contains(at) { "create" } else { "" };
                format!("{ms:.1} {kind}\n")
            })
            .collect();
        if let Err(error) = std::fs::write(&path, lines) {
            println!("  could not write the arrivals to {path}: {error}");
        }
    }
}
