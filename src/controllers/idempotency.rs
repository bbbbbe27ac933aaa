//! The `Idempotency-Key` middleware for the POST routes: replays the first response
//! to a repeated request, refuses a reused key (422) or one still in use (409).

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpResponse, ResponseError};
use sha2::{Digest, Sha256};

use super::extract::read_limited;
use crate::domain::FieldError;
use crate::error::ApiError;
use crate::repositories::{KeyState, StoredResponse};
use crate::services::IdempotencyService;
use crate::state::AppState;
use crate::telemetry::{request_logger, ClientId};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

fn reply(req: ServiceRequest, error: ApiError) -> ServiceResponse<BoxBody> {
    req.into_response(error.error_response())
}

pub async fn idempotent(
    state: web::Data<AppState>,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let header = req
        .headers()
        .get(IDEMPOTENCY_KEY)
        .map(|v| v.to_str().map(str::to_owned));
    let key = match (req.method() == Method::POST, header) {
        (true, Some(Ok(key))) if IdempotencyService::valid_key(&key) => key,
        (true, Some(_)) => {
            let field = FieldError::new(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            );
            return Ok(reply(req, ApiError::Validation(vec![field])));
        }
        _ => return Ok(next.call(req).await?.map_into_boxed_body()),
    };
    // Keys are scoped to the API client the auth middleware identified.
    let client_id = req
        .extensions()
        .get::<ClientId>()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    let body = match read_limited(req.take_payload(), state.body_limit).await {
        Ok(body) => body.freeze(),
        Err(error) => return Ok(reply(req, error)),
    };
    let mut hasher = Sha256::new();
    hasher.update(req.method().as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(req.path().as_bytes());
    hasher.update(b"\n");
    hasher.update(&body);
    let hash: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let service = &state.idempotency;
    match service.begin(&client_id, &key, &hash).await {
        Err(error) => Ok(reply(req, error.into())),
        Ok(KeyState::Mismatch) => Ok(reply(req, ApiError::IdempotencyKeyReused)),
        Ok(KeyState::InProgress) => Ok(reply(req, ApiError::IdempotencyInProgress)),
        Ok(KeyState::Replay(stored)) => Ok(req.into_response(replayed(stored))),
        Ok(KeyState::Fresh) => {
            req.set_payload(Payload::from(body));
            let res = next.call(req).await?;
            let (http_req, response) = res.into_parts();
            let status = response.status();
            let text = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (content_type, location) = (text(header::CONTENT_TYPE), text(header::LOCATION));
            let (head, body) = response.into_parts();
            let bytes = to_bytes(body)
                .await
                .map_err(|_| ApiError::Internal("could not buffer the response".into()))?;
            let stored = StoredResponse {
                status: status.as_u16(),
                content_type,
                location,
                body: bytes.to_vec(),
            };
            if let Err(err) = service.finish(&client_id, &key, stored).await {
                // The client has its answer; a repeat will find the key abandoned later.
                slog::warn!(request_logger(&http_req, &state.logger),
                    "could not store the idempotent response"; "error" => err.to_string());
            }
            Ok(ServiceResponse::new(
                http_req,
                head.set_body(BoxBody::new(bytes)),
            ))
        }
    }
}

fn replayed(stored: StoredResponse) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    res.insert_header(("idempotent-replayed", "true"));
    if let Some(content_type) = stored.content_type {
        res.insert_header((header::CONTENT_TYPE, content_type));
    }
    if let Some(location) = stored.location {
        res.insert_header((header::LOCATION, location));
    }
    res.body(stored.body)
}
