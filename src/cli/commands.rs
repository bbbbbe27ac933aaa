//! The commands other than `sync`, `db` and `amocrm`: serve, migrate, check-config, auth, webhooks.

use std::sync::Arc;
use std::time::Duration;

use super::{open_db, AuthAction, CliError, Command, WebhookAction};
use crate::amo::{OAuthClient, OAuthTokens};
use crate::redact::Redactor;
use crate::repositories::{Db, MysqlMirrorFactRepository};
use crate::services::{Subscribed, WebhookSubscription};
use crate::settings::Settings;
use crate::startup::{amo_transport, token_store, Application};

/// How long `check-config` waits for the database to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Prints the effective configuration, secrets masked, then checks that the database
/// accepts the configured account. The report comes first: it shows what was tried.
pub(super) fn check_config(settings: &Settings) -> Result<(), CliError> {
    for (name, value) in settings.redacted() {
        println!("{name}={value}");
    }
    match Db::probe(settings.db.url.expose(), PROBE_TIMEOUT) {
        Ok(()) => {
            println!("# database: reachable, account accepted");
            Ok(())
        }
        Err(err) if err.is_access_refused() => Err(CliError::Failed(format!(
            "the database refused DATABASE_URL's account or database ({err}); \
             check the user, password and database name"
        ))),
        Err(err) => Err(CliError::Failed(format!(
            "the database at DATABASE_URL did not answer ({err})"
        ))),
    }
}

/// Every command but `check-config` runs on a Tokio runtime with the JSON logger.
pub(super) fn with_runtime(
    settings: Settings,
    redactor: &Redactor,
    command: Command,
) -> Result<(), CliError> {
    let (logger, _guard) = crate::telemetry::init_redacting(settings.log.level, redactor.clone());
    let blocking = crate::startup::blocking_threads(settings.db.pool_size);
    // This runtime runs the background workers (the HTTP workers have runtimes of
    // their own): its blocking threads, where their queries and parsing run, yield
    // the CPU to request handling.
    let runtime = actix_web::rt::System::with_tokio_rt(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(blocking)
            .on_thread_start(crate::host::lower_thread_priority)
            .build()
            // Without a runtime there is nothing to run; this fails only if the OS
            // refuses the runtime's own resources at start-up.
            .expect("cannot start the Tokio runtime")
    });
    let result = runtime.block_on(async {
        match command {
            Command::Serve => serve(settings, logger.clone()).await,
            Command::Migrate => migrate(settings, logger.clone()).await,
            Command::Webhooks { action } => webhooks(settings, action, redactor).await,
            Command::Auth {
                action: AuthAction::Exchange { code: Some(_) },
            } => Err(CliError::Usage(
                "the code is not taken from the command line (other users see it in \
                 the process list); pass it in AMO_AUTH_CODE or on standard input"
                    .into(),
            )),
            Command::Auth {
                action: AuthAction::Exchange { code: None },
            } => exchange(settings, logger.clone()).await,
            Command::Sync { full: true, .. } => {
                super::sync::full_import(settings, logger.clone()).await
            }
            Command::Sync {
                action: Some(action),
                ..
            } => super::sync::sync(settings, logger.clone(), action, redactor).await,
            Command::Sync { .. } => Err(CliError::Usage(
                "give --full or a subcommand (see amosync sync --help)".into(),
            )),
            Command::Db { action } => super::db::db(settings, logger.clone(), action).await,
            Command::Amocrm { action } => {
                super::amocrm::amocrm(settings, logger.clone(), action).await
            }
            Command::CheckConfig => check_config(&settings),
        }
    });
    // Usage errors are the operator's to fix, said on stderr; failures also go to the log.
    match &result {
        Err(err) if err.exit_code() != 2 => {
            slog::error!(logger, "command failed"; "error" => err.to_string());
        }
        _ => {}
    }
    result
}

