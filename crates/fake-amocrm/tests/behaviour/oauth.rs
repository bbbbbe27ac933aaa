//! OAuth: code exchange, single-use refresh tokens, expiry of access tokens.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::helpers::*;

const REVOKED: &str = r#"{"hint":"Token has been revoked","title":"Некорректный запрос","type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson","status":401,"detail":"В запросе отсутствует ряд параметров или параметры невалидны"}"#;

fn grant(kind: &str, key: &str, value: &str) -> Vec<(&'static str, String)> {
    let defaults = FakeConfig::default();
    vec![
        ("client_id", defaults.client_id),
        ("client_secret", defaults.client_secret),
        ("redirect_uri", defaults.redirect_uri),
        ("grant_type", kind.to_owned()),
        (
            if key == "code" {
                "code"
            } else {
                "refresh_token"
            },
            value.to_owned(),
        ),
    ]
}

fn token_url(amo: &FakeAmo) -> String {
    format!("{}/oauth2/access_token", amo.base_url())
}

/// The authorization-code grant as JSON, the way Kommo documents it.
async fn exchange_code(amo: &FakeAmo, code: &str) -> Response {
    let body: serde_json::Map<String, Value> = grant("authorization_code", "code", code)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    let req = reqwest::Client::new().post(token_url(amo)).json(&body);
    req.send().await.expect("POST the token endpoint")
}

/// The refresh grant as a form, the way the official PHP library sends it.
async fn refresh(amo: &FakeAmo, refresh_token: &str) -> Response {
    let form = grant("refresh_token", "refresh_token", refresh_token);
    let req = reqwest::Client::new().post(token_url(amo)).form(&form);
    req.send().await.expect("POST the token endpoint")
}

async fn tokens(resp: Response) -> (String, String, Value) {
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_of(resp).await;
    let access = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    (access, refresh, body)
}

fn claims(jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "header.payload.signature: {jwt}");
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url payload");
    serde_json::from_slice(&payload).expect("JSON claims")
}

async fn api_status(amo: &FakeAmo, token: &str) -> StatusCode {
    let url = format!("{}/api/v4/contacts", amo.base_url());
    get_as(&url, token).await.status()
}

#[tokio::test]
async fn a_refresh_rotates_both_tokens_and_the_used_refresh_token_is_revoked() {
    let amo = FakeAmo::start_with(FakeConfig {
        old_access_token_grace: Duration::from_millis(300),
        ..FakeConfig::default()
    })
    .await;
    let code_url = format!("{}/_fake/oauth/code", amo.base_url());
    let minted = reqwest::Client::new().post(code_url).send().await;
    let code = json_of(minted.expect("mint a code")).await["code"]
        .as_str()
        .expect("code")
        .to_owned();

    let (access, refresh_1, body) = tokens(exchange_code(&amo, &code).await).await;
    assert_eq!(
        (&body["token_type"], &body["expires_in"]),
        (&json!("Bearer"), &json!(86_400))
    );
    let jwt = claims(&access);
    assert_eq!(
        jwt["exp"].as_i64().expect("exp") - jwt["iat"].as_i64().expect("iat"),
        86_400
    );
    assert_eq!(jwt["account_id"], 29_000_001);
    assert!(amo
        .base_url()
        .ends_with(jwt["api_domain"].as_str().expect("api_domain")));
    assert_eq!(
        exchange_code(&amo, &code).await.status(),
        StatusCode::BAD_REQUEST,
        "single-use"
    );
    assert_eq!(api_status(&amo, &access).await, StatusCode::NO_CONTENT);

    let (access_2, refresh_2, _) = tokens(refresh(&amo, &refresh_1).await).await;
    assert_ne!((&access_2, &refresh_2), (&access, &refresh_1));
    let reused = refresh(&amo, &refresh_1).await;
    assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reused.text().await.expect("body"), REVOKED);
    assert_eq!(api_status(&amo, &access_2).await, StatusCode::NO_CONTENT);

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        api_status(&amo, &access).await,
        StatusCode::UNAUTHORIZED,
        "old access died"
    );
    assert_eq!(api_status(&amo, &access_2).await, StatusCode::NO_CONTENT);
    let (access_3, _, _) = tokens(refresh(&amo, &refresh_2).await).await;
    assert_eq!(api_status(&amo, &access_3).await, StatusCode::NO_CONTENT);
    assert_eq!(
        amo.token_refreshes(),
        2,
        "the revoked attempt is not a refresh"
    );
}

#[tokio::test]
async fn an_expired_access_token_gets_401() {
    let amo = FakeAmo::start_with(FakeConfig {
        access_token_ttl: Duration::from_secs(1),
        ..FakeConfig::default()
    })
    .await;
    let (access, _, body) = tokens(exchange_code(&amo, &amo.issue_auth_code()).await).await;
    assert_eq!(body["expires_in"], 1);
    let jwt = claims(&access);
    assert_eq!(
        jwt["exp"].as_i64().expect("exp") - jwt["iat"].as_i64().expect("iat"),
        1
    );
    assert_eq!(api_status(&amo, &access).await, StatusCode::NO_CONTENT);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let url = format!("{}/api/v4/contacts", amo.base_url());
    let expired = get_as(&url, &access).await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(content_type(&expired), "application/problem+json");
    assert_eq!(
        json_of(expired).await["detail"],
        "Неверный логин или пароль"
    );
    assert_eq!(
        api_status(&amo, FakeAmo::TOKEN).await,
        StatusCode::NO_CONTENT,
        "long-lived"
    );
}

#[tokio::test]
async fn wrong_client_credentials_or_redirect_uri_get_400_and_keep_the_code() {
    let amo = FakeAmo::start_with(FakeConfig {
        auth_codes: vec!["preset-code".into()],
        ..FakeConfig::default()
    })
    .await;
    for (key, value) in [
        ("client_secret", "guess"),
        ("redirect_uri", "https://evil.example/cb"),
    ] {
        let mut form = grant("authorization_code", "code", "preset-code");
        form.retain(|(k, _)| *k != key);
        form.push((key, value.to_owned()));
        let req = reqwest::Client::new().post(token_url(&amo)).form(&form);
        let resp = req.send().await.expect("POST the token endpoint");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{key}");
        assert_eq!(json_of(resp).await["title"], "Некорректный запрос");
    }
    let unknown = refresh(&amo, "def50200never-issued").await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    tokens(exchange_code(&amo, "preset-code").await).await;
    assert_eq!(
        exchange_code(&amo, "preset-code").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(amo.token_refreshes(), 0);
}
