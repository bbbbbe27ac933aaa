//! The `amosync` binary: `serve` (the default) runs the service, `migrate`
//! applies the database migrations and exits, `check-config` validates the environment.

mod cli_db;

use std::process::ExitCode;

use std::sync::Arc;

use amosync::amo::{AmoEntity, OAuthTokens};
use amosync::redact::Redactor;
use amosync::repositories::Db;
use amosync::repositories::{
    DuplicateRepository, MysqlDuplicateRepository, MysqlJobRepository, MysqlMirrorFactRepository,
};
use amosync::services::{JobService, Subscribed, WebhookSubscription};
use amosync::settings::Settings;
use amosync::startup::{amo_transport, importer, token_store, Application};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "amosync",
    version,
    about = "Keeps your systems and your AmoCRM account in step"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
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
    /// Inspect the database: `amosync db stats`.
    Db {
        #[command(subcommand)]
        action: cli_db::DbAction,
    },
    /// Validate the environment and print the effective configuration, secrets masked
    /// (exit status 2 and the problem on stderr when it is invalid).
    CheckConfig,
}

#[derive(Subcommand)]
enum SyncAction {
    /// List sync jobs (oldest first).
    Jobs {
        /// pending, done or dead
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Re-queue a job now (with a fresh attempt count), or every dead job.
    Retry {
        /// The job id (see `amosync sync jobs --status dead`).
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        all_dead: bool,
    },
    /// AmoCRM contacts that share one phone, as reconciliation found them (newest
    /// first; pairs since merged or changed in AmoCRM are left out). Merge them in AmoCRM.
    Duplicates {
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum AuthAction {
    /// Trade an authorisation code (from the integration's redirect) for tokens,
    /// stored in the database, encrypted; refreshes happen by themselves from then on.
    /// The code is read from AMO_AUTH_CODE, or else from standard input (paste it when
    /// asked): never from the command line, where the process list shows it to every
    /// user of the machine and the shell's history keeps it.
    Exchange {
        /// Refused, see above.
        #[arg(long, hide = true)]
        code: Option<String>,
    },
}

#[derive(Subcommand)]
enum WebhookAction {
    /// Subscribe to the configured events (a no-op when already subscribed).
    Subscribe,
    /// Remove amosync's webhook (not an error when there is none).
    Unsubscribe,
    /// List the account's webhooks.
    List,
}

fn main() -> ExitCode {
    amosync::host::tune_allocator();
    let cli = Cli::parse();
    // A missing .env file is normal in containers; the environment is the source of truth.
    let _ = dotenvy::dotenv();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("amosync: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Some(Command::CheckConfig)) {
        // Before the logger exists: stdout carries only the report.
        for (name, value) in settings.redacted() {
            println!("{name}={value}");
        }
        return ExitCode::SUCCESS;
    }
    let redactor = Redactor::from_settings(&settings);
    let (logger, _guard) = amosync::telemetry::init_redacting(settings.log_level, redactor.clone());
    let blocking = amosync::startup::blocking_threads(settings.db_pool_size);
    // This runtime runs the background workers (the HTTP workers have runtimes of
    // their own): its blocking threads, where their queries and parsing run, yield
    // the CPU to request handling.
    let runtime = actix_web::rt::System::with_tokio_rt(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(blocking)
            .on_thread_start(amosync::host::lower_thread_priority)
            .build()
            // Without a runtime there is nothing to run; this fails only if the OS
            // refuses the runtime's own resources at start-up.
            .expect("cannot start the Tokio runtime")
    });
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings, logger.clone()).await,
            Command::Migrate => migrate(settings, logger.clone()).await,
            Command::Webhooks { action } => webhooks(settings, action, &redactor).await,
            Command::Auth {
                action: AuthAction::Exchange { code: Some(_) },
            } => Err(
                "the code is not taken from the command line (other users see it in \
                      the process list); pass it in AMO_AUTH_CODE or on standard input"
                    .into(),
            ),
            Command::Auth {
                action: AuthAction::Exchange { code: None },
            } => exchange(settings, logger.clone()).await,
            Command::Sync { full: true, .. } => full_import(settings, logger.clone()).await,
            Command::Sync {
                action: Some(action),
                ..
            } => sync(settings, logger.clone(), action, &redactor).await,
            Command::Sync { .. } => {
                Err("give --full or a subcommand (see amosync sync --help)".into())
            }
            Command::Db { action } => match open_db(&settings, &logger).await {
                Ok(db) => cli_db::run(&db, action).await,
                Err(err) => Err(err),
            },
            Command::CheckConfig => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            slog::crit!(logger, "amosync stopped"; "error" => err.clone());
            eprintln!("amosync: {}", redactor.redact(&err));
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings, logger: slog::Logger) -> Result<(), String> {
    let app = Application::build(settings, logger.clone())
        .await
        .map_err(|e| e.to_string())?;
    // actix's own signal handling is off: `/ready` must turn 503 before the listener
    // closes, and the workers stop after their batch (`ShutdownTrigger::shutdown`).
    app.stop_on_signals();
    app.run_until_stopped().await.map_err(|e| e.to_string())?;
    slog::info!(logger, "stopped");
    Ok(())
}

async fn migrate(settings: Settings, logger: slog::Logger) -> Result<(), String> {
    let db = open_db(&settings, &logger).await?;
    let applied = db.migrate().await.map_err(|e| e.to_string())?;
    slog::info!(logger, "migrations done"; "applied" => applied.len(), "migrations" => applied.join(","));
    Ok(())
}

async fn webhooks(
    settings: Settings,
    action: WebhookAction,
    redactor: &Redactor,
) -> Result<(), String> {
    let db = Db::new(
        settings.database_url.expose(),
        2,
        settings.db_checkout_timeout,
    );
    let amo = amo_transport(&settings, &db).map_err(|e| e.to_string())?;
    let subscription = WebhookSubscription::new(
        Arc::new(amo),
        settings.webhook_destination(),
        settings.webhook_events.clone(),
    )
    .with_facts(Arc::new(MysqlMirrorFactRepository::new(db)));
    let mask = |text: &str| redactor.redact(text).into_owned();
    match action {
        WebhookAction::Subscribe => {
            match subscription.subscribe().await.map_err(|e| e.to_string())? {
                Subscribed::Already(hook) => println!(
                    "already subscribed: {} {:?}",
                    mask(&hook.destination),
                    hook.settings
                ),
                Subscribed::Created(hook) => println!(
                    "subscribed: {} {:?}",
                    mask(&hook.destination),
                    hook.settings
                ),
            }
        }
        WebhookAction::Unsubscribe => match subscription
            .unsubscribe()
            .await
            .map_err(|e| e.to_string())?
        {
            true => println!("unsubscribed"),
            false => println!("no amosync webhook was subscribed"),
        },
        WebhookAction::List => {
            let (hooks, ours) = subscription.list().await.map_err(|e| e.to_string())?;
            for hook in hooks {
                let state = if hook.disabled { "disabled" } else { "active" };
                println!(
                    "{}\t{}\t{}\t{}",
                    hook.id,
                    state,
                    mask(&hook.destination),
                    hook.settings.join(",")
                );
            }
            println!("amosync subscribed: {ours}");
        }
    }
    Ok(())
}

async fn sync(
    settings: Settings,
    logger: slog::Logger,
    action: SyncAction,
    redactor: &Redactor,
) -> Result<(), String> {
    let db = open_db(&settings, &logger).await?;
    let duplicates = MysqlDuplicateRepository::new(db.clone());
    let jobs = JobService::new(Arc::new(MysqlJobRepository::new(db)));
    match action {
        SyncAction::Duplicates { limit } => {
            let pairs = duplicates
                .open(limit.clamp(1, 10_000))
                .await
                .map_err(|e| e.to_string())?;
            for found in &pairs {
                println!(
                    "{}\t{}\t{}\tdetected {}",
                    found.pair.first_amocrm_id,
                    found.pair.second_amocrm_id,
                    found.pair.phone,
                    found.detected_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
            println!("{} pair(s) of AmoCRM contacts share a phone", pairs.len());
        }
        SyncAction::Jobs { status, limit } => {
            for job in jobs
                .list(status, None, limit.clamp(1, 10_000))
                .await
                .map_err(|e| e.to_string())?
            {
                println!(
                    "{}\t{}\t{}\t{}\tattempts={}\t{}",
                    job.id,
                    job.entity,
                    job.record_id,
                    job.status,
                    job.attempts,
                    // Rows stored before AmoCRM's errors were scrubbed may still quote a secret.
                    redactor.redact(&job.last_error.unwrap_or_default())
                );
            }
        }
        SyncAction::Retry { id: Some(id), .. } => {
            let job = jobs.retry(id).await.map_err(|e| e.to_string())?;
            println!("job {} is {} (attempts reset)", job.id, job.status);
        }
        SyncAction::Retry {
            id: None,
            all_dead: true,
        } => {
            let count = jobs.retry_dead().await.map_err(|e| e.to_string())?;
            println!("re-queued {count} dead job(s)");
        }
        SyncAction::Retry {
            id: None,
            all_dead: false,
        } => {
            return Err("give a job id or --all-dead".into());
        }
    }
    Ok(())
}

async fn full_import(settings: Settings, logger: slog::Logger) -> Result<(), String> {
    let db = open_db(&settings, &logger).await?;
    db.migrate().await.map_err(|e| e.to_string())?;
    let reconciler = importer(&settings, &db, logger).map_err(|e| e.to_string())?;
    // AmoCRM gives no total count, so the bar counts up.
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} imported ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let label = |entity| match entity {
        AmoEntity::Contacts => "contacts",
        AmoEntity::Leads => "leads",
    };
    let imported = reconciler
        .import_all(|entity, n| {
            bar.set_message(label(entity));
            bar.set_position(n as u64);
        })
        .await
        .map_err(|e| e.to_string())?;
    let Some(imported) = imported else {
        bar.abandon_with_message("another import is running");
        return Err("another import holds the cursor; try again later".into());
    };
    bar.finish_and_clear();
    println!("contacts: {} imported", imported.contacts);
    println!("leads: {} imported", imported.leads);
    println!(
        "done: {} records in the mirror are up to date with AmoCRM",
        imported.contacts + imported.leads
    );
    Ok(())
}

/// The authorisation code: `AMO_AUTH_CODE`, or one line of standard input.
async fn auth_code() -> Result<String, String> {
    if let Some(code) = std::env::var("AMO_AUTH_CODE")
        .ok()
        .filter(|c| !c.trim().is_empty())
    {
        return Ok(code.trim().to_owned());
    }
    let line = tokio::task::spawn_blocking(|| {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            eprint!("authorisation code (from the integration's redirect): ");
        }
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("could not read the code from standard input: {e}"))?;
    let code = line.trim().to_owned();
    if code.is_empty() {
        return Err(
            "no authorisation code: set AMO_AUTH_CODE or write it on standard input".into(),
        );
    }
    Ok(code)
}

async fn exchange(settings: Settings, logger: slog::Logger) -> Result<(), String> {
    let client = settings.oauth().ok_or(
        "OAuth mode needs AMO_CLIENT_ID, AMO_CLIENT_SECRET and AMO_REDIRECT_URI, and no AMO_ACCESS_TOKEN",
    )?;
    let code = auth_code().await?;
    let db = open_db(&settings, &logger).await?;
    db.migrate().await.map_err(|e| e.to_string())?;
    let transport = amo_transport(&settings, &db).map_err(|e| e.to_string())?;
    let store = token_store(&settings, &db)
        .map_err(|e| e.to_string())?
        .ok_or("OAuth mode needs TOKEN_ENCRYPTION_KEY")?;
    let tokens = OAuthTokens::new(
        client,
        Arc::new(store),
        transport.http_client(),
        transport.limiter(),
    );
    tokens
        .exchange(&code)
        .await
        .map_err(|e| format!("AmoCRM refused the code: {e}"))?;
    println!("tokens stored; amosync refreshes them from now on");
    Ok(())
}

/// A small pool for a command, once the database answers (it may still be booting).
async fn open_db(settings: &Settings, logger: &slog::Logger) -> Result<Db, String> {
    let db = Db::new(
        settings.database_url.expose(),
        2,
        settings.db_checkout_timeout,
    );
    db.wait_until_reachable(settings.db_wait, logger)
        .await
        .map_err(|e| e.to_string())?;
    Ok(db)
}
