//! `ApiError`: the one place where failures become HTTP responses, always
//! `application/problem+json` (RFC 9457) with a stable `code`.
//!
//! 5xx bodies never carry internal text; the cause is logged once, where the
//! error is turned into a response.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::amo::AmoError;
use crate::domain::FieldError;
use crate::services::ServiceError;
use crate::settings::Scope;
use crate::webhooks::PayloadError;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: the body or query parsed but some fields are wrong.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 400: the body is not JSON at all.
    #[error("malformed request body: {0}")]
    MalformedBody(String),
    /// 413: the body is larger than the configured limit.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415: a body that does not claim to be JSON.
    #[error("unsupported content type")]
    UnsupportedMediaType,
    /// 401: no bearer token, or not one of `API_TOKENS`.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("resource not found")]
    NotFound,
    /// 403: the request is understood but not allowed (e.g. another AmoCRM account).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 403: the token is valid but lacks the scope this route needs.
    #[error("the token lacks the {needed} scope")]
    InsufficientScope { needed: Scope },
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    /// 422: an `Idempotency-Key` already used for a different request.
    #[error("idempotency key reused for another request")]
    IdempotencyKeyReused,
    /// 409: the first request with this `Idempotency-Key` is still running.
    #[error("idempotency key in use")]
    IdempotencyInProgress,
    /// 409 on the drop-in routes: the record already existed.
    #[error("already exists")]
    AlreadyExists { id: i64 },
    /// 503: AmoCRM could not be reached or refused; the accepted row stays pending.
    #[error("AmoCRM unavailable: {error}")]
    AmoUnavailable {
        error: AmoError,
        pending_id: Option<i64>,
    },
    /// 502: AmoCRM understood the request and refused its content.
    #[error("AmoCRM rejected the record: {error}")]
    AmoRejected {
        error: AmoError,
        pending_id: Option<i64>,
    },
    /// 503: another worker is creating the same record right now.
    #[error("record {id} is being synced by another worker")]
    SyncInProgress { id: i64 },
    /// 503: the database is unreachable or the pool is exhausted.
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    /// 409: the service lacks the configuration this request needs.
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// 503 from `/ready`.
    #[error("not ready: {0}")]
    NotReady(String),
    /// 500: a bug; the details are in the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Every error body: RFC 9457 problem details plus a stable `code`. Published as
/// `ProblemDetails`, the schema every error response of the API description names.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ProblemDetails)]
pub struct Problem<'a> {
    /// `urn:amosync:problem:{code}`.
    #[serde(rename = "type")]
    kind: String,
    #[schema(value_type = String)]
    title: &'a str,
    status: u16,
    detail: String,
    /// Stable, snake_case: `validation_failed`, `not_found`, `unauthorized`, …
    #[schema(value_type = String)]
    code: &'a str,
    /// 422 only: each wrong field and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>)]
    errors: Option<&'a [FieldError]>,
    /// `409 already_exists` and `502 amocrm_rejected`: the stored record's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
}

