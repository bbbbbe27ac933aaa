//! Headers on every answer: `X-Content-Type-Options: nosniff` (a browser must not
//! guess a type other than the one sent, e.g. render a JSON body as HTML) and
//! `Cache-Control: no-store` (records are personal data; no proxy or browser cache
//! may keep them) unless the handler chose a cache policy itself.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
use actix_web::middleware::Next;
use actix_web::Error;

pub async fn protective(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(res)
}
