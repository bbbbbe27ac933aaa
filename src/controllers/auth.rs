//! Bearer-token authentication of API clients against `API_TOKENS`, and the scope
//! each route needs (`write`, `read` or `admin`).

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, Error, HttpMessage, ResponseError, Route};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::settings::{ApiClientToken, Scope, Scopes};
use crate::state::AppState;
use crate::telemetry::ClientId;

pub struct ApiTokens(Vec<ApiClientToken>);

/// The client a request's token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub scopes: Scopes,
}

impl ApiTokens {
    pub fn new(tokens: Vec<ApiClientToken>) -> Self {
        ApiTokens(tokens)
    }

    /// The client owning `Authorization: Bearer <token>`. Every configured token
    /// is compared in constant time, so timing tells nothing about which matched.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Client> {
        let presented = authorization?.trim();
        let (scheme, token) = presented.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim().as_bytes();
        let mut owner = None;
        for candidate in &self.0 {
            if bool::from(candidate.token.expose().as_bytes().ct_eq(token)) {
                owner = Some(Client {
                    id: candidate.client_id.clone(),
                    scopes: candidate.scopes,
                });
            }
        }
        owner
    }
}

/// Middleware on every client route: `401` without a configured token; otherwise the
/// client's name (for the access line) and scopes (for `needs`) go into the request.
pub async fn require_api_token(
    state: web::Data<AppState>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.tokens.authenticate(authorization) {
        Some(client) => {
            req.extensions_mut().insert(ClientId(client.id));
            req.extensions_mut().insert(client.scopes);
            Ok(next.call(req).await?.map_into_left_body())
        }
        None => Ok(req
            .into_response(ApiError::Unauthorized.error_response())
            .map_into_right_body()),
    }
}

/// `route`, answering `403 insufficient_scope` to a client whose token lacks `scope`.
/// The check comes before anything else the route does (an `Idempotency-Key` is not
/// even claimed), so a client granted the scope later can retry with the same key.
pub fn needs(scope: Scope, route: Route) -> Route {
    route.wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| {
        check_scope(scope, req, next)
    }))
}

async fn check_scope(
    scope: Scope,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<EitherBody<BoxBody>>, Error> {
    // Only `require_api_token` puts scopes here; a route outside it holds none.
    let granted = req
        .extensions()
        .get::<Scopes>()
        .copied()
        .unwrap_or_default();
    if granted.contains(scope) {
        Ok(next.call(req).await?.map_into_left_body())
    } else {
        Ok(req
            .into_response(ApiError::InsufficientScope { needed: scope }.error_response())
            .map_into_right_body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Secret, LEGACY_SCOPES};

    fn tokens() -> ApiTokens {
        ApiTokens::new(vec![
            ApiClientToken {
                client_id: "forms".into(),
                scopes: LEGACY_SCOPES,
                legacy: true,
                token: Secret::new("aaaaaaaaaaaaaaaa"),
            },
            ApiClientToken {
                client_id: "partner".into(),
                scopes: Scopes::of(&[Scope::Read, Scope::Admin]),
                legacy: false,
                token: Secret::new("bbbbbbbbbbbbbbbb"),
            },
        ])
    }

    #[test]
    fn only_a_configured_bearer_token_identifies_a_client_and_its_scopes() {
        let t = tokens();
        let partner = t
            .authenticate(Some("Bearer bbbbbbbbbbbbbbbb"))
            .expect("partner");
        assert_eq!(partner.id, "partner");
        assert!(partner.scopes.contains(Scope::Admin) && !partner.scopes.contains(Scope::Write));
        let forms = t
            .authenticate(Some("bearer aaaaaaaaaaaaaaaa"))
            .expect("forms");
        assert_eq!((forms.id.as_str(), forms.scopes), ("forms", LEGACY_SCOPES));
        assert_eq!(t.authenticate(Some("Bearer aaaaaaaaaaaaaaa")), None);
        assert_eq!(t.authenticate(Some("Basic aaaaaaaaaaaaaaaa")), None);
        assert_eq!(t.authenticate(Some("aaaaaaaaaaaaaaaa")), None);
        assert_eq!(t.authenticate(None), None);
    }
}
