//! Middleware that observes every request: its count and latency (`metrics`), and
//! its id, child logger and access log line (`telemetry`). They read the shared
//! `AppState`, so they live with the handlers rather than in those leaf modules.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use slog::o;

use crate::metrics::UNMATCHED;
use crate::state::AppState;
use crate::telemetry::{request_id_of, ClientId, ClientIp, RequestContext, REQUEST_ID_HEADER};

/// Middleware (outermost, so the latency includes every other middleware): one count
/// and one latency sample per request.
pub async fn record_http(
    state: web::Data<AppState>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let metrics = &state.metrics;
    let started = Instant::now();
    let method = req.method().clone();
    let result = next.call(req).await;
    let elapsed = started.elapsed();
    match &result {
        Ok(res) => {
            let endpoint = res.request().match_pattern();
            let endpoint = endpoint.as_deref().unwrap_or(UNMATCHED);
            metrics.observe_request(endpoint, &method, res.status(), elapsed);
        }
        // The request went down with the error; only its method is known.
        Err(err) => metrics.observe_request(
            UNMATCHED,
            &method,
            err.as_response_error().status_code(),
            elapsed,
        ),
    }
    result
}

/// Middleware: request id, child logger, access log line, `X-Request-Id` echoed back.
pub async fn request_context(
    state: web::Data<AppState>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let request_id = request_id_of(&req);
    let logger = state.logger.new(o!("request_id" => request_id.clone()));
    req.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        logger: logger.clone(),
    });
    let method = req.method().to_string();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let client_ip = state.proxies.client_ip(
        req.peer_addr().map(|a| a.ip()),
        header("x-forwarded-for"),
        header("x-real-ip"),
    );
    if let Some(ip) = client_ip {
        req.extensions_mut().insert(ClientIp(ip));
    }
    let client_ip = client_ip.map(|ip| ip.to_string());

    let mut res = next.call(req).await?;

    let status = res.status().as_u16();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let client = res
        .request()
        .extensions()
        .get::<ClientId>()
        .map(|c| c.0.clone());
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The client gets a fixed text for server-side failures; the cause goes here.
    if let Some(error) = res.response().error().filter(|_| status >= 500) {
        let cause = error.to_string();
        if status == 500 {
            slog::error!(logger, "request failed"; "http.status" => status, "error" => cause);
        } else {
            slog::warn!(logger, "request failed"; "http.status" => status, "error" => cause);
        }
    }
    slog::info!(logger, "request";
        "http.method" => method,
        "http.route" => route,
        "http.status" => status,
        "duration_ms" => format!("{duration_ms:.2}"),
        "client.id" => client,
        "client.ip" => client_ip,
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(res)
}
