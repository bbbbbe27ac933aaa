//! `Idempotency-Key` rules: a client's key names one request for 24 hours. Its first
//! response is replayed to repeats; the same key with another request is an error;
//! a repeat while the first still runs is told to wait.

use std::sync::Arc;
use std::time::Duration;

use super::ServiceError;
use crate::repositories::{IdempotencyRepository, KeyState, StoredResponse};

/// How long a key and its response are kept.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// An in-progress claim older than this belongs to a request that died (a crash):
/// longer than any request can run (inline budget plus the HTTP shutdown timeout).
pub const STALE_CLAIM: Duration = Duration::from_secs(120);

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

pub struct IdempotencyService {
    repo: Arc<dyn IdempotencyRepository>,
}

impl IdempotencyService {
    pub fn new(repo: Arc<dyn IdempotencyRepository>) -> Self {
        IdempotencyService { repo }
    }

    /// A key is 1 to 255 visible ASCII characters.
    pub fn valid_key(key: &str) -> bool {
        !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
    }

    pub async fn begin(
        &self,
        client_id: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<KeyState, ServiceError> {
        // Expired keys are deleted by retention (`services::Retention`), in batches.
        Ok(self
            .repo
            .begin(client_id, key, request_hash, KEY_TTL, STALE_CLAIM)
            .await?)
    }

    /// Keeps a final response for replay; a 5xx frees the key so the client can retry.
    pub async fn finish(
        &self,
        client_id: &str,
        key: &str,
        response: StoredResponse,
    ) -> Result<(), ServiceError> {
        if response.status >= 500 {
            Ok(self.repo.abandon(client_id, key).await?)
        } else {
            Ok(self.repo.finish(client_id, key, response).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repositories::MockIdempotencyRepository;

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(IdempotencyService::valid_key("order-42_retry.1"));
        assert!(!IdempotencyService::valid_key(""));
        assert!(!IdempotencyService::valid_key("has space"));
        assert!(!IdempotencyService::valid_key(&"k".repeat(256)));
        assert!(IdempotencyService::valid_key(&"k".repeat(255)));
    }

    #[tokio::test]
    async fn server_errors_free_the_key_and_other_answers_are_kept() {
        let mut repo = MockIdempotencyRepository::new();
        repo.expect_abandon()
            .withf(|c, k| c == "forms" && k == "k1")
            .times(1)
            .returning(|_, _| Ok(()));
        repo.expect_finish()
            .withf(|_, k, r| k == "k2" && r.status == 201)
            .times(1)
            .returning(|_, _, _| Ok(()));
        let service = IdempotencyService::new(Arc::new(repo));
        let response = |status| StoredResponse {
            status,
            content_type: None,
            location: None,
            body: vec![],
        };
        service
            .finish("forms", "k1", response(503))
            .await
            .expect("abandoned");
        service
            .finish("forms", "k2", response(201))
            .await
            .expect("kept");
    }
}
