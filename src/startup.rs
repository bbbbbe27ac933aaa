//! Builds the application: pool, migrations, AmoCRM client, services, and the
//! actix server bound to its port (port 0 in tests picks a free one).

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use slog::Logger;

use crate::amo::{
    AmoClientConfig, AmoError, AmoTransport, HttpAmoTransport, OAuthClient, OAuthTokens,
};
use crate::controllers;
use crate::domain::Region;
use crate::lifecycle::Lifecycle;
use crate::metrics::{Metrics, MetricsError};
use crate::redact::Redactor;
use crate::repositories::{
    Db, MysqlContactRepository, MysqlCursorRepository, MysqlDuplicateRepository,
    MysqlIdempotencyRepository, MysqlInboxRepository, MysqlJobRepository, MysqlLeadRepository,
    MysqlMirrorFactRepository, MysqlMirrorRepository, MysqlRefetchRepository,
    MysqlSenderRepository, MysqlSyncRowRepository, MysqlTokenStore, RepoError, Resealed,
    TokenStoreError,
};
use crate::services::{
    ContactService, ExpectedAccount, GroupCommit, IdempotencyService, Intake, JobService,
    LeadService, MirrorAuthority, OutboxStores, RateShare, Reconciler, RefetchConfig, Refetcher,
    SyncSettings, SyncWorker, SyncWorkerConfig, Upkeep, WebhookReceiver, WebhookSubscription,
    WebhookWorker, WorkerConfig,
};
use crate::settings::{self, ApiTokens, Exposure, Settings};
use crate::state::AppState;
use crate::telemetry;

mod server;
mod shutdown;

pub use shutdown::ShutdownTrigger;
use shutdown::Signals;

/// How long in-flight requests get to finish after SIGTERM: under Docker's default
/// 10 s grace period (compose gives 30 s), so nothing is cut off by a SIGKILL.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);

/// Threads a runtime may start for blocking work: every query runs on one (see
/// `Db::run`) and waits for one of `db_pool_size` connections, so more threads than
/// connections would only wait, each with its stack and malloc arena, and leave the
/// memory behind after a burst. Calls beyond it queue inside the runtime instead.
pub fn blocking_threads(db_pool_size: u32) -> usize {
    db_pool_size.max(1) as usize + 2
}

