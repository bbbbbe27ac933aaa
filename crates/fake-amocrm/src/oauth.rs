//! OAuth 2.0 as AmoCRM runs it: `POST /oauth2/access_token` and the bearer check of `/api/v4`.
//!
//! The endpoint takes JSON or form bodies for the `authorization_code` and `refresh_token`
//! grants and checks the integration's client id, secret and redirect URI. Access tokens are
//! JWT-shaped, with `exp`, `iat`, `account_id` and `api_domain` claims. Refresh tokens are
//! single-use: a refresh retires the old refresh token at once and lets the old access token
//! live only a short grace period; sending a retired refresh token again gets 401 "Token has
//! been revoked". Long-lived tokens from the configuration never expire.

use std::collections::HashMap;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::records::now;
use crate::state::Shared;
use crate::tokens::RefreshToken;
use crate::wire::respond;

const OAUTH_PROBLEM: &str = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson";
const BAD_REQUEST_TITLE: &str = "Некорректный запрос";
const BAD_PARAMS: &str = "В запросе отсутствует ряд параметров или параметры невалидны";

/// Whether `Authorization` carries a long-lived or a live OAuth access token.
pub(crate) fn bearer_ok(shared: &Shared, header: Option<&str>) -> bool {
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    if shared.config.long_lived_tokens.iter().any(|t| t == token) {
        return true;
    }
    shared.lock().tokens.is_live(token, Instant::now())
}

/// The body of AmoCRM's OAuth errors, keys in the order AmoCRM writes them.
fn oauth_problem(status: u16, hint: &str) -> HttpResponse {
    let body = json!({"hint": hint, "title": BAD_REQUEST_TITLE, "type": OAUTH_PROBLEM,
        "status": status, "detail": BAD_PARAMS});
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let text = format!(
        "{{\"hint\":{},\"title\":{},\"type\":{},\"status\":{status},\"detail\":{}}}",
        body["hint"], body["title"], body["type"], body["detail"]
    );
    respond(code, "application/problem+json", text)
}

/// The token request's fields, from a JSON object or a form body.
fn fields(body: &[u8]) -> HashMap<String, String> {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        let text = |v: Value| match v {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        return map
            .into_iter()
            .filter_map(|(k, v)| Some((k, text(v)?)))
            .collect();
    }
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// `POST /oauth2/access_token`.
pub(crate) fn token_endpoint(shared: &Shared, body: &[u8]) -> HttpResponse {
    let f = fields(body);
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let config = &shared.config;
    if field("client_id") != config.client_id || field("client_secret") != config.client_secret {
        return oauth_problem(400, "Client authentication failed");
    }
    if field("redirect_uri") != config.redirect_uri {
        return oauth_problem(400, "Check the `redirect_uri` parameter");
    }
    let mut state = shared.lock();
    let tokens = &mut state.tokens;
    match field("grant_type") {
        "authorization_code" => {
            let code = field("code");
            if code.is_empty() {
                return oauth_problem(400, "Check the `code` parameter");
            }
            if tokens.used_codes.contains(code) {
                return oauth_problem(400, "Authorization code has been revoked");
            }
            if !tokens.codes.remove(code) {
                return oauth_problem(400, "Cannot decrypt the authorization code");
            }
            tokens.used_codes.insert(code.to_owned());
        }
        "refresh_token" => {
            let old = match tokens.refresh.get_mut(field("refresh_token")) {
                Some(old) if old.live => old,
                Some(_) => return oauth_problem(401, "Token has been revoked"),
                None => return oauth_problem(400, "Cannot decrypt the refresh token"),
            };
            old.live = false;
            let retire_at = Instant::now() + config.old_access_token_grace;
            if let Some(expiry) = tokens.access.get_mut(&old.access) {
                *expiry = (*expiry).min(retire_at);
            }
            tokens.refreshes += 1;
        }
        _ => return oauth_problem(400, "Check the `grant_type` parameter"),
    }
    let (access, refresh) = (access_token(shared), refresh_token());
    let expiry = Instant::now() + config.access_token_ttl;
    tokens.access.insert(access.clone(), expiry);
    let issued = RefreshToken {
        live: true,
        access: access.clone(),
    };
    tokens.refresh.insert(refresh.clone(), issued);
    let body = json!({"token_type": "Bearer", "expires_in": config.access_token_ttl.as_secs(),
        "access_token": access, "refresh_token": refresh, "server_time": now()});
    respond(StatusCode::OK, "application/json", body.to_string())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT in shape only: the signature is random bytes, nobody can verify it.
fn access_token(shared: &Shared) -> String {
    let config = &shared.config;
    let jti = uuid::Uuid::new_v4().to_string();
    let (iat, ttl) = (now(), config.access_token_ttl.as_secs() as i64);
    // Calls belong on this server, so the API domain names its own host.
    let api_domain = shared.base_url.split("://").nth(1).unwrap_or_default();
    let header = json!({"typ": "JWT", "alg": "RS256", "jti": jti});
    let claims = json!({"aud": config.client_id, "jti": jti, "iat": iat, "nbf": iat,
        "exp": iat + ttl.max(1), "sub": "8370001", "grant_type": "", "account_id": config.account_id,
        "base_domain": "amocrm.ru", "version": 2, "scopes": ["crm", "notifications"],
        "api_domain": api_domain});
    let mut signature = Vec::with_capacity(64);
    for _ in 0..4 {
        signature.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(&signature)
    )
}

fn refresh_token() -> String {
    let parts: Vec<String> = (0..4)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    format!("def50200{}", parts.concat())
}
