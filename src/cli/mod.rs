//! The `amosync` command line: what each command takes (clap), and how its outcome
//! becomes an exit status: 0 done, 2 wrong usage or configuration, 1 failed while
//! running.

mod amocrm;
mod commands;
mod db;
mod error;
mod sync;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use error::CliError;

use crate::redact::Redactor;
use crate::repositories::Db;
use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "amosync",
    version,
    about = "Keeps your systems and your AmoCRM account in step"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Import AmoCRM into the mirror (`--full`), or inspect and re-queue sync jobs.
    #[command(args_conflicts_with_subcommands = true)]
    Sync {
        /// Import every contact and lead of the account into the mirror. Resumable:
        /// an interrupted import continues where it stopped.
        #[arg(long)]
        full: bool,
        #[command(subcommand)]
        action: Option<SyncAction>,
    },
    /// OAuth mode: store the first tokens of the integration.
    Auth {
        #[command(subcommand)]
        action: AuthAction,
    },
    /// Manage amosync's webhook in AmoCRM ({SERVER_URL}/webhooks/amocrm/{WEBHOOK_SECRET}).
    Webhooks {
        #[command(subcommand)]
        action: WebhookAction,
    },
    /// The AmoCRM account's catalogue as stored: custom fields, pipelines, users.
    Amocrm {
        #[command(subcommand)]
        action: AmoCrmAction,
    },
    /// Inspect the database: `amosync db stats`.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Validate the environment, print the effective configuration (secrets masked) and
    /// check that the database accepts the configured account (5 s at most). Exit status
    /// 2 when a variable is missing or invalid, 1 when the database does not answer.
    CheckConfig,
}

/// The states of a sync job, as `sync jobs --status` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum JobStatus {
    /// Still on its way to AmoCRM.
    Pending,
    /// Confirmed by AmoCRM.
    Done,
    /// Gave up after its attempts; re-queue with `sync retry`.
    Dead,
}

impl JobStatus {
    fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
        }
    }
}

#[derive(Debug, Subcommand)]
enum SyncAction {
    /// List sync jobs (oldest first).
    Jobs {
        /// Only jobs in this state.
        #[arg(long, value_enum)]
        status: Option<JobStatus>,
        /// At most this many jobs (1 to 10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
    /// Re-queue a job now (with a fresh attempt count), or every dead job.
    Retry(RetryArgs),
    /// AmoCRM contacts that share one phone, as reconciliation found them (newest
    /// first; pairs since merged or changed in AmoCRM are left out). Merge them in AmoCRM.
    Duplicates {
        /// At most this many pairs (1 to 10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
}

/// A job id or `--all-dead`: exactly one of them.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct RetryArgs {
    /// The job id (see `amosync sync jobs --status dead`).
    id: Option<i64>,
    /// Re-queue every dead job instead of one.
    #[arg(long)]
    all_dead: bool,
}

#[derive(Debug, Subcommand)]
enum AuthAction {
    /// Trade an authorisation code (from the integration's redirect) for tokens,
    /// stored in the database, encrypted; refreshes happen by themselves from then on.
    /// The code is read from AMO_AUTH_CODE, or else from standard input (paste it when
    /// asked): never from the command line, where the process list shows it to every
    /// user of the machine and the shell's history keeps it.
    Exchange {
        /// Refused: the code is read from AMO_AUTH_CODE or standard input (see above).
        #[arg(long, hide = true)]
        code: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum WebhookAction {
    /// Subscribe to the configured events (a no-op when already subscribed).
    Subscribe,
    /// Remove amosync's webhook (not an error when there is none).
    Unsubscribe,
    /// List the account's webhooks (other integrations' by their origin only).
    List,
}

/// The entities with custom fields, as `amocrm fields --entity` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FieldEntity {
    Contacts,
    Leads,
    Companies,
}

impl From<FieldEntity> for crate::domain::CatalogueEntity {
    fn from(entity: FieldEntity) -> Self {
        match entity {
            FieldEntity::Contacts => crate::domain::CatalogueEntity::Contacts,
            FieldEntity::Leads => crate::domain::CatalogueEntity::Leads,
            FieldEntity::Companies => crate::domain::CatalogueEntity::Companies,
        }
    }
}

#[derive(Debug, Subcommand)]
enum AmoCrmAction {
    /// Custom fields: entity, id, type, code (- for none), name, options (id=value).
    Fields {
        /// Only this entity's fields.
        #[arg(long, value_enum)]
        entity: Option<FieldEntity>,
        /// Read the catalogue from AmoCRM first (done anyway when never read).
        #[arg(long)]
        refresh: bool,
    },
    /// Lead pipelines, each followed by its statuses.
    Pipelines {
        /// Read the catalogue from AmoCRM first (done anyway when never read).
        #[arg(long)]
        refresh: bool,
    },
    /// Users: id, name, email, active or inactive, admin (needs an admin's token).
    Users {
        /// Read the catalogue from AmoCRM first (done anyway when never read).
        #[arg(long)]
        refresh: bool,
    },
}

impl AmoCrmAction {
    fn refresh(&self) -> bool {
        match self {
            AmoCrmAction::Fields { refresh, .. }
            | AmoCrmAction::Pipelines { refresh }
            | AmoCrmAction::Users { refresh } => *refresh,
        }
    }
}

#[derive(Debug, Subcommand)]
enum DbAction {
    /// Rows and bytes per table (InnoDB's estimates) and rows retention pruned.
    Stats,
}

/// Parses the command line, runs the command and turns its outcome into the exit
/// status. Wrong usage ends inside `Cli::parse` with clap's message and status 2.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // A missing .env file is normal in containers; the environment is the source of truth.
    let _ = dotenvy::dotenv();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => return report(&CliError::from(err), &Redactor::default()),
    };
    let redactor = Redactor::from_settings(&settings);
    let command = cli.command.unwrap_or(Command::Serve);
    // What faces clients or AmoCRM: the service, the webhook it registers, and the
    // check an operator runs before either.
    let exposed = matches!(
        command,
        Command::Serve
            | Command::CheckConfig
            | Command::Webhooks {
                action: WebhookAction::Subscribe
            }
    );
    if exposed {
        if let Err(refusals) = settings.check_exposure() {
            for refusal in refusals {
                eprintln!(
                    "amosync: refused: {}",
                    redactor.redact(&refusal.to_string())
                );
            }
            return ExitCode::from(2);
        }
    }
    let result = match command {
        // Before any logger exists: stdout carries only the report.
        Command::CheckConfig => commands::check_config(&settings),
        command => commands::with_runtime(settings, &redactor, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err, &redactor),
    }
}

