//! Builds the application: pool, migrations, AmoCRM client, services, and the
//! actix server bound to its port (port 0 in tests picks a free one).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App, HttpServer};
use slog::Logger;

use crate::amo::{AmoClientConfig, AmoError, AmoTransport, HttpAmoTransport};
use crate::controllers::{self, ApiTokens, BodyLimit, WebhookBodyLimit, WebhookSecret};
use crate::repositories::{
    Db, MysqlContactRepository, MysqlInboxRepository, MysqlJobRepository, MysqlLeadRepository,
    MysqlMirrorRepository, RepoError, RetryPolicy,
};
use crate::services::{
    ContactService, ExpectedAccount, JobService, LeadService, SyncSettings, SyncWorker,
    SyncWorkerConfig, WebhookReceiver, WebhookSubscription, WebhookWorker, WorkerConfig,
};
use crate::settings::Settings;
use crate::telemetry;

/// How long in-flight requests get to finish after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] RepoError),
    #[error("AmoCRM client: {0}")]
    Amo(#[from] AmoError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// The AmoCRM client the settings describe.
pub fn amo_transport(settings: &Settings) -> Result<HttpAmoTransport, AmoError> {
    HttpAmoTransport::new(AmoClientConfig {
        base_url: settings.amo_base_url.clone(),
        access_token: settings.amo_access_token.expose().to_owned(),
        region: settings.default_phone_region,
        connect_timeout: settings.amo_connect_timeout,
        request_timeout: settings.amo_request_timeout,
        max_rps: settings.amo_max_rps,
    })
}

pub struct Application {
    server: Server,
    port: u16,
}

impl Application {
    /// Connects (waiting for the database), migrates, and binds. The server runs
    /// once `run_until_stopped` is awaited.
    pub async fn build(settings: Settings, logger: Logger) -> Result<Application, StartupError> {
        let db = Db::new(
            settings.database_url.expose(),
            settings.db_pool_size,
            settings.db_checkout_timeout,
        );
        db.wait_until_reachable(settings.db_wait, &logger).await?;
        let applied = db.migrate().await?;
        if !applied.is_empty() {
            slog::info!(logger, "migrations applied"; "migrations" => applied.join(","));
        }
        let amo = amo_transport(&settings)?;
        Self::build_with(settings, logger, db, Arc::new(amo))
    }

    /// Wires the app around a ready database and any `AmoTransport`.
    pub fn build_with(
        settings: Settings,
        logger: Logger,
        db: Db,
        amo: Arc<dyn AmoTransport>,
    ) -> Result<Application, StartupError> {
        let amo_for_hooks = Arc::clone(&amo);
        let sync = SyncSettings {
            inline_budget: settings.sync_inline_budget,
            retry: RetryPolicy {
                max_attempts: settings.sync_max_attempts,
                base: settings.sync_retry_base,
                ..RetryPolicy::default()
            },
        };
        let contact_repo = Arc::new(MysqlContactRepository::new(db.clone()));
        let lead_repo = Arc::new(MysqlLeadRepository::new(db.clone()));
        let contacts = Arc::new(ContactService::new(
            contact_repo.clone(),
            Arc::clone(&amo),
            sync,
            logger.clone(),
        ));
        let leads = Arc::new(LeadService::new(
            lead_repo.clone(),
            contact_repo.clone(),
            Arc::clone(&contacts),
            amo,
            sync,
            logger.clone(),
        ));
        let jobs = Arc::new(MysqlJobRepository::new(db.clone()));
        let sync_worker = SyncWorker::new(
            jobs.clone(),
            contact_repo,
            lead_repo,
            Arc::clone(&contacts),
            Arc::clone(&leads),
            SyncWorkerConfig::default(),
            logger.new(slog::o!("task" => "sync_worker")),
        );
        // Jobs left by a previous run (or another instance) are worked off from now on.
        tokio::spawn(sync_worker.run());
        let jobs = web::Data::new(JobService::new(jobs));

        let inbox = Arc::new(MysqlInboxRepository::new(db.clone()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let secret = settings
            .webhook_secret
            .as_ref()
            .map(|s| s.expose().to_owned());
        let receiver = WebhookReceiver::new(
            secret.clone(),
            ExpectedAccount {
                id: settings.amo_account_id,
                subdomain: settings.amo_subdomain.clone(),
            },
            inbox.clone(),
            Arc::clone(&wake),
        );
        let worker = WebhookWorker::new(
            inbox,
            Arc::new(MysqlMirrorRepository::new(db.clone())),
            settings.default_phone_region,
            wake,
            WorkerConfig::default(),
            logger.new(slog::o!("task" => "webhook_worker")),
        );
        // Deliveries accepted before a crash are still in the inbox: start working at once.
        tokio::spawn(worker.run());
        let subscription = web::Data::new(WebhookSubscription::new(
            Arc::clone(&amo_for_hooks),
            settings.webhook_destination(),
            settings.webhook_events.clone(),
        ));
        let receiver = web::Data::new(receiver);
        let webhook_secret = web::Data::new(WebhookSecret(secret));
        let webhook_limit = web::Data::new(WebhookBodyLimit(settings.webhook_max_body_bytes));

        let contacts = web::Data::from(contacts);
        let leads = web::Data::from(leads);
        let db = web::Data::new(db);
        let tokens = web::Data::new(ApiTokens::new(settings.api_tokens.clone()));
        let region = web::Data::new(settings.default_phone_region);
        let body_limit = web::Data::new(BodyLimit(settings.max_body_bytes));
        let root_logger = web::Data::new(logger.clone());
        let proxies = web::Data::new(telemetry::TrustedProxies(settings.trusted_proxies.clone()));

        let listener = TcpListener::bind((settings.bind_addr, settings.port))?;
        let port = listener.local_addr()?.port();
        slog::info!(logger, "listening"; "addr" => settings.bind_addr.to_string(), "port" => port);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(contacts.clone())
                .app_data(leads.clone())
                .app_data(db.clone())
                .app_data(tokens.clone())
                .app_data(region.clone())
                .app_data(body_limit.clone())
                .app_data(root_logger.clone())
                .app_data(proxies.clone())
                .app_data(receiver.clone())
                .app_data(jobs.clone())
                .app_data(subscription.clone())
                .app_data(webhook_secret.clone())
                .app_data(webhook_limit.clone())
                .wrap(Compress::default())
                .wrap(from_fn(telemetry::request_context))
                .configure(controllers::routes)
                .default_service(web::to(controllers::not_found))
        })
        .workers(settings.http_workers.max(1))
        .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
        .listen(listener)?
        .run();
        Ok(Application { server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
