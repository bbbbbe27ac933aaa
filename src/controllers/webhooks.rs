//! `POST /webhooks/amocrm/{secret}` (AmoCRM calls it) and the admin routes that
//! manage amosync's subscription, `GET|POST|DELETE /api/v1/amocrm/webhooks`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::json;

use super::extract::read_raw_body;
use crate::amo::AmoWebhook;
use crate::error::ApiError;
use crate::openapi::{ProblemDetails, WebhookAccepted, WebhookForm, WebhookList};
use crate::services::{Subscribed, WebhookReceiver, WebhookSubscription};

/// Stores the delivery and answers 200 at once; a wrong secret is a plain 404, so
/// the URL reveals nothing, and nothing is stored. The secret is checked before a
/// byte of the body is read: without it nobody makes amosync read or wait for one.
#[utoipa::path(
    post, path = "/webhooks/amocrm/{secret}", tag = "webhooks",
    summary = "AmoCRM's webhook delivery: stored, then applied in the background",
    params(("secret" = String, Path, description = "WEBHOOK_SECRET")),
    request_body(content = WebhookForm, content_type = "application/x-www-form-urlencoded", description = "AmoCRM's form-encoded (v2) payload; JSON is accepted too"),
    responses(
        (status = 200, description = "Stored", body = WebhookAccepted),
        (status = 400, description = "Empty, or not a payload (invalid JSON, keys nested too deep or in conflict)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Neither form-encoded nor JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "From another AmoCRM account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "Wrong secret, or webhooks are off", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Larger than WEBHOOK_MAX_BODY_BYTES", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable (Retry-After)", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn receive_webhook(
    receiver: web::Data<WebhookReceiver>,
    secret: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if !receiver.knows(&secret) {
        return Err(ApiError::NotFound);
    }
    let body = read_raw_body(&req, payload.into_inner()).await?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let id = receiver.accept(&secret, content_type, body).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "accepted", "inbox_id": id })))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HookBody {
    id: i64,
    /// The secret path segment is masked: API clients need not know it.
    destination: String,
    settings: Vec<String>,
    disabled: bool,
}

fn masked(hook: AmoWebhook, secret: Option<&str>) -> HookBody {
    let destination = match secret {
        Some(secret) if !secret.is_empty() => hook.destination.replace(secret, "***"),
        _ => hook.destination,
    };
    HookBody {
        id: hook.id,
        destination,
        settings: hook.settings,
        disabled: hook.disabled,
    }
}

/// The webhook secret, for masking it in admin responses.
#[derive(Clone)]
pub struct WebhookSecret(pub Option<String>);

#[utoipa::path(
    get, path = "/api/v1/amocrm/webhooks", tag = "webhooks",
    summary = "amosync's own webhook in AmoCRM, its secret masked (no other integration's hook)",
    responses(
        (status = 200, description = "Webhooks in AmoCRM", body = WebhookList),
        (status = 401, description = "Missing or unknown bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the `admin` scope (insufficient_scope)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "AmoCRM unavailable, rate-limited, or refusing access (amocrm_*), or the database is down", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn list_webhooks(
    subscription: web::Data<WebhookSubscription>,
    secret: web::Data<WebhookSecret>,
) -> Result<HttpResponse, ApiError> {
    let ours = subscription.ours().await?;
    let subscribed = ours.is_some();
    let hooks: Vec<_> = ours
        .into_iter()
        .map(|h| masked(h, secret.0.as_deref()))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "subscribed": subscribed, "webhooks": hooks })))
}

#[utoipa::path(
    post, path = "/api/v1/amocrm/webhooks", tag = "webhooks",
    summary = "Subscribe amosync's webhook (no-op when already subscribed)",
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response to repeats for 24 h", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Subscribed now", body = HookBody),
        (status = 200, description = "Was already subscribed", body = HookBody),
        (status = 401, description = "Missing or unknown bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the `admin` scope (insufficient_scope)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "SERVER_URL or WEBHOOK_SECRET not set (not_configured), or Idempotency-Key in flight", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "AmoCRM unavailable, rate-limited, or refusing access (amocrm_*), or the database is down", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn subscribe_webhook(
    subscription: web::Data<WebhookSubscription>,
    secret: web::Data<WebhookSecret>,
) -> Result<HttpResponse, ApiError> {
    Ok(match subscription.subscribe().await? {
        Subscribed::Already(hook) => HttpResponse::Ok().json(masked(hook, secret.0.as_deref())),
        Subscribed::Created(hook) => {
            HttpResponse::Created().json(masked(hook, secret.0.as_deref()))
        }
    })
}

#[utoipa::path(
    delete, path = "/api/v1/amocrm/webhooks", tag = "webhooks",
    summary = "Unsubscribe amosync's webhook",
    responses(
        (status = 204, description = "Unsubscribed (or was not subscribed)"),
        (status = 401, description = "Missing or unknown bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the `admin` scope (insufficient_scope)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "SERVER_URL or WEBHOOK_SECRET not set (not_configured)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "AmoCRM unavailable, rate-limited, or refusing access (amocrm_*), or the database is down", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn unsubscribe_webhook(
    subscription: web::Data<WebhookSubscription>,
) -> Result<HttpResponse, ApiError> {
    subscription.unsubscribe().await?;
    Ok(HttpResponse::NoContent().finish())
}
