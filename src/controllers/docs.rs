//! `GET /openapi.json` (the generated OpenAPI 3.1 document) and `GET /docs`, a page
//! that renders it in the browser with no CDN or download: the HTML is in the binary.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// Renders `/openapi.json` with a few lines of inline script: no third-party UI bundle
/// to vendor or fetch, so the page works on an offline host.
const DOCS_PAGE: &str = include_str!("docs/index.html");

#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(state.api_description.clone())
}

#[utoipa::path(
    get, path = "/docs", tag = "operations",
    responses((status = 200, description = "A browsable rendering of /openapi.json", content_type = "text/html"))
)]
pub async fn docs_ui() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // The page loads nothing but its own inline script and /openapi.json.
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ))
        .body(DOCS_PAGE)
}

#[utoipa::path(
    get, path = "/docs/", tag = "operations",
    responses((status = 308, description = "To /docs, the page's one address",
        headers(("Location" = String, description = "/docs"))))
)]
/// `/docs/` is what people type after seeing `/docs`; a permanent redirect keeps one
/// address for the page (and for its relative `/openapi.json` fetch).
pub async fn docs_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs"))
        .finish()
}
