//! Parsing benchmark: how long one webhook delivery takes to parse when it is
//! applied, and to check when it is acknowledged. No database needed.
//!
//! Run with `cargo bench --bench parse`. It prints numbers; it checks only that
//! each delivery parses.

use std::hint::black_box;
use std::time::Instant;

use amosync::webhooks::{check_delivery, parse_delivery};

const FORM: &str = "application/x-www-form-urlencoded";

/// One delivery of `count` contacts, as AmoCRM encodes it (brackets percent-encoded).
fn delivery(count: u64) -> String {
    let mut body = String::from("account%5Bsubdomain%5D=example&account%5Bid%5D=29000001");
    for i in 0..count {
        let id = 1_000_000 + i;
        let item = format!("contacts%5Bupdate%5D%5B{i}%5D");
        body.push_str(&format!(
            "&{item}%5Bid%5D={id}&{item}%5Bname%5D=Bench+{id}\
             &{item}%5Blast_modified%5D=1700000000\
             &{item}%5Bcustom_fields%5D%5B0%5D%5Bid%5D=100\
             &{item}%5Bcustom_fields%5D%5B0%5D%5Bcode%5D=PHONE\
             &{item}%5Bcustom_fields%5D%5B0%5D%5Bvalues%5D%5B0%5D%5Bvalue%5D=%2B7916{:07}\
             &{item}%5Bcustom_fields%5D%5B0%5D%5Bvalues%5D%5B0%5D%5Benum%5D=200",
            id % 10_000_000
        ));
    }
    body
}

/// Median over 5 runs of the time per call of `op`, in µs.
fn median_us(rounds: usize, mut op: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..rounds {
                op();
            }
            started.elapsed().as_secs_f64() * 1e6 / rounds as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn main() {
    println!("webhook delivery: full parse (worker) and check (acknowledgement), median of 5 runs");
    for count in [1u64, 10, 100] {
        let body = delivery(count);
        let rounds = 20_000 / count as usize;
        let parse = median_us(rounds, || {
            let parsed = parse_delivery(Some(FORM), black_box(body.as_bytes()));
            assert_eq!(parsed.map(|d| d.contacts.len()).ok(), Some(count as usize));
        });
        let check = median_us(rounds, || {
            let checked = check_delivery(Some(FORM), black_box(body.as_bytes()));
            assert_eq!(checked.map(|a| a.id).ok(), Some(Some(29_000_001)));
        });
        println!(
            "  {count:>3} contacts ({:>6} bytes): parse {parse:>8.1} µs, check {check:>8.1} µs",
            body.len(),
        );
    }
}
