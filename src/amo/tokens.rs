//! Where the bearer token comes from: a long-lived token from the environment, or
//! OAuth2 tokens kept in the database and refreshed before they expire.
//!
//! AmoCRM's refresh tokens are single-use and rotate: two refreshes with one refresh
//! token kill the integration ("Token has been revoked"). So a refresh is
//! single-flight inside the process (one mutex) and serialised across instances (a
//! lease on the token row; whoever waits re-reads and uses what a sibling stored), and
//! the new pair is committed before it is used.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::limiter::RateLimiter;
use super::AmoError;

/// An OAuth token pair as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds when to refresh: a margin before AmoCRM's own expiry.
    pub expires_at: i64,
    /// A refresh was refused: an operator must authorise again (`amosync auth exchange`).
    pub needs_reauth: bool,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field("expires_at", &self.expires_at)
            .field("needs_reauth", &self.needs_reauth)
            .finish_non_exhaustive()
    }
}

/// Persistence of the token pair (the database, in production).
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn load(&self) -> Result<Option<StoredTokens>, AmoError>;
    /// Takes the refresh lease for `lease`; `false` while another process holds it.
    async fn lease_refresh(&self, lease: Duration) -> Result<bool, AmoError>;
    /// Stores a new pair, clears `needs_reauth` and the lease (committed on return).
    async fn save(&self, tokens: &StoredTokens) -> Result<(), AmoError>;
    /// Marks re-authorisation as needed and frees the lease.
    async fn refused(&self, why: &str) -> Result<(), AmoError>;
    async fn release_refresh(&self) -> Result<(), AmoError>;
}

/// The bearer the transport sends.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// The token to send now; an OAuth token about to expire is refreshed first.
    async fn bearer(&self) -> Result<String, AmoError>;
    /// AmoCRM answered 401 to `rejected`: a newer token to retry with once, if any.
    async fn after_unauthorized(&self, rejected: &str) -> Result<Option<String>, AmoError>;
}

/// A long-lived token (`AMO_ACCESS_TOKEN`): nothing to refresh.
pub struct StaticToken(pub String);

#[async_trait]
impl TokenSource for StaticToken {
    async fn bearer(&self) -> Result<String, AmoError> {
        Ok(self.0.clone())
    }

    async fn after_unauthorized(&self, _rejected: &str) -> Result<Option<String>, AmoError> {
        Ok(None)
    }
}

/// The integration's OAuth2 credentials.
#[derive(Clone)]
pub struct OAuthClient {
    pub token_url: url::Url,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

/// Refresh this long before AmoCRM's `expires_in` runs out (a tenth of short lifetimes).
const REFRESH_EARLY: Duration = Duration::from_secs(300);
/// How long one process may hold the refresh; others wait at most this long.
const REFRESH_LEASE: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
    expires_in: i64,
}

pub struct OAuthTokens {
    client: OAuthClient,
    store: Arc<dyn TokenStore>,
    http: reqwest::Client,
    limiter: Arc<RateLimiter>,
    /// The cached pair; holding the mutex is what makes a refresh single-flight.
    current: Mutex<Option<StoredTokens>>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn fresh(tokens: &StoredTokens) -> bool {
    !tokens.needs_reauth && tokens.expires_at > now()
}

/// When a token that lives `expires_in` seconds from now should be refreshed.
fn refresh_at(expires_in: i64) -> i64 {
    let margin = (REFRESH_EARLY.as_secs() as i64).min(expires_in / 10);
    now() + expires_in - margin
}

impl OAuthTokens {
    pub fn new(
        client: OAuthClient,
        store: Arc<dyn TokenStore>,
        http: reqwest::Client,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        OAuthTokens {
            client,
            store,
            http,
            limiter,
            current: Mutex::new(None),
        }
    }

    /// `amosync auth exchange --code`: trades an authorisation code for the first pair.
    pub async fn exchange(&self, code: &str) -> Result<(), AmoError> {
        let tokens = self.request("authorization_code", "code", code).await?;
        self.store.save(&tokens).await?;
        *self.current.lock().await = Some(tokens);
        Ok(())
    }