impl ApiError {
    /// The stable machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::MalformedBody(_) => "malformed_body",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound => "not_found",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::InsufficientScope { .. } => "insufficient_scope",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::AlreadyExists { .. } => "already_exists",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::IdempotencyInProgress => "idempotency_in_progress",
            ApiError::AmoUnavailable { error, .. } => match error {
                AmoError::Unauthorized => "amocrm_unauthorized",
                AmoError::PaymentRequired | AmoError::Forbidden => "amocrm_account_blocked",
                AmoError::RateLimited { .. } => "amocrm_rate_limited",
                _ => "amocrm_unavailable",
            },
            ApiError::AmoRejected { .. } => "amocrm_rejected",
            ApiError::SyncInProgress { .. } => "sync_in_progress",
            ApiError::DatabaseUnavailable(_) => "database_unavailable",
            ApiError::NotConfigured(_) => "not_configured",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "Invalid input",
            ApiError::MalformedBody(_) => "Malformed request body",
            ApiError::PayloadTooLarge { .. } => "Request body too large",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::NotFound => "Not found",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::InsufficientScope { .. } => "Insufficient scope",
            ApiError::MethodNotAllowed { .. } => "Method not allowed",
            ApiError::AlreadyExists { .. } => "Already exists",
            ApiError::IdempotencyKeyReused => "Idempotency key reused",
            ApiError::IdempotencyInProgress => "Request in progress",
            ApiError::AmoUnavailable { .. } => "AmoCRM unavailable",
            ApiError::AmoRejected { .. } => "AmoCRM rejected the record",
            ApiError::SyncInProgress { .. } => "Sync in progress",
            ApiError::DatabaseUnavailable(_) => "Database unavailable",
            ApiError::NotConfigured(_) => "Not configured",
            ApiError::NotReady(_) => "Not ready",
            ApiError::Internal(_) => "Internal error",
        }
    }

    /// What the client may read. Internal causes stay in the log.
    fn detail(&self) -> String {
        match self {
            ApiError::Validation(errors) => format!("{} field(s) are invalid", errors.len()),
            ApiError::MalformedBody(why) => why.clone(),
            ApiError::PayloadTooLarge { limit } => {
                format!("the body must not exceed {limit} bytes")
            }
            ApiError::UnsupportedMediaType => "send the body as application/json".into(),
            ApiError::Unauthorized => {
                "send Authorization: Bearer <token> with a configured API token".into()
            }
            ApiError::NotFound => "no such resource".into(),
            ApiError::Forbidden(why) => why.clone(),
            ApiError::InsufficientScope { needed } => format!(
                "this token lacks the `{needed}` scope; an operator grants it in API_TOKENS \
                 (name:scope1+scope2:token)"
            ),
            ApiError::MethodNotAllowed { .. } => {
                "this method is not supported on this resource".into()
            }
            ApiError::AlreadyExists { id } => format!("the record already exists with id {id}"),
            ApiError::IdempotencyKeyReused => {
                "this Idempotency-Key was used for a different request; use a new key".into()
            }
            ApiError::IdempotencyInProgress => {
                "the first request with this Idempotency-Key is still running; retry shortly".into()
            }
            ApiError::AmoUnavailable { error, pending_id } => {
                let kept = pending_id
                    .map(|id| format!("; the record is kept as pending with id {id}"))
                    .unwrap_or_default();
                format!(
                    "AmoCRM could not complete the request ({}){kept}",
                    error.kind()
                )
            }
            ApiError::AmoRejected { error, .. } => error.to_string(),
            ApiError::SyncInProgress { id } => {
                format!("record {id} is being created in AmoCRM; retry shortly")
            }
            ApiError::DatabaseUnavailable(_) => "the database is unavailable; retry shortly".into(),
            ApiError::NotConfigured(why) | ApiError::NotReady(why) => why.clone(),
            ApiError::Internal(_) => "an unexpected error occurred; it has been logged".into(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::AmoUnavailable {
                error:
                    AmoError::RateLimited {
                        retry_after: Some(d),
                    },
                ..
            } => Some(d.as_secs().max(1)),
            ApiError::AmoUnavailable { .. } => Some(5),
            ApiError::SyncInProgress { .. }
            | ApiError::DatabaseUnavailable(_)
            | ApiError::IdempotencyInProgress => Some(1),
            _ => None,
        }
    }

    fn id(&self) -> Option<i64> {
        match self {
            ApiError::AlreadyExists { id } | ApiError::SyncInProgress { id } => Some(*id),
            ApiError::AmoUnavailable { pending_id, .. }
            | ApiError::AmoRejected { pending_id, .. } => *pending_id,
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) | ApiError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::AlreadyExists { .. }
            | ApiError::NotConfigured(_)
            | ApiError::IdempotencyInProgress => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::AmoRejected { .. } => StatusCode::BAD_GATEWAY,
            ApiError::AmoUnavailable { .. }
            | ApiError::SyncInProgress { .. }
            | ApiError::DatabaseUnavailable(_)
            | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let errors = match self {
            ApiError::Validation(errors) => Some(errors.as_slice()),
            _ => None,
        };
        let body = Problem {
            kind: format!("urn:amosync:problem:{}", self.code()),
            title: self.title(),
            status: status.as_u16(),
            detail: self.detail(),
            code: self.code(),
            errors,
            id: self.id(),
        };
        let mut res = HttpResponse::build(status);
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Some(secs) = self.retry_after_secs() {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let ApiError::MethodNotAllowed { allow } = self {
            res.insert_header((header::ALLOW, allow.as_str()));
        }
        match self {
            ApiError::Unauthorized => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            // RFC 6750 §3.1: the error and the scope the request needs.
            ApiError::InsufficientScope { needed } => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(r#"Bearer error="insufficient_scope", scope="{needed}""#),
                ));
            }
            _ => {}
        }
        res.body(serde_json::to_string(&body).unwrap_or_default())
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid(errors) => ApiError::Validation(errors),
            ServiceError::NotFound => ApiError::NotFound,
            ServiceError::Amo { error, pending_id } if error.is_rejection() => {
                ApiError::AmoRejected { error, pending_id }
            }
            ServiceError::Amo { error, pending_id } => {
                ApiError::AmoUnavailable { error, pending_id }
            }
            ServiceError::SyncInProgress { id } => ApiError::SyncInProgress { id },
            // The cause's whole chain goes to the one log line a 5xx gets.
            ServiceError::DatabaseUnavailable(why) => {
                ApiError::DatabaseUnavailable(crate::cause::chain(&why))
            }
            ServiceError::Payload(PayloadError::UnsupportedContentType(_)) => {
                ApiError::UnsupportedMediaType
            }
            ServiceError::Payload(PayloadError::Malformed(why)) => ApiError::MalformedBody(why),
            ServiceError::NotConfigured(why) => ApiError::NotConfigured(why),
            ServiceError::WrongAccount => {
                ApiError::Forbidden("the delivery comes from another AmoCRM account".into())
            }
            ServiceError::Internal(why) => ApiError::Internal(crate::cause::chain(&why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use std::time::Duration;

    async fn render(err: ApiError) -> (u16, serde_json::Value, Option<String>) {
        let res = err.error_response();
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(content_type.as_deref(), Some(PROBLEM_JSON));
        let retry = res
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = to_bytes(res.into_body()).await.expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"), retry)
    }

    #[actix_web::test]
    async fn validation_errors_list_the_wrong_fields() {
        let (status, body, _) =
            render(ApiError::Validation(vec![FieldError::new("phone", "bad")])).await;
        assert_eq!(status, 422);
        assert_eq!(body["code"], "validation_failed");
        assert_eq!(body["errors"][0]["field"], "phone");
    }

    #[actix_web::test]
    async fn each_amo_failure_maps_to_its_own_status_and_code() {
        let cases = [
            (AmoError::Timeout, 503, "amocrm_unavailable"),
            (AmoError::Server { status: 502 }, 503, "amocrm_unavailable"),
            (
                AmoError::RateLimited {
                    retry_after: Some(Duration::from_secs(7)),
                },
                503,
                "amocrm_rate_limited",
            ),
            (AmoError::Unauthorized, 503, "amocrm_unauthorized"),
            (AmoError::Forbidden, 503, "amocrm_account_blocked"),
            (AmoError::PaymentRequired, 503, "amocrm_account_blocked"),
            (
                AmoError::Validation { issues: vec![] },
                502,
                "amocrm_rejected",
            ),
        ];
        for (error, want_status, want_code) in cases {
            let api: ApiError = ServiceError::Amo {
                error,
                pending_id: Some(9),
            }
            .into();
            let (status, body, _) = render(api).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (want_status, Some(want_code))
            );
            assert_eq!(body["id"], 9);
        }
    }

    #[actix_web::test]
    async fn rate_limits_pass_retry_after_on_and_internals_stay_hidden() {
        let api: ApiError = ServiceError::Amo {
            error: AmoError::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            },
            pending_id: None,
        }
        .into();
        let (_, _, retry) = render(api).await;
        assert_eq!(retry.as_deref(), Some("7"));
        let (status, body, _) = render(ApiError::Internal("secret stack trace".into())).await;
        assert_eq!(status, 500);
        assert!(!body.to_string().contains("secret stack trace"));
    }
}
