//! Where the bearer token comes from: a long-lived token from the environment, or
//! OAuth2 tokens kept in the database and refreshed before they expire.
//!
//! AmoCRM's refresh tokens are single-use and rotate: two refreshes with one refresh
//! token kill the integration ("Token has been revoked"). So a refresh is
//! single-flight inside the process (callers join the one in flight) and serialised
//! across instances (a lease on the token row; whoever waits re-reads and uses what a
//! sibling stored). Once sent, a refresh runs on a task of its own to the end and
//! commits the new pair before anything else: AmoCRM has already spent the old pair,
//! so a caller that gives up (its budget ran out) must not take the new one with it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::future::{BoxFuture, FutureExt, Shared};
use serde::Deserialize;

use super::limiter::RateLimiter;
use super::AmoError;
use crate::settings;

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
#[cfg_attr(test, mockall::automock)]
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
    /// While refused: whether an operator has authorised again since (`amosync auth
    /// exchange` stored a new pair), so calls need not wait for the next probe.
    async fn reauthorised(&self) -> bool {
        false
    }
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

impl OAuthClient {
    /// OAuth mode (no long-lived `AMO_ACCESS_TOKEN`): the integration's id, secret and
    /// redirect URI; `None` with a long-lived token or a part missing.
    pub fn from_settings(amo: &settings::Amo) -> Option<Self> {
        if !amo.access_token.expose().is_empty() {
            return None;
        }
        let token_url = amo.base_url.join("oauth2/access_token").ok()?;
        Some(OAuthClient {
            token_url,
            client_id: amo.client_id.clone()?,
            client_secret: amo.client_secret.as_ref()?.expose().to_owned(),
            redirect_uri: amo.redirect_uri.clone()?,
        })
    }
}

/// Refresh this long before AmoCRM's `expires_in` runs out (a tenth of short lifetimes).
const REFRESH_EARLY: Duration = Duration::from_secs(300);
/// How long one process may hold the refresh; others wait at most this long.
const REFRESH_LEASE: Duration = Duration::from_secs(30);
/// While re-authorisation is needed, the stored row is read again at most this often.
const REAUTH_RECHECK: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
    expires_in: i64,
}

/// A refresh in flight, joined by every caller that needs one meanwhile.
type Flight = Shared<BoxFuture<'static, Result<StoredTokens, AmoError>>>;

#[derive(Default)]
struct Cache {
    tokens: Option<StoredTokens>,
    flight: Option<Flight>,
    /// When the row was last read while re-authorisation was needed.
    rechecked: Option<tokio::time::Instant>,
}

/// What a refresh needs, owned, so it can run on a task of its own.
#[derive(Clone)]
struct Refresher {
    client: OAuthClient,
    store: Arc<dyn TokenStore>,
    http: reqwest::Client,
    limiter: Arc<RateLimiter>,
}

