//! HTTP: routes and thin handlers. Handlers parse input into domain types, call
//! one service method and shape the response; errors go through `ApiError`.

mod auth;
pub mod compression;
pub(crate) mod contacts;
pub(crate) mod docs;
mod extract;
pub(crate) mod headers;
pub(crate) mod health;
mod idempotency;
pub(crate) mod leads;
pub(crate) mod legacy;
pub(crate) mod metrics;
pub(crate) mod sync_jobs;
pub(crate) mod webhooks;

pub use auth::ApiTokens;
pub use extract::{BodyLimit, WebhookBodyLimit};
pub use health::AmoStatus;
pub use metrics::MetricsToken;
pub use webhooks::{HookBody, WebhookSecret};

use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse};

use crate::domain::FieldError;
use crate::error::ApiError;
use crate::settings::Scope::{Admin, Read, Write};
use auth::needs;

/// Every route of the service.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
        .app_data(web::QueryConfig::default().error_handler(|err, _| {
            ApiError::Validation(vec![FieldError::new("query", err.to_string())]).into()
        }))
        .service(
            web::resource("/health")
                .route(web::get().to(health::health))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/ready")
                .route(web::get().to(health::ready))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/metrics")
                .route(web::get().to(metrics::get_metrics))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/openapi.json")
                .route(web::get().to(docs::openapi_json))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/docs")
                .route(web::get().to(docs::docs_ui))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/docs/")
                .route(web::get().to(docs::docs_slash))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/webhooks/amocrm/{secret}")
                .route(web::post().to(webhooks::receive_webhook))
                .default_service(not_allowed("POST")),
        )
        .service(
            web::scope("/api/v1")
                .wrap(from_fn(auth::require_api_token))
                .service(
                    web::resource("/contacts")
                        .route(needs(
                            Write,
                            idempotent(web::post().to(contacts::create_contact)),
                        ))
                        .route(needs(Read, web::get().to(contacts::list_contacts)))
                        .default_service(not_allowed("POST, GET")),
                )
                .service(
                    web::resource("/contacts/{id}")
                        .route(needs(Read, web::get().to(contacts::get_contact)))
                        .default_service(not_allowed("GET")),
                )
                .service(
                    web::resource("/leads")
                        .route(needs(Write, idempotent(web::post().to(leads::create_lead))))
                        .route(needs(Read, web::get().to(leads::list_leads)))
                        .default_service(not_allowed("POST, GET")),
                )
                .service(
                    web::resource("/leads/{id}")
                        .route(needs(Read, web::get().to(leads::get_lead)))
                        .default_service(not_allowed("GET")),
                )
                .service(
                    web::resource("/sync/jobs")
                        .route(needs(Admin, web::get().to(sync_jobs::list_jobs)))
                        .default_service(not_allowed("GET")),
                )
                .service(
                    web::resource("/sync/jobs/{id}/retry")
                        .route(needs(
                            Admin,
                            idempotent(web::post().to(sync_jobs::retry_job)),
                        ))
                        .default_service(not_allowed("POST")),
                )
                .service(
                    web::resource("/amocrm/webhooks")
                        .route(needs(Admin, web::get().to(webhooks::list_webhooks)))
                        .route(needs(
                            Admin,
                            idempotent(web::post().to(webhooks::subscribe_webhook)),
                        ))
                        .route(needs(
                            Admin,
                            web::delete().to(webhooks::unsubscribe_webhook),
                        ))
                        .default_service(not_allowed("GET, POST, DELETE")),
                )
                .default_service(web::to(not_found)),
        )
        // The earlier Node service's routes: creating, so `write`.
        .service(
            web::scope("/contacts")
                .wrap(from_fn(auth::require_api_token))
                .service(
                    web::resource("/create")
                        .route(needs(
                            Write,
                            idempotent(web::post().to(legacy::create_contact_legacy)),
                        ))
                        .default_service(not_allowed("POST")),
                ),
        )
        .service(
            web::scope("/leads")
                .wrap(from_fn(auth::require_api_token))
                .service(
                    web::resource("/create")
                        .route(needs(
                            Write,
                            idempotent(web::post().to(legacy::create_lead_legacy)),
                        ))
                        .default_service(not_allowed("POST")),
                ),
        );
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// A resource's answer to other methods: 405 naming the ones it has (`Allow`, RFC 9110).
fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(
        move || async move { Err::<HttpResponse, ApiError>(ApiError::MethodNotAllowed { allow }) },
    )
}

/// A POST route with `Idempotency-Key` replays (`idempotency::idempotent`), inside
/// the scope check: a key is claimed only by a client allowed to make the request.
fn idempotent(route: actix_web::Route) -> actix_web::Route {
    route.wrap(from_fn(idempotency::idempotent))
}
