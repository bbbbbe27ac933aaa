//! `/health` (the process answers) and `/ready` (the database answers and its
//! schema is current). Both are open: load balancers and orchestrators call them.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use slog::Logger;

use std::sync::Arc;

use crate::amo::AmoTransport;
use crate::error::ApiError;
use crate::lifecycle::Lifecycle;
use crate::openapi::{HealthBody, ProblemDetails, ReadyBody};
use crate::repositories::Db;
use crate::services::MirrorAuthority;
use crate::settings::Exposure;
use crate::telemetry::request_logger;

#[utoipa::path(
    get, path = "/health", tag = "operations",
    summary = "The process answers",
    responses((status = 200, description = "Up", body = HealthBody))
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The AmoCRM client, for the access state `/ready` reports.
pub struct AmoStatus(pub Arc<dyn AmoTransport>);

/// `200` when the database answers and is migrated. AmoCRM refusing access does not
/// make the service unready (submissions are still stored and queued), but the body
/// says so: `"amocrm": {"state": "refused", "reason": "forbidden", "since": …}`.
/// `mirror` tells whether AmoCRM's phone search is skipped, and which fact is missing
/// or stale when it is not. `demo` is `AMOSYNC_DEMO`; `sample_values` names the
/// variables holding a published sample value (a demo: never to be exposed).
#[utoipa::path(
    get, path = "/ready", tag = "operations",
    summary = "Database reachable and migrated; AmoCRM access state",
    responses(
        (status = 200, description = "Ready", body = ReadyBody),
        (status = 503, description = "Not ready: database down, migrations pending, or shutting down (not_ready)", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn ready(
    lifecycle: web::Data<Lifecycle>,
    amo: web::Data<AmoStatus>,
    exposure: web::Data<Exposure>,
    authority: web::Data<MirrorAuthority>,
    db: web::Data<Db>,
    req: HttpRequest,
    logger: web::Data<Logger>,
) -> Result<HttpResponse, ApiError> {
    if lifecycle.is_draining() {
        return Err(ApiError::NotReady("shutting down".into()));
    }
    match db.is_ready().await {
        Ok(true) => {
            let mirror = authority.state().await;
            Ok(HttpResponse::Ok().json(json!({
                "status": "ready",
                "amocrm": amo.0.access(),
                "demo": exposure.demo,
                "sample_values": exposure.sample_values,
                "mirror": {
                    "dedup": authority.mode().as_str(),
                    "authoritative": mirror.authoritative,
                    "reason": mirror.reason,
                    "full_import_age_secs": mirror.ages.full_import,
                    "webhook_verified_age_secs": mirror.ages.webhook_active,
                    "reconciled_age_secs": mirror.ages.reconciled,
                },
            })))
        }
        Ok(false) => Err(ApiError::NotReady("database migrations are pending".into())),
        Err(err) => {
            slog::warn!(request_logger(&req, &logger), "readiness check failed"; "error" => err.to_string());
            Err(ApiError::NotReady("the database is not reachable".into()))
        }
    }
}