pub struct OAuthTokens {
    refresher: Refresher,
    cache: Arc<Mutex<Cache>>,
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
            refresher: Refresher {
                client,
                store,
                http,
                limiter,
            },
            cache: Arc::new(Mutex::new(Cache::default())),
        }
    }

    /// `amosync auth exchange --code`: trades an authorisation code for the first pair.
    pub async fn exchange(&self, code: &str) -> Result<(), AmoError> {
        let refresher = &self.refresher;
        let tokens = refresher
            .request("authorization_code", "code", code)
            .await?;
        refresher.store.save(&tokens).await?;
        lock(&self.cache).tokens = Some(tokens);
        Ok(())
    }

    async fn cached(&self) -> Result<Option<StoredTokens>, AmoError> {
        let cached = lock(&self.cache).tokens.clone();
        match cached {
            Some(tokens) => Ok(Some(tokens)),
            None => {
                let stored = self.refresher.store.load().await?;
                let mut cache = lock(&self.cache);
                if cache.tokens.is_none() {
                    cache.tokens.clone_from(&stored);
                }
                Ok(cache.tokens.clone())
            }
        }
    }

    /// Joins the refresh in flight, or starts one on a task of its own: it runs to the
    /// end and updates the cache even when every caller has given up.
    async fn refreshed(&self, rejected: Option<&str>) -> Result<String, AmoError> {
        let flight = {
            let mut cache = lock(&self.cache);
            if let Some(tokens) = cache.tokens.as_ref() {
                // A refresh finished since this caller's token was rejected.
                if fresh(tokens) && rejected.is_some_and(|r| r != tokens.access_token) {
                    return Ok(tokens.access_token.clone());
                }
            }
            match &cache.flight {
                Some(flight) => flight.clone(),
                None => {
                    let refresher = self.refresher.clone();
                    let cache_of_task = Arc::clone(&self.cache);
                    let rejected = rejected.map(str::to_owned);
                    let task = tokio::spawn(async move {
                        let outcome = refresher.refresh(rejected.as_deref()).await;
                        let mut cache = lock(&cache_of_task);
                        cache.flight = None;
                        match &outcome {
                            Ok(tokens) => cache.tokens = Some(tokens.clone()),
                            Err(AmoError::Unauthorized) => {
                                if let Some(tokens) = cache.tokens.as_mut() {
                                    tokens.needs_reauth = true;
                                }
                            }
                            Err(_) => {}
                        }
                        outcome
                    });
                    let flight = task
                        .map(|joined| {
                            joined.unwrap_or_else(|_| {
                                Err(AmoError::Network("token refresh task failed".into()))
                            })
                        })
                        .boxed()
                        .shared();
                    cache.flight = Some(flight.clone());
                    flight
                }
            }
        };
        flight.await.map(|tokens| tokens.access_token)
    }
}

fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Refresher {
    async fn request(
        &self,
        grant: &str,
        field: &str,
        value: &str,
    ) -> Result<StoredTokens, AmoError> {
        // Every AmoCRM call waits for this one: it goes before the queue.
        self.limiter.acquire_first().await;
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

    /// Refreshes unless a sibling instance already did.
    async fn refresh(&self, rejected: Option<&str>) -> Result<StoredTokens, AmoError> {
        let deadline = tokio::time::Instant::now() + REFRESH_LEASE;
        loop {
            let stored = self.store.load().await?.ok_or(AmoError::Unauthorized)?;
            if stored.needs_reauth {
                return Err(AmoError::Unauthorized);
            }
            // A sibling refreshed meanwhile: use its pair instead of burning ours.
            if fresh(&stored) && rejected != Some(stored.access_token.as_str()) {
                return Ok(stored);
            }
            if self.store.lease_refresh(REFRESH_LEASE).await? {
                return self.refresh_with(stored).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AmoError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn refresh_with(&self, stored: StoredTokens) -> Result<StoredTokens, AmoError> {
        match self
            .request("refresh_token", "refresh_token", &stored.refresh_token)
            .await
        {
            Ok(tokens) => {
                // Committed before anyone uses it: a crash now cannot lose the new pair.
                self.store.save(&tokens).await?;
                crate::metrics::token_refresh("ok");
                Ok(tokens)
            }
            Err(AmoError::BadRequest { status, .. }) => {
                crate::metrics::token_refresh("refused");
                self.store
                    .refused(&format!(
                        "refresh refused with {status}; run `amosync auth exchange`"
                    ))
                    .await?;
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
        match self.cached().await? {
            None => Err(AmoError::Unauthorized),
            Some(tokens) if tokens.needs_reauth => match self.reauthorised().await {
                true => Box::pin(self.bearer()).await,
                false => Err(AmoError::Unauthorized),
            },
            Some(tokens) if fresh(&tokens) => Ok(tokens.access_token),
            Some(_) => self.refreshed(None).await,
        }
    }

    async fn after_unauthorized(&self, rejected: &str) -> Result<Option<String>, AmoError> {
        self.refreshed(Some(rejected)).await.map(Some)
    }

    async fn reauthorised(&self) -> bool {
        {
            let mut cache = lock(&self.cache);
            let refused = cache.tokens.as_ref().is_none_or(|t| t.needs_reauth);
            let now = tokio::time::Instant::now();
            let due = cache.rechecked.is_none_or(|at| now >= at + REAUTH_RECHECK);
            if !refused || !due || cache.flight.is_some() {
                return false;
            }
            cache.rechecked = Some(now);
        }
        match self.refresher.store.load().await {
            Ok(Some(stored)) if !stored.needs_reauth => {
                lock(&self.cache).tokens = Some(stored);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
