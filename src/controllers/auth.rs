//! Bearer-token authentication of API clients against `API_TOKENS`.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, ResponseError};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::settings::ApiClientToken;
use crate::telemetry::ClientId;

pub struct ApiTokens(Vec<ApiClientToken>);

impl ApiTokens {
    pub fn new(tokens: Vec<ApiClientToken>) -> Self {
        ApiTokens(tokens)
    }

    /// The client id owning `Authorization: Bearer <token>`. Every configured token
    /// is compared in constant time, so timing tells nothing about which matched.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<String> {
        let presented = authorization?.trim();
        let (scheme, token) = presented.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim().as_bytes();
        let mut owner = None;
        for candidate in &self.0 {
            if bool::from(candidate.token.expose().as_bytes().ct_eq(token)) {
                owner = Some(candidate.client_id.clone());
            }
        }
        owner
    }
}

pub async fn require_api_token(
    tokens: web::Data<ApiTokens>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match tokens.authenticate(authorization) {
        Some(client_id) => {
            req.extensions_mut().insert(ClientId(client_id));
            Ok(next.call(req).await?.map_into_left_body())
        }
        None => Ok(req
            .into_response(ApiError::Unauthorized.error_response())
            .map_into_right_body()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Secret;

    fn tokens() -> ApiTokens {
        ApiTokens::new(vec![
            ApiClientToken {
                client_id: "forms".into(),
                token: Secret::new("aaaaaaaaaaaaaaaa"),
            },
            ApiClientToken {
                client_id: "partner".into(),
                token: Secret::new("bbbbbbbbbbbbbbbb"),
            },
        ])
    }

    #[test]
    fn only_a_configured_bearer_token_identifies_a_client() {
        let t = tokens();
        assert_eq!(
            t.authenticate(Some("Bearer bbbbbbbbbbbbbbbb")).as_deref(),
            Some("partner")
        );
        assert_eq!(
            t.authenticate(Some("bearer aaaaaaaaaaaaaaaa")).as_deref(),
            Some("forms")
        );
        assert_eq!(t.authenticate(Some("Bearer aaaaaaaaaaaaaaa")), None);
        assert_eq!(t.authenticate(Some("Basic aaaaaaaaaaaaaaaa")), None);
        assert_eq!(t.authenticate(Some("aaaaaaaaaaaaaaaa")), None);
        assert_eq!(t.authenticate(None), None);
    }
}
