//! `/health` (the process answers) and `/ready` (the database answers and its
//! schema is current). Both are open: load balancers and orchestrators call them.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use slog::Logger;

use crate::error::ApiError;
use crate::lifecycle::Lifecycle;
use crate::repositories::Db;
use crate::telemetry::request_logger;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn ready(
    lifecycle: web::Data<Lifecycle>,
    db: web::Data<Db>,
    req: HttpRequest,
    logger: web::Data<Logger>,
) -> Result<HttpResponse, ApiError> {
    if lifecycle.is_draining() {
        return Err(ApiError::NotReady("shutting down".into()));
    }
    match db.is_ready().await {
        Ok(true) => Ok(HttpResponse::Ok().json(json!({ "status": "ready" }))),
        Ok(false) => Err(ApiError::NotReady("database migrations are pending".into())),
        Err(err) => {
            slog::warn!(request_logger(&req, &logger), "readiness check failed"; "error" => err.to_string());
            Err(ApiError::NotReady("the database is not reachable".into()))
        }
    }
}
