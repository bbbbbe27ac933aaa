//! `POST /webhooks/amocrm/{secret}` (AmoCRM calls it) and the admin routes that
//! manage amosync's subscription, `GET|POST|DELETE /api/v1/amocrm/webhooks`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::extract::read_raw_body;
use super::problems::{AmoErrors, DeliveryErrors, SubscribeErrors, UnsubscribeErrors};
use crate::amo::AmoWebhook;
use crate::error::ApiError;
use crate::services::Subscribed;
use crate::state::AppState;

/// AmoCRM's webhook body as it is sent, form-encoded: PHP-style bracketed keys such as
/// `account[id]` or `contacts[add][0][name]`, each with a text value. A JSON object of
/// the same shape is accepted too.
pub struct WebhookForm;

impl utoipa::PartialSchema for WebhookForm {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "AmoCRM's form-encoded (v2) payload: bracketed keys such as `account[id]` or \
                 `contacts[add][0][name]`, each with a text value. At least one pair; every \
                 bracket closes and a key has at most 31 bracket groups. A JSON object of \
                 the same shape is accepted too.",
            ))
            .min_properties(Some(1))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(crate::webhooks::WEBHOOK_KEY_PATTERN)),
            ))
            .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
            .into()
    }
}

impl ToSchema for WebhookForm {}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAccepted {
    /// Always `accepted`.
    pub status: String,
    pub inbox_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// Whether amosync's own hook is subscribed.
    pub subscribed: bool,
    /// amosync's own hook (none or one), its secret masked. Other integrations' hooks
    /// carry their own secrets and are never shown.
    pub webhooks: Vec<HookBody>,
}

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
        DeliveryErrors,
    )
)]
pub async fn receive_webhook(
    state: web::Data<AppState>,
    secret: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let receiver = &state.receiver;
    if !receiver.knows(&secret) {
        return Err(ApiError::NotFound);
    }
    let body = read_raw_body(&req, payload.into_inner()).await?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let id = receiver.accept(&secret, content_type, body).await?;
    Ok(HttpResponse::Ok().json(WebhookAccepted {
        status: "accepted".into(),
        inbox_id: id,
    }))
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

#[utoipa::path(
    get, path = "/api/v1/amocrm/webhooks", tag = "webhooks",
    summary = "amosync's own webhook in AmoCRM, its secret masked (no other integration's hook)",
    responses(
        (status = 200, description = "Webhooks in AmoCRM", body = WebhookList),
        AmoErrors,
    ),
)]
pub async fn list_webhooks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let ours = state.subscription.ours().await?;
    let subscribed = ours.is_some();
    let hooks: Vec<_> = ours
        .into_iter()
        .map(|h| masked(h, state.webhook_secret.as_deref()))
        .collect();
    Ok(HttpResponse::Ok().json(WebhookList {
        subscribed,
        webhooks: hooks,
    }))
}

#[utoipa::path(
    post, path = "/api/v1/amocrm/webhooks", tag = "webhooks",
    summary = "Subscribe amosync's webhook (no-op when already subscribed)",
    responses(
        (status = 201, description = "Subscribed now", body = HookBody),
        (status = 200, description = "Was already subscribed", body = HookBody),
        SubscribeErrors, AmoErrors,
    ),
)]
pub async fn subscribe_webhook(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let secret = state.webhook_secret.as_deref();
    Ok(match state.subscription.subscribe().await? {
        Subscribed::Already(hook) => HttpResponse::Ok().json(masked(hook, secret)),
        Subscribed::Created(hook) => HttpResponse::Created().json(masked(hook, secret)),
    })
}

#[utoipa::path(
    delete, path = "/api/v1/amocrm/webhooks", tag = "webhooks",
    summary = "Unsubscribe amosync's webhook",
    responses(
        (status = 204, description = "Unsubscribed (or was not subscribed)"),
        UnsubscribeErrors, AmoErrors,
    ),
)]
pub async fn unsubscribe_webhook(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.subscription.unsubscribe().await?;
    Ok(HttpResponse::NoContent().finish())
}
