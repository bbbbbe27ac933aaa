//! gzip only where it pays: responses under `MIN_COMPRESSED` bytes (every
//! acknowledgement, single records, problem documents) go out as they are. Setting
//! up a deflate stream costs about 300 KB of zeroed tables per response, far more
//! work than a few hundred bytes could save, and a webhook flood is all such replies.
//!
//! actix's `Compress` leaves a response alone when it already names an encoding, so
//! the inner middleware marks small ones `identity` and the outer one removes the
//! mark again before the response leaves.

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, CONTENT_ENCODING};
use actix_web::middleware::Next;
use actix_web::Error;

const MIN_COMPRESSED: u64 = 1024;

/// Inside `Compress`: marks responses of a known, small size as not to be encoded.
pub async fn skip_small(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut res = next.call(req).await?;
    if let BodySize::Sized(size) = res.response().body().size() {
        if size < MIN_COMPRESSED && !res.headers().contains_key(CONTENT_ENCODING) {
            res.headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
        }
    }
    Ok(res)
}

/// Outside `Compress`: `identity` is not a content coding to send (RFC 9110 §8.4.1).
pub async fn unmark(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut res = next.call(req).await?;
    if res
        .headers()
        .get(CONTENT_ENCODING)
        .is_some_and(|v| v == "identity")
    {
        res.headers_mut().remove(CONTENT_ENCODING);
    }
    Ok(res)
}
