//! `/health` (the process answers) and `/ready` (the database answers and its
//! schema is current). Both are open: load balancers and orchestrators call them.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::problems::NotReady;
use crate::amo::AmoAccess;
use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::request_logger;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// Always `ok`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyBody {
    /// Always `ready`.
    pub status: String,
    pub amocrm: AmoAccessBody,
    /// `AMOSYNC_DEMO`: a demo that accepts the published sample values.
    pub demo: bool,
    /// Variables holding a published sample value (`API_TOKENS`, `WEBHOOK_SECRET`, …):
    /// anyone can use them, so such an instance must not be reachable by others.
    pub sample_values: Vec<String>,
    pub mirror: MirrorBody,
}

/// Whether the mirror is authoritative, i.e. whether `AMO_DEDUP=auto` skips AmoCRM's
/// phone search; ages are seconds since each fact was recorded (null: never).
#[derive(Debug, Serialize, ToSchema)]
pub struct MirrorBody {
    /// `auto`, `remote` or `mirror`.
    pub dedup: String,
    pub authoritative: bool,
    /// When not authoritative: the first fact missing or stale.
    pub reason: Option<String>,
    pub full_import_age_secs: Option<i64>,
    pub webhook_verified_age_secs: Option<i64>,
    pub reconciled_age_secs: Option<i64>,
}

/// AmoCRM access as `/ready` reports it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AmoAccessBody {
    /// `ok` or `refused`.
    pub state: String,
    /// When refused: `unauthorized`, `payment_required` or `forbidden`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When refused: since when, in Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

impl From<AmoAccess> for AmoAccessBody {
    fn from(access: AmoAccess) -> Self {
        match access {
            AmoAccess::Ok => AmoAccessBody {
                state: "ok".into(),
                reason: None,
                since: None,
            },
            AmoAccess::Refused { reason, since } => AmoAccessBody {
                state: "refused".into(),
                reason: Some(reason.into()),
                since: Some(since),
            },
        }
    }
}

#[utoipa::path(
    get, path = "/health", tag = "operations",
    summary = "The process answers",
    responses((status = 200, description = "Up", body = HealthBody))
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody {
        status: "ok".into(),
    })
}

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
        NotReady,
    )
)]
pub async fn ready(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (authority, exposure) = (&state.authority, &state.exposure);
    if state.lifecycle.is_draining() {
        return Err(ApiError::NotReady("shutting down".into()));
    }
    match state.db.is_ready().await {
        Ok(true) => {
            let mirror = authority.state().await;
            Ok(HttpResponse::Ok().json(ReadyBody {
                status: "ready".into(),
                amocrm: state.amo.access().into(),
                demo: exposure.demo,
                sample_values: exposure
                    .sample_values
                    .iter()
                    .map(|v| v.to_string())
                    .collect(),
                mirror: MirrorBody {
                    dedup: authority.mode().as_str().into(),
                    authoritative: mirror.authoritative,
                    reason: mirror.reason.map(str::to_owned),
                    full_import_age_secs: mirror.ages.full_import,
                    webhook_verified_age_secs: mirror.ages.webhook_active,
                    reconciled_age_secs: mirror.ages.reconciled,
                },
            }))
        }
        Ok(false) => Err(ApiError::NotReady("database migrations are pending".into())),
        Err(err) => {
            slog::warn!(request_logger(&req, &state.logger), "readiness check failed"; "error" => err.to_string());
            Err(ApiError::NotReady("the database is not reachable".into()))
        }
    }
}
