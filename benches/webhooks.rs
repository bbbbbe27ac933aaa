//! Webhook benchmark: how fast deliveries are acknowledged and applied.
//!
//! Starts the real application in-process against a fresh database on the server
//! named by `BENCH_DATABASE_URL` (or `TEST_DATABASE_URL`, default
//! `mysql://root@127.0.0.1:3306`), then:
//! 1. sends `BENCH_RATE` deliveries/s (default 500) for `BENCH_SECS` s (default 10)
//!    and prints the acknowledgement latency percentiles;
//! 2. sends as fast as 32 connections can for 5 s: the acknowledged deliveries/s;
//! 3. stores 200 deliveries of 100 new contacts each and times how long the worker
//!    takes to apply them: entities/s written to MySQL.
//!
//! Run with `cargo bench --bench webhooks`. It prints numbers; it asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::{Connection, MysqlConnection, RunQueryDsl};

mod common;
use common::env_or;
use tokio::sync::Mutex;

const SECRET: &str = "bench-webhook-secret-0123456789abcdef";
const ACCOUNT: &str = "account[subdomain]=example&account[id]=29000001";

/// One delivery of `count` contacts with ids from `first`.
fn delivery(first: u64, count: u64) -> String {
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

struct Bench {
    url: String,
    client: reqwest::Client,
    db_url: String,
}

impl Bench {
    async fn post(&self, body: String) -> Result<Duration, String> {
        let started = Instant::now();
        let res = self
            .client
            .post(&self.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status();
        let _ = res.bytes().await;
        if status.is_success() {
            Ok(started.elapsed())
        } else {
            Err(format!("status {status}"))
        }
    }

    fn scalar(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = MysqlConnection::establish(&self.db_url).expect("connect");
        let rows: Vec<Row> = diesel::sql_query(sql).load(&mut conn).expect("query");
        rows.first().map(|r| r.n).unwrap_or(0)
    }

    async fn wait_drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.scalar("SELECT COUNT(*) AS n FROM webhook_inbox WHERE status = 'pending'") > 0 {
            assert!(Instant::now() < deadline, "backlog did not drain");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

async fn fixed_rate(bench: &Arc<Bench>, rate: u64, secs: u64) -> (Vec<Duration>, usize) {
    let results = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for n in 0..rate * secs {
        ticker.tick().await;
        let (bench, results) = (Arc::clone(bench), Arc::clone(&results));
        tasks.push(tokio::spawn(async move {
            let outcome = bench.post(delivery(1_000_000 + n * 10, 10)).await;
            let mut r = results.lock().await;
            match outcome {
                Ok(latency) => r.0.push(latency),
                Err(_) => r.1 += 1,
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let r = results.lock().await;
    (r.0.clone(), r.1)
}

async fn max_rate(bench: &Arc<Bench>, connections: u64, secs: u64) -> (usize, usize, f64) {
    let started = Instant::now();
    let stop = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let bench = Arc::clone(bench);
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut n) = (0usize, 0usize, 0u64);
            while Instant::now() < stop {
                match bench
                    .post(delivery(50_000_000 + (c * 1_000_000 + n) * 10, 10))
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(_) => errors += 1,
                }
                n += 1;
            }
            (ok, errors)
        }));
    }
    let (mut ok, mut errors) = (0, 0);
    for task in tasks {
        if let Ok((o, e)) = task.await {
            ok += o;
            errors += e;
        }
    }
    (ok, errors, started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let database = common::BenchDatabase::create("amosync_bench");
    let db_url = database.url.clone();

    let port = common::spawn_app(
        &db_url,
        &[
            ("AMO_BASE_URL", "http://127.0.0.1:9".into()),
            ("AMO_ACCESS_TOKEN", "unused".into()),
            ("API_TOKENS", "bench:bench-token-0123456789".into()),
            ("WEBHOOK_SECRET", SECRET.into()),
        ],
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/webhooks/amocrm/{SECRET}");
    let bench = Arc::new(Bench {
        url,
        client: reqwest::Client::new(),
        db_url: db_url.clone(),
    });

    let (rate, secs) = (env_or("BENCH_RATE", 500), env_or("BENCH_SECS", 10));
    let (mut latencies, errors) = fixed_rate(&bench, rate, secs).await;
    latencies.sort();
    println!("webhook ack at {rate} deliveries/s for {secs} s (10 contacts each)");
    println!(
        "  acknowledged {:>6}  errors {errors}  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    bench.wait_drained().await;

    let (ok, errors, took) = max_rate(&bench, 32, 5).await;
    println!("webhook ack, 32 connections for 5 s");
    println!(
        "  acknowledged {ok:>6}  errors {errors}  {:.0} deliveries/s",
        ok as f64 / took
    );
    bench.wait_drained().await;

    // Apply rate: queue 200 deliveries of 100 new contacts, then time the drain.
    let before = bench.scalar("SELECT COUNT(*) AS n FROM contacts");
    let started = Instant::now();
    let mut sends = Vec::new();
    for d in 0..200u64 {
        let bench = Arc::clone(&bench);
        sends.push(tokio::spawn(async move {
            bench.post(delivery(900_000_000 + d * 100, 100)).await
        }));
    }
    for send in sends {
        let _ = send.await;
    }
    bench.wait_drained().await;
    let took = started.elapsed().as_secs_f64();
    let applied = bench.scalar("SELECT COUNT(*) AS n FROM contacts") - before;
    println!("webhook apply: 200 deliveries x 100 new contacts");
    println!(
        "  applied {applied} contacts in {took:.2} s: {:.0} entities/s (ack and apply together)",
        applied as f64 / took
    );

    drop(database);
}
