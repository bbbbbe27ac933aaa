//! Builds the application: pool, migrations, AmoCRM client, services, and the
//! actix server bound to its port (port 0 in tests picks a free one).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App, HttpServer};
use slog::Logger;

use crate::amo::{AmoClientConfig, AmoError, AmoTransport, HttpAmoTransport, OAuthTokens};
use crate::controllers::{
    self, AmoStatus, ApiTokens, BodyLimit, MetricsToken, WebhookBodyLimit, WebhookSecret,
};
use crate::lifecycle::Lifecycle;
use crate::metrics::{Metrics, MetricsError};
use crate::redact::Redactor;
use crate::repositories::{
    Db, MysqlContactRepository, MysqlCursorRepository, MysqlDuplicateRepository,
    MysqlIdempotencyRepository, MysqlInboxRepository, MysqlJobRepository, MysqlLeadRepository,
    MysqlMirrorFactRepository, MysqlMirrorRepository, MysqlRefetchRepository,
    MysqlSenderRepository, MysqlSyncRowRepository, MysqlTokenStore, RepoError, Resealed,
    RetryPolicy, TokenStoreError,
};
use crate::services::{
    ContactService, ExpectedAccount, GroupCommit, IdempotencyService, Intake, JobService,
    LeadService, MirrorAuthority, RateShare, Reconciler, RefetchConfig, Refetcher, SyncSettings,
    SyncWorker, SyncWorkerConfig, Upkeep, WebhookReceiver, WebhookSubscription, WebhookWorker,
    WorkerConfig,
};
use crate::settings::{Exposure, Settings};
use crate::telemetry;

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

/// Between `/ready` turning 503 and the listener closing.
const READY_GRACE: Duration = Duration::from_secs(1);

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
pub fn token_store(settings: &Settings, db: &Db) -> Result<Option<MysqlTokenStore>, AmoError> {
    if settings.oauth().is_none() {
        return Ok(None);
    }
    // Settings refuse OAuth mode without a key; this only guards the invariant.
    let cipher = settings.token_cipher.clone().ok_or_else(|| {
        AmoError::Network("OAuth mode needs TOKEN_ENCRYPTION_KEY to store tokens".into())
    })?;
    Ok(Some(MysqlTokenStore::new(db.clone(), cipher)))
}

/// The AmoCRM client the settings describe; in OAuth mode its tokens live in `db`.
pub fn amo_transport(settings: &Settings, db: &Db) -> Result<HttpAmoTransport, AmoError> {
    let transport = HttpAmoTransport::new(AmoClientConfig {
        base_url: settings.amo_base_url.clone(),
        access_token: settings.amo_access_token.expose().to_owned(),
        region: settings.default_phone_region,
        connect_timeout: settings.amo_connect_timeout,
        request_timeout: settings.amo_request_timeout,
        max_rps: settings.amo_max_rps,
        access_probe: settings.amo_access_probe,
    })?
    .with_redactor(Redactor::from_settings(settings));
    Ok(match (settings.oauth(), token_store(settings, db)?) {
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
    })
}