/// How long the workers get to finish their batch once the server has stopped.
const WORKER_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] RepoError),
    #[error("AmoCRM client: {0}")]
    Amo(#[from] AmoError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("stored AmoCRM tokens: {0}")]
    Tokens(#[from] TokenStoreError),
}

/// OAuth mode's token store, sealing with the configured keys; `None` with a
/// long-lived token, which is never stored.
pub fn token_store(amo: &settings::Amo, db: &Db) -> Result<Option<MysqlTokenStore>, AmoError> {
    if OAuthClient::from_settings(amo).is_none() {
        return Ok(None);
    }
    // Settings refuse OAuth mode without a key; this only guards the invariant.
    let cipher = amo.token_cipher.clone().ok_or_else(|| {
        AmoError::Network("OAuth mode needs TOKEN_ENCRYPTION_KEY to store tokens".into())
    })?;
    Ok(Some(MysqlTokenStore::new(db.clone(), cipher)))
}

/// The AmoCRM client the settings describe; in OAuth mode its tokens live in `db`.
pub fn amo_transport(settings: &Settings, db: &Db) -> Result<HttpAmoTransport, AmoError> {
    let transport = HttpAmoTransport::new(AmoClientConfig::from_settings(
        &settings.amo,
        settings.default_phone_region,
    ))?
    .with_redactor(Redactor::from_settings(settings));
    Ok(
        match (
            OAuthClient::from_settings(&settings.amo),
            token_store(&settings.amo, db)?,
        ) {
            (Some(client), Some(store)) => {
                let tokens = OAuthTokens::new(
                    client,
                    Arc::new(store),
                    transport.http_client(),
                    transport.limiter(),
                );
                transport.with_tokens(Arc::new(tokens))
            }
            _ => transport,
        },
    )
}

/// The reconciler that runs `sync --full`: it records the "full import finished"
/// fact and reports duplicates, but verifies no webhook (no round runs).
pub fn importer(settings: &Settings, db: &Db, logger: Logger) -> Result<Reconciler, AmoError> {
    let amo = amo_transport(settings, db)?;
    let upkeep = Upkeep {
        facts: Arc::new(MysqlMirrorFactRepository::new(db.clone())),
        duplicates: Arc::new(MysqlDuplicateRepository::new(db.clone())),
        subscription: None,
        authority: None,
    };
    let region = settings.default_phone_region;
    Ok(reconciler(Arc::new(amo), db, region, logger, upkeep))
}

/// Logs what makes this instance weaker than it should be (tokens written without
/// scopes, demo mode, published sample values) and returns what `/ready` reports of it.
fn warn_about_exposure(settings: &Settings, logger: &Logger) -> Exposure {
    for client in settings.http.api_tokens.iter().filter(|t| t.legacy) {
        slog::warn!(logger, "API token written without scopes: it may only post contacts and leads";
            "client.id" => &client.client_id,
            "hint" => "grant more in API_TOKENS as name:write+read:token (scopes: write, read, admin)");
    }
    let exposure = Exposure {
        demo: settings.demo,
        sample_values: settings.sample_values(),
    };
    if exposure.demo || !exposure.sample_values.is_empty() {
        slog::warn!(logger, "demo mode: published sample values are accepted, never expose this instance";
            "demo" => exposure.demo,
            "sample_values" => exposure.sample_values.join(","),
            "hint" => "set your own API_TOKENS and WEBHOOK_SECRET and unset AMOSYNC_DEMO");
    }
    exposure
}

/// A reconciler over `db`; `upkeep` is what its rounds keep current besides the mirror.
fn reconciler(
    amo: Arc<dyn AmoTransport>,
    db: &Db,
    region: Region,
    logger: Logger,
    upkeep: Upkeep,
) -> Reconciler {
    Reconciler::new(
        amo,
        Arc::new(MysqlCursorRepository::new(db.clone())),
        Arc::new(MysqlMirrorRepository::new(db.clone())),
        region,
        logger,
    )
    .with_upkeep(upkeep)
}

/// The AmoCRM account's catalogue kept in `db` (`amosync amocrm` uses it too).
pub fn catalogue_service(
    amo: Arc<dyn AmoTransport>,
    db: &Db,
    section: settings::Catalogue,
    logger: Logger,
) -> crate::services::CatalogueService {
    crate::services::CatalogueService::new(
        amo,
        Arc::new(crate::repositories::MysqlCatalogueRepository::new(
            db.clone(),
        )),
        Arc::new(MysqlCursorRepository::new(db.clone())),
        crate::services::CatalogueConfig::from(section),
        logger,
    )
}

pub struct Application {
    server: Server,
    port: u16,
    lifecycle: Arc<Lifecycle>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    logger: Logger,
}

impl Application {
    /// Connects (waiting for the database), migrates, and binds. The server runs
    /// once `run_until_stopped` is awaited.
    pub async fn build(settings: Settings, logger: Logger) -> Result<Application, StartupError> {
        let db = Db::connect(&settings.db);
        db.wait_until_reachable(settings.db.wait, &logger).await?;
        let applied = db.migrate().await?;
        if !applied.is_empty() {
            slog::info!(logger, "migrations applied"; "migrations" => applied.join(","));
        }
        // A stored pair the keys cannot open stops start-up here, with the reason.
        if let Some(store) = token_store(&settings.amo, &db)? {
            if store.reseal().await? == Resealed::Now {
                slog::info!(logger, "stored AmoCRM tokens sealed with the current key";
                    "key.id" => settings.amo.token_cipher.as_ref().map(|c| c.current_key_id().to_owned()));
            }
        }
        let amo = amo_transport(&settings, &db)?
            .with_logger(logger.new(slog::o!("component" => "amocrm")));
        // Instances of one integration share its requests per second (see `RateShare`).
        // Heartbeats get a connection of their own: a late heartbeat (the pool busy with
        // a burst) would let a sibling take the whole limit.
        let heartbeat_db = Db::sized(&settings.db, 1);
        let share = RateShare::new(
            Arc::new(MysqlSenderRepository::new(heartbeat_db)),
            amo.limiter(),
            settings.amo.max_rps,
            logger.new(slog::o!("task" => "rate_share")),
        );
        share.beat().await;
        let mut app = Self::build_with(settings, logger, db, Arc::new(amo))?;
        let lifecycle = Arc::clone(&app.lifecycle);
        app.workers.push(tokio::spawn(share.run(lifecycle)));
        Ok(app)
    }

    /// Wires the app around a ready database and any `AmoTransport`.
    pub fn build_with(
        settings: Settings,
        logger: Logger,
        db: Db,
        amo: Arc<dyn AmoTransport>,
    ) -> Result<Application, StartupError> {
        let exposure = warn_about_exposure(&settings, &logger);
        let amo_for_hooks = Arc::clone(&amo);
        let sync = SyncSettings::from(settings.sync);
        let contact_repo = Arc::new(MysqlContactRepository::new(db.clone()));
        let lead_repo = Arc::new(MysqlLeadRepository::new(db.clone()));
        let sync_rows = Arc::new(MysqlSyncRowRepository::new(db.clone()));
        let facts = Arc::new(MysqlMirrorFactRepository::new(db.clone()));
        let authority = Arc::new(MirrorAuthority::new(
            settings.amo.dedup,
            facts.clone(),
            settings.reconcile.interval,
            logger.new(slog::o!("component" => "mirror_authority")),
        ));
        let contacts = Arc::new(ContactService::new(
            contact_repo.clone(),
            sync_rows.clone(),
            Arc::clone(&amo),
            sync,
            Arc::clone(&authority),
            logger.clone(),
        ));
        let leads = Arc::new(LeadService::new(
            lead_repo.clone(),
            contact_repo.clone(),
            sync_rows.clone(),
            Arc::clone(&contacts),
            amo,
            sync,
            logger.clone(),
        ));
        let jobs = Arc::new(MysqlJobRepository::new(db.clone()));
        let sync_worker = SyncWorker::new(
            Arc::clone(&amo_for_hooks),
            OutboxStores {
                jobs: jobs.clone(),
                contacts: contact_repo,
                leads: lead_repo,
                rows: sync_rows,
            },
            sync,
            SyncWorkerConfig::default(),
            Arc::clone(&authority),
            logger.new(slog::o!("task" => "sync_worker")),
        );
        // Jobs left by a previous run (or another instance) are worked off from now on.
        let lifecycle = Arc::new(Lifecycle::default());
        let after_restore = Arc::new(crate::services::AfterRestore::new(
            Arc::new(crate::repositories::MysqlRestoreRepository::new(db.clone())),
            logger.new(slog::o!("task" => "after_restore")),
        ));
        let (restore_gate, worker_lifecycle) = (Arc::clone(&after_restore), Arc::clone(&lifecycle));
        let mut workers = vec![tokio::spawn(async move {
            // A restored backup's pending jobs must search AmoCRM first: the restore
            // marker is handled before the first claim.
            restore_gate.handled(&worker_lifecycle).await;
            sync_worker.run(worker_lifecycle).await
        })];

        let inbox = Arc::new(MysqlInboxRepository::new(db.clone()));
        let intake = Arc::new(Intake::default());
        let secret = settings
            .webhooks
            .secret
            .as_ref()
            .map(|s| s.expose().to_owned());
        let receiver = WebhookReceiver::new(
            secret.clone(),
            ExpectedAccount::from(&settings.amo),
            GroupCommit::new(inbox.clone()),
            Arc::clone(&intake),
        );
        let worker = WebhookWorker::new(
            inbox,
            Arc::new(MysqlMirrorRepository::new(db.clone())),
            settings.default_phone_region,
            intake,
            WorkerConfig::default(),
            logger.new(slog::o!("task" => "webhook_worker")),
        );
        // Deliveries accepted before a crash are still in the inbox: start working at once.
        workers.push(tokio::spawn(worker.run(Arc::clone(&lifecycle))));
        let refetcher = Refetcher::new(
            Arc::clone(&amo_for_hooks),
            Arc::new(MysqlRefetchRepository::new(db.clone())),
            Arc::new(MysqlMirrorRepository::new(db.clone())),
            settings.default_phone_region,
            RefetchConfig::default(),
            logger.new(slog::o!("task" => "refetcher")),
        );
        workers.push(tokio::spawn(refetcher.run(Arc::clone(&lifecycle))));
        workers.push(tokio::spawn(crate::host::trim_memory(Arc::clone(
            &lifecycle,
        ))));
        let subscription = Arc::new(
            WebhookSubscription::new(
                Arc::clone(&amo_for_hooks),
                settings.webhook_destination(),
                settings.webhooks.events.clone(),
            )
            .with_facts(facts.clone()),
        );
        let retention = crate::services::Retention::new(
            Arc::new(crate::repositories::MysqlRetentionRepository::new(
                db.clone(),
            )),
            Arc::new(MysqlCursorRepository::new(db.clone())),
            crate::services::RetentionConfig::from(settings.retention),
            logger.new(slog::o!("task" => "retention")),
        );
        workers.push(tokio::spawn(retention.run(Arc::clone(&lifecycle))));
        let catalogue = Arc::new(catalogue_service(
            Arc::clone(&amo_for_hooks),
            &db,
            settings.catalogue,
            logger.new(slog::o!("task" => "catalogue")),
        ));
        workers.push(tokio::spawn(
            Arc::clone(&catalogue).run(Arc::clone(&lifecycle)),
        ));
        // Rounds keep the facts, the duplicates report, the webhook (when amosync has
        // one) and the mirror's authority current.
        let upkeep = || Upkeep {
            facts: facts.clone(),
            duplicates: Arc::new(MysqlDuplicateRepository::new(db.clone())),
            subscription: settings
                .webhook_destination()
                .map(|_| Arc::clone(&subscription)),
            authority: Some(Arc::clone(&authority)),
        };
        let region = settings.default_phone_region;
        // After a restore, one round catches the mirror up, whatever the interval says.
        let catch_up = reconciler(
            Arc::clone(&amo_for_hooks),
            &db,
            region,
            logger.new(slog::o!("task" => "after_restore")),
            upkeep(),
        );
        workers.push(tokio::spawn(
            after_restore.catch_up(catch_up, Arc::clone(&lifecycle)),
        ));
        if !settings.reconcile.interval.is_zero() {
            let periodic = reconciler(
                Arc::clone(&amo_for_hooks),
                &db,
                region,
                logger.new(slog::o!("task" => "reconciler")),
                upkeep(),
            );
            workers.push(tokio::spawn(
                periodic.run(settings.reconcile, Arc::clone(&lifecycle)),
            ));
        }
        let state = web::Data::new(AppState {
            contacts,
            leads,
            jobs: JobService::new(jobs),
            idempotency: IdempotencyService::new(Arc::new(MysqlIdempotencyRepository::new(
                db.clone(),
            ))),
            receiver,
            subscription,
            authority,
            catalogue,
            amo: amo_for_hooks,
            db,
            lifecycle: Arc::clone(&lifecycle),
            metrics: Metrics::new()?,
            logger: logger.clone(),
            tokens: ApiTokens::new(settings.http.api_tokens.clone()),
            metrics_token: settings.http.metrics_token.clone(),
            proxies: telemetry::TrustedProxies(settings.http.trusted_proxies.clone()),
            exposure,
            region: settings.default_phone_region,
            body_limit: settings.http.max_body_bytes,
            webhook_body_limit: settings.webhooks.max_body_bytes,
            webhook_secret: secret,
            api_description: serde_json::to_vec(&controllers::openapi::document())
                .unwrap_or_default()
                .into(),
        });

        let (server, port) = server::bind(&settings.http, settings.db.pool_size, state, &logger)?;
        Ok(Application {
            server,
            port,
            lifecycle,
            workers,
            logger,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server stops (SIGTERM/SIGINT when `stop_on_signals` ran).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.lifecycle.start_draining();
        for worker in self.workers {
            if tokio::time::timeout(WORKER_DRAIN, worker).await.is_err() {
                slog::warn!(
                    self.logger,
                    "a worker did not stop in time; its leases will lapse"
                );
            }
        }
        result
    }

    /// What SIGTERM does, for callers that stop the service themselves.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger {
            handle: self.server.handle(),
            lifecycle: Arc::clone(&self.lifecycle),
            logger: self.logger.clone(),
        }
    }

    /// On SIGTERM or SIGINT, shut down gracefully (see `ShutdownTrigger::shutdown`).
    pub fn stop_on_signals(&self) {
        // The handlers are installed here, before the caller serves its first
        // request; installed inside the task, a SIGTERM that came before the task's
        // first poll would still kill the process outright.
        let signals = Signals::install();
        let trigger = self.shutdown_trigger();
        tokio::spawn(async move {
            signals.recv().await;
            trigger.shutdown().await;
        });
    }
}
