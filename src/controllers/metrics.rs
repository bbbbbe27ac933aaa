//! `GET /metrics`: Prometheus text, with the queue and pool gauges read at scrape time.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use slog::Logger;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::openapi::ProblemDetails;
use crate::repositories::{queue_stats, Db};
use crate::settings::Secret;
use crate::telemetry::request_logger;

/// `METRICS_TOKEN`: when set, scrapers must present it as a bearer token.
pub struct MetricsToken(pub Option<Secret>);

impl MetricsToken {
    fn admits(&self, authorization: Option<&str>) -> bool {
        let Some(expected) = &self.0 else {
            return true;
        };
        let Some((scheme, token)) = authorization.and_then(|v| v.trim().split_once(' ')) else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer")
            && bool::from(token.trim().as_bytes().ct_eq(expected.expose().as_bytes()))
    }
}

#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    summary = "Prometheus metrics (text format)",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
        (status = 401, description = "METRICS_TOKEN is set and was not presented", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub async fn get_metrics(
    req: HttpRequest,
    token: web::Data<MetricsToken>,
    metrics: web::Data<Metrics>,
    db: web::Data<Db>,
    logger: web::Data<Logger>,
) -> Result<HttpResponse, ApiError> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !token.admits(authorization) {
        return Err(ApiError::Unauthorized);
    }
    // A database outage must not blind the scraper to everything else: the queue
    // gauges keep their last values and the failure is logged.
    match queue_stats(&db).await {
        Ok(stats) => metrics.record_queues(&stats),
        Err(err) => {
            slog::warn!(request_logger(&req, &logger), "queue gauges not refreshed"; "error" => err.to_string())
        }
    }
    metrics.record_pool(db.pool_state());
    let body = metrics
        .encode()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_bearer_token_opens_metrics() {
        let open = MetricsToken(None);
        assert!(open.admits(None));
        let closed = MetricsToken(Some(Secret::new("scrape-token-0123")));
        assert!(closed.admits(Some("Bearer scrape-token-0123")));
        assert!(closed.admits(Some("bearer scrape-token-0123")));
        assert!(!closed.admits(Some("Bearer scrape-token-012")));
        assert!(!closed.admits(Some("Basic scrape-token-0123")));
        assert!(!closed.admits(Some("scrape-token-0123")));
        assert!(!closed.admits(None));
    }
}
