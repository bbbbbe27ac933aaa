//! `amosync-bench`: the parts of `bench/run` that an HTTP load tool cannot do.
//!
//! - `limits`: what the MySQL server itself manages, measured the same way amosync
//!   uses it (single-row autocommit INSERTs of webhook bodies, 500-row upserts into
//!   `contacts`, primary-key SELECTs), so amosync's figures can be read as ratios.
//! - `webhook-bodies`, `apply`, `drain`: webhook deliveries with unique AmoCRM ids,
//!   and timing the worker as it empties the inbox.
//! - `burst`: posts new contacts with unique phones and waits until all are synced.
//! - `read-urls`: URLs of records that exist, for the read scenario.
//! - `oha-summary`: the figures of one load-tool report.
//!
//! Every command prints its results as `key=value` lines on stdout (for the shell
//! script) and exits non-zero with a message on stderr when anything failed.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod burst;
mod db;
mod limits;
mod oha;
mod webhooks;

#[derive(Debug, Parser)]
#[command(
    name = "amosync-bench",
    about = "Helper of amosync's benchmark suite (bench/run)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Raw MySQL limits on a database migrated with amosync's schema.
    Limits(limits::Args),
    /// Writes webhook delivery bodies, one per line (for `oha -Z`).
    WebhookBodies(webhooks::BodiesArgs),
    /// Fills the inbox in one transaction, wakes the worker, times the drain.
    Apply(webhooks::ApplyArgs),
    /// Times how long the pending inbox takes to empty from now on.
    Drain(webhooks::DrainArgs),
    /// Posts new contacts and waits until every accepted one is synced.
    Burst(burst::Args),
    /// Writes URL files of existing contacts for the read scenario.
    ReadUrls(burst::ReadUrlsArgs),
    /// Prints the figures of one oha JSON report.
    OhaSummary(oha::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Limits(args) => limits::run(&args),
        Command::WebhookBodies(args) => webhooks::bodies(&args),
        Command::Apply(args) => webhooks::apply(&args),
        Command::Drain(args) => webhooks::drain(&args),
        Command::Burst(args) => burst::run(&args),
        Command::ReadUrls(args) => burst::read_urls(&args),
        Command::OhaSummary(args) => oha::summary(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("amosync-bench: {why}");
            ExitCode::FAILURE
        }
    }
}

/// One result line for `bench/run`.
pub fn report(key: &str, value: impl std::fmt::Display) {
    println!("{key}={value}");
}

pub type Result<T> = std::result::Result<T, String>;
