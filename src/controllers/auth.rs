//! Bearer-token authentication of API clients against `API_TOKENS`, and the scope
//! each route needs (`write`, `read` or `admin`).

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, Error, HttpMessage, ResponseError, Route};

use crate::error::ApiError;
use crate::settings::{Scope, Scopes};
use crate::state::AppState;
use crate::telemetry::ClientId;

/// Middleware on every client route: `401` without a configured token; otherwise the
/// client's name (for the access line) and scopes (for `needs`) go into the request.
pub async fn require_api_token(
    state: web::Data<AppState>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.tokens.authenticate(authorization) {
        Some(client) => {
            req.extensions_mut().insert(ClientId(client.id));
            req.extensions_mut().insert(client.scopes);
            Ok(next.call(req).await?.map_into_left_body())
        }
        None => Ok(req
            .into_response(ApiError::Unauthorized.error_response())
            .map_into_right_body()),
    }
}

/// `route`, answering `403 insufficient_scope` to a client whose token lacks `scope`.
/// The check comes before anything else the route does (an `Idempotency-Key` is not
/// even claimed), so a client granted the scope later can retry with the same key.
pub fn needs(scope: Scope, route: Route) -> Route {
    route.wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| {
        check_scope(scope, req, next)
    }))
}

async fn check_scope(
    scope: Scope,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<EitherBody<BoxBody>>, Error> {
    // Only `require_api_token` puts scopes here; a route outside it holds none.
    let granted = req
        .extensions()
        .get::<Scopes>()
        .copied()
        .unwrap_or_default();
    if granted.contains(scope) {
        Ok(next.call(req).await?.map_into_left_body())
    } else {
        Ok(req
            .into_response(ApiError::InsufficientScope { needed: scope }.error_response())
            .map_into_right_body())
    }
}
