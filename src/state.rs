//! `AppState`: what the handlers and the middleware share, handed to them as one
//! `web::Data<AppState>` built by `startup.rs`. Services come ready-made; the rest
//! is the part of the settings that requests read.

use std::sync::Arc;

use slog::Logger;

use crate::amo::AmoTransport;
use crate::domain::Region;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::repositories::Db;
use crate::services::{
    ContactService, IdempotencyService, JobService, LeadService, MirrorAuthority, WebhookReceiver,
    WebhookSubscription,
};
use crate::settings::{ApiTokens, Exposure, Secret};
use crate::telemetry::TrustedProxies;

pub struct AppState {
    pub contacts: Arc<ContactService>,
    pub leads: Arc<LeadService>,
    pub jobs: JobService,
    pub idempotency: IdempotencyService,
    pub receiver: WebhookReceiver,
    pub subscription: Arc<WebhookSubscription>,
    pub authority: Arc<MirrorAuthority>,
    /// The AmoCRM account's catalogue, as last stored.
    pub catalogue: Arc<crate::services::CatalogueService>,
    /// AmoCRM, for the access state `/ready` and `/metrics` report.
    pub amo: Arc<dyn AmoTransport>,
    /// For `/ready` and `/metrics`; requests reach it through the services.
    pub db: Db,
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Metrics,
    /// The root logger; a request logs through its child (`telemetry::request_logger`).
    pub logger: Logger,
    pub tokens: ApiTokens,
    /// `METRICS_TOKEN`: when set, scrapers must present it as a bearer token.
    pub metrics_token: Option<Secret>,
    pub proxies: TrustedProxies,
    pub exposure: Exposure,
    /// `DEFAULT_PHONE_REGION`: how a phone without a country code is read.
    pub region: Region,
    /// `MAX_BODY_BYTES`: the largest JSON body accepted.
    pub body_limit: usize,
    /// `WEBHOOK_MAX_BODY_BYTES`.
    pub webhook_body_limit: usize,
    /// `WEBHOOK_SECRET`, masked in the admin routes' answers.
    pub webhook_secret: Option<String>,
    /// The OpenAPI document as JSON, made once (`controllers::openapi::document`).
    pub api_description: actix_web::web::Bytes,
}
