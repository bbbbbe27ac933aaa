//! `POST /webhooks/amocrm/{secret}` (AmoCRM calls it) and the admin routes that
//! manage amosync's subscription, `GET|POST|DELETE /api/v1/amocrm/webhooks`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::json;

use super::extract::RawBody;
use crate::amo::AmoWebhook;
use crate::error::ApiError;
use crate::services::{Subscribed, WebhookReceiver, WebhookSubscription};

/// Stores the delivery and answers 200 at once; a wrong secret is a plain 404, so
/// the URL reveals nothing, and nothing is stored.
pub async fn receive_webhook(
    receiver: web::Data<WebhookReceiver>,
    secret: web::Path<String>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let id = receiver.accept(&secret, content_type, body.0).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "accepted", "inbox_id": id })))
}

#[derive(Serialize)]
struct HookBody {
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

pub async fn list_webhooks(
    subscription: web::Data<WebhookSubscription>,
    secret: web::Data<WebhookSecret>,
) -> Result<HttpResponse, ApiError> {
    let (hooks, subscribed) = subscription.list().await?;
    let hooks: Vec<_> = hooks
        .into_iter()
        .map(|h| masked(h, secret.0.as_deref()))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "subscribed": subscribed, "webhooks": hooks })))
}

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

pub async fn unsubscribe_webhook(
    subscription: web::Data<WebhookSubscription>,
) -> Result<HttpResponse, ApiError> {
    subscription.unsubscribe().await?;
    Ok(HttpResponse::NoContent().finish())
}
