use std::sync::atomic::{AtomicBool, Ordering};

use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

fn pair(access: &str, expires_at: i64, needs_reauth: bool) -> StoredTokens {
    StoredTokens {
        access_token: access.into(),
        refresh_token: format!("{access}-refresh"),
        expires_at,
        needs_reauth,
    }
}

fn tokens(server_uri: &str, store: MockTokenStore) -> OAuthTokens {
    let client = OAuthClient {
        token_url: url::Url::parse(&format!("{server_uri}/oauth2/access_token")).expect("url"),
        client_id: "client".into(),
        client_secret: "secret".into(),
        redirect_uri: "http://localhost/cb".into(),
    };
    OAuthTokens::new(
        client,
        Arc::new(store),
        reqwest::Client::new(),
        Arc::new(RateLimiter::per_second(7)),
    )
}

/// AmoCRM's token endpoint, answering a refresh of `old-refresh` after `delay`.
async fn slow_token_endpoint(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    let body = serde_json::json!({"token_type": "Bearer", "expires_in": 86400,
        "access_token": "new", "refresh_token": "new-refresh"});
    Mock::given(method("POST"))
        .and(path("/oauth2/access_token"))
        .and(body_string_contains("refresh_token=old-refresh"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(body)
                .set_delay(delay),
        )
        .expect(1)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn a_refresh_whose_caller_gives_up_still_stores_the_rotated_pair() {
    let server = slow_token_endpoint(Duration::from_millis(800)).await;
    let mut store = MockTokenStore::new();
    store
        .expect_load()
        .returning(|| Ok(Some(pair("old", 0, false))));
    store
        .expect_lease_refresh()
        .times(1)
        .returning(|_| Ok(true));
    store
        .expect_save()
        .withf(|t| t.access_token == "new" && t.refresh_token == "new-refresh")
        .times(1)
        .returning(|_| Ok(()));
    store.expect_release_refresh().never();
    store.expect_refused().never();
    let tokens = tokens(&server.uri(), store);

    // The caller's budget runs out while AmoCRM is rotating the pair.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), tokens.bearer()).await;
    assert!(gave_up.is_err(), "the caller gave up before the answer");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The rotated pair was stored and is used; no second refresh spends it again.
    assert_eq!(tokens.bearer().await.expect("bearer"), "new");
}

#[tokio::test]
async fn callers_that_need_a_refresh_at_once_join_one() {
    let server = slow_token_endpoint(Duration::from_millis(300)).await;
    // The row as the database keeps it: what is saved is loaded next.
    let row = Arc::new(std::sync::Mutex::new(pair("old", 0, false)));
    let mut store = MockTokenStore::new();
    let stored = Arc::clone(&row);
    store
        .expect_load()
        .returning(move || Ok(Some(stored.lock().expect("row").clone())));
    store
        .expect_lease_refresh()
        .times(1)
        .returning(|_| Ok(true));
    let saved = Arc::clone(&row);
    store.expect_save().times(1).returning(move |t| {
        *saved.lock().expect("row") = t.clone();
        Ok(())
    });
    let tokens = tokens(&server.uri(), store);

    let (a, b) = tokio::join!(tokens.bearer(), tokens.after_unauthorized("old"));
    assert_eq!(a.expect("bearer"), "new");
    assert_eq!(b.expect("after 401"), Some("new".into()));
}

#[tokio::test(start_paused = true)]
async fn a_new_authorisation_is_picked_up_without_a_restart() {
    let exchanged = Arc::new(AtomicBool::new(false));
    let mut store = MockTokenStore::new();
    let seen = Arc::clone(&exchanged);
    store.expect_load().returning(move || {
        Ok(Some(match seen.load(Ordering::SeqCst) {
            false => pair("refused", 0, true),
            true => pair("exchanged", now() + 3600, false),
        }))
    });
    let tokens = tokens("http://127.0.0.1:9", store);
    assert!(matches!(tokens.bearer().await, Err(AmoError::Unauthorized)));
    assert!(!tokens.reauthorised().await);

    // `amosync auth exchange` stores a new pair; the instance notices within seconds.
    exchanged.store(true, Ordering::SeqCst);
    tokio::time::advance(REAUTH_RECHECK).await;
    assert!(tokens.reauthorised().await);
    assert_eq!(tokens.bearer().await.expect("bearer"), "exchanged");
}
