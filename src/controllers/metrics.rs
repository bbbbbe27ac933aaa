//! `GET /metrics`: Prometheus text, with the queue and pool gauges read at scrape time.
//!
//! Metrics tell an outsider how busy the service is, how far behind, how many
//! records it holds: without `METRICS_TOKEN` they are served to internal networks
//! only (loopback, private, link-local; behind a proxy, the client's address from
//! `X-Forwarded-For` as `TRUSTED_PROXIES` allows). With it, every scrape needs it.

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use subtle::ConstantTimeEq;

use super::problems::MetricsErrors;
use crate::amo::AmoAccess;
use crate::domain::is_internal;
use crate::error::ApiError;
use crate::repositories::{queue_stats, table_sizes};
use crate::settings::Secret;
use crate::state::AppState;
use crate::telemetry::{request_logger, ClientIp};

/// `METRICS_TOKEN` (`AppState::metrics_token`): when set, scrapers must present it
/// as a bearer token.
struct MetricsToken<'a>(Option<&'a Secret>);

impl MetricsToken<'_> {
    /// `Ok` to serve; otherwise the refusal (401 for a missing or wrong token, 403
    /// for a client outside the internal networks when no token is configured).
    fn admits(&self, authorization: Option<&str>, client: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(expected) = &self.0 else {
            return match client {
                Some(ip) if is_internal(&ip) => Ok(()),
                _ => Err(ApiError::Forbidden(
                    "metrics are served to internal networks only; remote scrapers need \
                     METRICS_TOKEN"
                        .into(),
                )),
            };
        };
        let presented = authorization
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match presented {
            Some(token) if bool::from(token.as_bytes().ct_eq(expected.expose().as_bytes())) => {
                Ok(())
            }
            _ => Err(ApiError::Unauthorized),
        }
    }
}

#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    summary = "Prometheus metrics (text format)",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
        MetricsErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn get_metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (metrics, db, logger) = (&state.metrics, &state.db, &state.logger);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let client = req.extensions().get::<ClientIp>().map(|ip| ip.0);
    MetricsToken(state.metrics_token.as_ref()).admits(authorization, client)?;
    // A database outage must not blind the scraper to everything else: the queue
    // gauges keep their last values and the failure is logged.
    match queue_stats(db).await {
        Ok(stats) => {
            metrics.record_queues(&stats);
            metrics.record_database_up(true);
        }
        Err(err) => {
            metrics.record_database_up(false);
            slog::warn!(request_logger(&req, logger), "queue gauges not refreshed"; "error" => err.to_string())
        }
    }
    match table_sizes(db).await {
        Ok(tables) => metrics.record_tables(&tables),
        Err(err) => {
            slog::warn!(request_logger(&req, logger), "table gauges not refreshed"; "error" => err.to_string())
        }
    }
    let refused = matches!(state.amo.access(), AmoAccess::Refused { .. });
    metrics.record_amocrm(refused, state.authority.mode().as_str());
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

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn without_a_token_only_internal_networks_scrape() {
        let open = MetricsToken(None);
        assert!(open.admits(None, ip("10.0.0.5")).is_ok());
        assert!(open.admits(None, ip("127.0.0.1")).is_ok());
        assert!(matches!(
            open.admits(Some("Bearer anything-at-all-123"), ip("203.0.113.7")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(open.admits(None, None).is_err());
    }

    #[test]
    fn with_a_token_every_scrape_needs_it() {
        let secret = Secret::new("scrape-token-0123");
        let closed = MetricsToken(Some(&secret));
        let remote = ip("203.0.113.7");
        assert!(closed
            .admits(Some("Bearer scrape-token-0123"), remote)
            .is_ok());
        assert!(closed
            .admits(Some("bearer scrape-token-0123"), remote)
            .is_ok());
        for wrong in [
            Some("Bearer scrape-token-012"),
            Some("Basic scrape-token-0123"),
            Some("scrape-token-0123"),
            None,
        ] {
            assert!(matches!(
                closed.admits(wrong, remote),
                Err(ApiError::Unauthorized)
            ));
            assert!(closed.admits(wrong, ip("127.0.0.1")).is_err(), "{wrong:?}");
        }
    }
}
