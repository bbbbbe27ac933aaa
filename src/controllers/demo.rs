//! A demo answers internal networks only.
//!
//! `AMOSYNC_DEMO=true` lets amosync run with the API token and webhook secret this
//! repository publishes. The demo stack still publishes nginx's port on every
//! interface, so without this anyone who can reach the host could post records,
//! read every contact, unsubscribe the webhook or forge deliveries with those values.
//! Here every request from outside loopback, private and link-local networks (the
//! client's address as `TRUSTED_PROXIES` allows it to be read from `X-Forwarded-For`)
//! gets `403` before any route, token or body is looked at.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, ResponseError};

use crate::domain::is_internal;
use crate::error::ApiError;
use crate::settings::DEMO_SWITCH;
use crate::state::AppState;
use crate::telemetry::ClientIp;

/// Middleware: in demo mode, `403 forbidden` for clients outside the internal networks.
pub async fn internal_only(
    state: web::Data<AppState>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let client = req.extensions().get::<ClientIp>().map(|ip| ip.0);
    if state.exposure.demo && !client.is_some_and(|ip| is_internal(&ip)) {
        let refusal = ApiError::Forbidden(format!(
            "this is a demo ({DEMO_SWITCH}=true): it answers internal networks only; \
             set your own API_TOKENS and WEBHOOK_SECRET and unset {DEMO_SWITCH} to serve others"
        ));
        return Ok(req
            .into_response(refusal.error_response())
            .map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}