/// A small pool for a command, once the database answers (it may still be booting;
/// a refused account fails at once).
async fn open_db(settings: &Settings, logger: &slog::Logger) -> Result<Db, CliError> {
    let db = Db::sized(&settings.db, 2);
    db.wait_until_reachable(settings.db.wait, logger).await?;
    Ok(db)
}

fn report(err: &CliError, redactor: &Redactor) -> ExitCode {
    eprintln!("amosync: {}", redactor.redact(&err.to_string()));
    ExitCode::from(err.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is for.
    #[test]
    fn every_flag_has_help() {
        fn walk(cmd: &clap::Command, path: String, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "amosync".into(), &mut missing);
        assert!(missing.is_empty(), "without help: {missing:?}");
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sync_retry_needs_an_id_or_all_dead_but_not_both() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        let usage = |args: &[&str]| parse(args).expect_err("a usage error").exit_code();
        assert_eq!(usage(&["amosync", "sync", "retry"]), 2);
        assert_eq!(usage(&["amosync", "sync", "retry", "7", "--all-dead"]), 2);
        assert!(parse(&["amosync", "sync", "retry", "7"]).is_ok());
        assert!(parse(&["amosync", "sync", "retry", "--all-dead"]).is_ok());
    }

    #[test]
    fn db_needs_its_subcommand() {
        let cli = Cli::try_parse_from(["amosync", "db", "stats"]);
        assert!(matches!(
            cli.map(|c| c.command),
            Ok(Some(Command::Db {
                action: DbAction::Stats
            }))
        ));
        let err = Cli::try_parse_from(["amosync", "db"]).expect_err("no subcommand");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn sync_jobs_takes_only_the_known_states() {
        let cli = Cli::try_parse_from(["amosync", "sync", "jobs", "--status", "dead"]);
        assert!(matches!(
            cli.map(|c| c.command),
            Ok(Some(Command::Sync {
                action: Some(SyncAction::Jobs {
                    status: Some(JobStatus::Dead),
                    ..
                }),
                ..
            }))
        ));
        let err = Cli::try_parse_from(["amosync", "sync", "jobs", "--status", "bogus"])
            .expect_err("an unknown state");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("pending"), "{err}");
    }
}