    async fn request(
        &self,
        grant: &str,
        field: &str,
        value: &str,
    ) -> Result<StoredTokens, AmoError> {
        self.limiter.acquire().await;
        let form = [
            ("client_id", self.client.client_id.as_str()),
            ("client_secret", self.client.client_secret.as_str()),
            ("grant_type", grant),
            (field, value),
            ("redirect_uri", self.client.redirect_uri.as_str()),
        ];
        let response = self
            .http
            .post(self.client.token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    AmoError::Timeout
                } else {
                    AmoError::Network("token endpoint unreachable".into())
                }
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            // Any refusal by the token endpoint means the integration must be authorised again.
            return Err(AmoError::BadRequest {
                status,
                detail: "the token endpoint refused the request".into(),
            });
        }
        let body: TokenResponse = response.json().await.map_err(|_| {
            AmoError::InvalidResponse("token endpoint answered without tokens".into())
        })?;
        Ok(StoredTokens {
            access_token: body.access_token,
            refresh_token: body.refresh_token,
            expires_at: refresh_at(body.expires_in),
            needs_reauth: false,
        })
    }

    /// Refreshes unless a sibling already did; called with `current` locked.
    async fn refresh(
        &self,
        current: &mut Option<StoredTokens>,
        rejected: Option<&str>,
    ) -> Result<String, AmoError> {
        let deadline = tokio::time::Instant::now() + REFRESH_LEASE;
        loop {
            let stored = self.store.load().await?.ok_or(AmoError::Unauthorized)?;
            if stored.needs_reauth {
                *current = Some(stored);
                return Err(AmoError::Unauthorized);
            }
            // A sibling refreshed meanwhile: use its pair instead of burning ours.
            if fresh(&stored) && rejected != Some(stored.access_token.as_str()) {
                let token = stored.access_token.clone();
                *current = Some(stored);
                return Ok(token);
            }
            if self.store.lease_refresh(REFRESH_LEASE).await? {
                return self.refresh_with(stored, current).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AmoError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn refresh_with(
        &self,
        stored: StoredTokens,
        current: &mut Option<StoredTokens>,
    ) -> Result<String, AmoError> {
        match self
            .request("refresh_token", "refresh_token", &stored.refresh_token)
            .await
        {
            Ok(tokens) => {
                // Committed before anyone uses it: a crash now cannot lose the new pair.
                self.store.save(&tokens).await?;
                crate::metrics::token_refresh("ok");
                let token = tokens.access_token.clone();
                *current = Some(tokens);
                Ok(token)
            }
            Err(AmoError::BadRequest { status, .. }) => {
                crate::metrics::token_refresh("refused");
                self.store
                    .refused(&format!(
                        "refresh refused with {status}; run `amosync auth exchange`"
                    ))
                    .await?;
                *current = Some(StoredTokens {
                    needs_reauth: true,
                    ..stored
                });
                Err(AmoError::Unauthorized)
            }
            Err(other) => {
                crate::metrics::token_refresh("failed");
                self.store.release_refresh().await?;
                Err(other)
            }
        }
    }
}

#[async_trait]
impl TokenSource for OAuthTokens {
    async fn bearer(&self) -> Result<String, AmoError> {
        let mut current = self.current.lock().await;
        if current.is_none() {
            *current = self.store.load().await?;
        }
        match current.as_ref() {
            None => Err(AmoError::Unauthorized),
            Some(tokens) if tokens.needs_reauth => Err(AmoError::Unauthorized),
            Some(tokens) if fresh(tokens) => Ok(tokens.access_token.clone()),
            Some(_) => self.refresh(&mut current, None).await,
        }
    }

    async fn after_unauthorized(&self, rejected: &str) -> Result<Option<String>, AmoError> {
        let mut current = self.current.lock().await;
        self.refresh(&mut current, Some(rejected)).await.map(Some)
    }
}
