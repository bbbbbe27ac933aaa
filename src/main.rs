//! The `amosync` binary: `serve` (the default) runs the service, `migrate`
//! applies the database migrations and exits.

use std::process::ExitCode;

use amosync::repositories::Db;
use amosync::settings::Settings;
use amosync::startup::Application;
use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
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
    let (logger, _guard) = amosync::telemetry::init(settings.log_level);
    let runtime = actix_web::rt::System::new();
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings, logger.clone()).await,
            Command::Migrate => migrate(settings, logger.clone()).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            slog::crit!(logger, "amosync stopped"; "error" => err.clone());
            eprintln!("amosync: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings, logger: slog::Logger) -> Result<(), String> {
    let app = Application::build(settings, logger.clone())
        .await
        .map_err(|e| e.to_string())?;
    app.run_until_stopped().await.map_err(|e| e.to_string())?;
    slog::info!(logger, "stopped");
    Ok(())
}

async fn migrate(settings: Settings, logger: slog::Logger) -> Result<(), String> {
    let db = Db::new(
        settings.database_url.expose(),
        2,
        settings.db_checkout_timeout,
    );
    db.wait_until_reachable(settings.db_wait, &logger)
        .await
        .map_err(|e| e.to_string())?;
    let applied = db.migrate().await.map_err(|e| e.to_string())?;
    slog::info!(logger, "migrations done"; "applied" => applied.len(), "migrations" => applied.join(","));
    Ok(())
}