async fn serve(settings: Settings, logger: slog::Logger) -> Result<(), CliError> {
    let app = Application::build(settings, logger.clone()).await?;
    // actix's own signal handling is off: `/ready` must turn 503 before the listener
    // closes, and the workers stop after their batch (`ShutdownTrigger::shutdown`).
    app.stop_on_signals();
    app.run_until_stopped()
        .await
        .map_err(|source| CliError::Io {
            context: "the HTTP server stopped",
            source,
        })?;
    slog::info!(logger, "stopped");
    Ok(())
}

async fn migrate(settings: Settings, logger: slog::Logger) -> Result<(), CliError> {
    let db = open_db(&settings, &logger).await?;
    let applied = db.migrate().await?;
    slog::info!(logger, "migrations done"; "applied" => applied.len(), "migrations" => applied.join(","));
    Ok(())
}

async fn webhooks(
    settings: Settings,
    action: WebhookAction,
    redactor: &Redactor,
) -> Result<(), CliError> {
    let db = Db::sized(&settings.db, 2);
    let amo = amo_transport(&settings, &db)?;
    let own = settings.webhook_destination();
    let subscription =
        WebhookSubscription::new(Arc::new(amo), own.clone(), settings.webhooks.events.clone())
            .with_facts(Arc::new(MysqlMirrorFactRepository::new(db)));
    let mask = |text: &str| redactor.redact(text).into_owned();
    match action {
        WebhookAction::Subscribe => match subscription.subscribe().await? {
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
        },
        WebhookAction::Unsubscribe => match subscription.unsubscribe().await? {
            true => println!("unsubscribed"),
            false => println!("no amosync webhook was subscribed"),
        },
        WebhookAction::List => {
            let (hooks, ours) = subscription.list().await?;
            for hook in hooks {
                let state = if hook.disabled { "disabled" } else { "active" };
                let destination = if own.as_deref() == Some(hook.destination.as_str()) {
                    mask(&hook.destination)
                } else {
                    origin_only(&hook.destination)
                };
                println!(
                    "{}\t{}\t{}\t{}",
                    hook.id,
                    state,
                    destination,
                    hook.settings.join(",")
                );
            }
            println!("amosync subscribed: {ours}");
        }
    }
    Ok(())
}

/// Another integration's hook as `webhooks list` shows it: where it points, without
/// the path and query, which often carry that integration's own key.
fn origin_only(destination: &str) -> String {
    url::Url::parse(destination).map_or_else(
        |_| "(not a URL)".to_owned(),
        |url| format!("{}/…", url.origin().ascii_serialization()),
    )
}

/// The authorisation code: `AMO_AUTH_CODE`, or one line of standard input.
async fn auth_code() -> Result<String, CliError> {
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
    .map_err(|e| CliError::Failed(format!("reading standard input failed: {e}")))?
    .map_err(|source| CliError::Io {
        context: "could not read the code from standard input",
        source,
    })?;
    let code = line.trim().to_owned();
    if code.is_empty() {
        return Err(CliError::Usage(
            "no authorisation code: set AMO_AUTH_CODE or write it on standard input".into(),
        ));
    }
    Ok(code)
}

async fn exchange(settings: Settings, logger: slog::Logger) -> Result<(), CliError> {
    let client = OAuthClient::from_settings(&settings.amo).ok_or_else(|| {
        CliError::Usage(
            "OAuth mode needs AMO_CLIENT_ID, AMO_CLIENT_SECRET and AMO_REDIRECT_URI, \
             and no AMO_ACCESS_TOKEN"
                .into(),
        )
    })?;
    let code = auth_code().await?;
    let db = open_db(&settings, &logger).await?;
    db.migrate().await?;
    let transport = amo_transport(&settings, &db)?;
    let store = token_store(&settings.amo, &db)?
        .ok_or_else(|| CliError::Usage("OAuth mode needs TOKEN_ENCRYPTION_KEY".into()))?;
    let tokens = OAuthTokens::new(
        client,
        Arc::new(store),
        transport.http_client(),
        transport.limiter(),
    );
    tokens
        .exchange(&code)
        .await
        .map_err(|e| CliError::Failed(format!("AmoCRM refused the code: {e}")))?;
    println!("tokens stored; amosync refreshes them from now on");
    Ok(())
}