/// The reconciler that runs `sync --full`: it records the "full import finished"
/// fact and reports duplicates, but verifies no webhook (no round runs).
pub fn importer(settings: &Settings, db: &Db, logger: Logger) -> Result<Reconciler, AmoError> {
    let amo = amo_transport(settings, db)?;
    Ok(Reconciler::new(
        Arc::new(amo),
        Arc::new(MysqlCursorRepository::new(db.clone())),
        Arc::new(MysqlMirrorRepository::new(db.clone())),
        settings.default_phone_region,
        logger,
    )
    .with_upkeep(Upkeep {
        facts: Arc::new(MysqlMirrorFactRepository::new(db.clone())),
        duplicates: Arc::new(MysqlDuplicateRepository::new(db.clone())),
        subscription: None,
        authority: None,
    }))
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
        // A stored pair the keys cannot open stops start-up here, with the reason.
        if let Some(store) = token_store(&settings, &db)? {
            if store.reseal().await? == Resealed::Now {
                slog::info!(logger, "stored AmoCRM tokens sealed with the current key";
                    "key.id" => settings.token_cipher.as_ref().map(|c| c.current_key_id().to_owned()));
            }
        }
        let amo = amo_transport(&settings, &db)?
            .with_logger(logger.new(slog::o!("component" => "amocrm")));
        // Instances of one integration share its requests per second (see `RateShare`).
        // Heartbeats get a connection of their own: a late heartbeat (the pool busy with
        // a burst) would let a sibling take the whole limit.
        let heartbeat_db = Db::new(
            settings.database_url.expose(),
            1,
            settings.db_checkout_timeout,
        );
        let share = RateShare::new(
            Arc::new(MysqlSenderRepository::new(heartbeat_db)),
            amo.limiter(),
            settings.amo_max_rps,
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
        for client in settings.api_tokens.iter().filter(|t| t.legacy) {
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
        let amo_for_hooks = Arc::clone(&amo);
        let sync = SyncSettings {
            inline_budget: settings.sync_inline_budget,
            retry: RetryPolicy {
                max_attempts: settings.sync_max_attempts,
                base: settings.sync_retry_base,
                ..RetryPolicy::default()
            },
            lease: settings.sync_lease,
        };
        let contact_repo = Arc::new(MysqlContactRepository::new(db.clone()));
        let lead_repo = Arc::new(MysqlLeadRepository::new(db.clone()));
        let sync_rows = Arc::new(MysqlSyncRowRepository::new(db.clone()));
        let facts = Arc::new(MysqlMirrorFactRepository::new(db.clone()));
        let authority = Arc::new(MirrorAuthority::new(
            settings.amo_dedup,
            facts.clone(),
            settings.reconcile_interval,
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
            jobs.clone(),
            contact_repo,
            lead_repo,
            sync_rows,
            sync,
            SyncWorkerConfig::with_lease(settings.sync_lease),
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
        let jobs = web::Data::new(JobService::new(jobs));
        let idempotency = web::Data::new(IdempotencyService::new(Arc::new(
            MysqlIdempotencyRepository::new(db.clone()),
        )));

        let inbox = Arc::new(MysqlInboxRepository::new(db.clone()));
        let intake = Arc::new(Intake::default());
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
                settings.webhook_events.clone(),
            )
            .with_facts(facts.clone()),
        );
        let retention = crate::services::Retention::new(
            Arc::new(crate::repositories::MysqlRetentionRepository::new(
                db.clone(),
            )),
            Arc::new(MysqlCursorRepository::new(db.clone())),
            crate::services::RetentionConfig::new(
                settings.inbox_retention_days,
                settings.jobs_retention_days,
                settings.retention_interval,
            ),
            logger.new(slog::o!("task" => "retention")),
        );
        workers.push(tokio::spawn(retention.run(Arc::clone(&lifecycle))));
        // After a restore, one round catches the mirror up, whatever the interval says.
        let catch_up = Reconciler::new(
            Arc::clone(&amo_for_hooks),
            Arc::new(MysqlCursorRepository::new(db.clone())),
            Arc::new(MysqlMirrorRepository::new(db.clone())),
            settings.default_phone_region,
            logger.new(slog::o!("task" => "after_restore")),
        )
        .with_upkeep(Upkeep {
            facts: facts.clone(),
            duplicates: Arc::new(MysqlDuplicateRepository::new(db.clone())),
            subscription: settings
                .webhook_destination()
                .map(|_| Arc::clone(&subscription)),
            authority: Some(Arc::clone(&authority)),
        });
        workers.push(tokio::spawn(
            after_restore.catch_up(catch_up, Arc::clone(&lifecycle)),
        ));
        if !settings.reconcile_interval.is_zero() {
            let reconciler = Reconciler::new(
                Arc::clone(&amo_for_hooks),
                Arc::new(MysqlCursorRepository::new(db.clone())),
                Arc::new(MysqlMirrorRepository::new(db.clone())),
                settings.default_phone_region,
                logger.new(slog::o!("task" => "reconciler")),
            )
            .with_upkeep(Upkeep {
                facts,
                duplicates: Arc::new(MysqlDuplicateRepository::new(db.clone())),
                subscription: settings
                    .webhook_destination()
                    .map(|_| Arc::clone(&subscription)),
                authority: Some(Arc::clone(&authority)),
            });
            workers.push(tokio::spawn(reconciler.run(
                settings.reconcile_interval,
                settings.reconcile_max_pages,
                Arc::clone(&lifecycle),
            )));
        }
        let subscription = web::Data::from(subscription);
        let authority = web::Data::from(authority);
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
        let lifecycle_data = web::Data::from(Arc::clone(&lifecycle));
        let amo_status = web::Data::new(AmoStatus(Arc::clone(&amo_for_hooks)));
        let exposure = web::Data::new(exposure);
        let proxies = web::Data::new(telemetry::TrustedProxies(settings.trusted_proxies.clone()));
        let metrics = web::Data::new(Metrics::new()?);
        let metrics_token = web::Data::new(MetricsToken(settings.metrics_token.clone()));

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
                .app_data(lifecycle_data.clone())
                .app_data(amo_status.clone())
                .app_data(exposure.clone())
                .app_data(authority.clone())
                .app_data(jobs.clone())
                .app_data(idempotency.clone())
                .app_data(subscription.clone())
                .app_data(webhook_secret.clone())
                .app_data(webhook_limit.clone())
                .app_data(metrics.clone())
                .app_data(metrics_token.clone())
                .wrap(from_fn(controllers::headers::protective))
                .wrap(from_fn(controllers::compression::skip_small))
                .wrap(Compress::default())
                .wrap(from_fn(controllers::compression::unmark))
                .wrap(from_fn(telemetry::request_context))
                // Outermost: the latency includes every middleware.
                .wrap(from_fn(crate::metrics::record_http))
                .configure(controllers::routes)
                .default_service(web::to(controllers::not_found))
        })
        .workers(settings.http_workers.max(1))
        .worker_max_blocking_threads(blocking_threads(settings.db_pool_size))
        .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
        // Signals are ours: `/ready` must turn 503 before the listener closes.
        .disable_signals()
        .listen(listener)?
        .run();
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

pub struct ShutdownTrigger {
    handle: actix_web::dev::ServerHandle,
    lifecycle: Arc<Lifecycle>,
    logger: Logger,
}

impl ShutdownTrigger {
    /// Marks the service draining (`/ready` answers 503 and load balancers move away),
    /// waits `READY_GRACE`, then stops accepting connections and lets in-flight
    /// requests finish within `SHUTDOWN_TIMEOUT`.
    pub async fn shutdown(self) {
        slog::info!(self.logger, "shutting down: draining requests and workers");
        self.lifecycle.start_draining();
        tokio::time::sleep(READY_GRACE).await;
        self.handle.stop(true).await;
    }
}

/// SIGTERM (`docker stop`) and SIGINT (Ctrl-C), installed when made.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn recv(self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(self.term) => {}
                _ = next(self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
