//! Stored first responses for `Idempotency-Key`, one row per (client, key).

use std::time::Duration;

use async_trait::async_trait;
use diesel::mysql::MysqlConnection;
use diesel::prelude::*;

use super::db::Db;
use super::sync_state::{db_now, lease_end};
use super::RepoError;
use crate::schema::idempotency_keys;

const IN_PROGRESS: &str = "in_progress";
const DONE: &str = "done";

/// A response worth replaying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// What a new request with a key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// First use (or the earlier one expired or was abandoned): run the request.
    Fresh,
    /// The same request finished before: replay its response.
    Replay(StoredResponse),
    /// The same key came with a different request.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait IdempotencyRepository: Send + Sync {
    /// Claims `key` for this request unless it is known. `stale_after`: an in-progress
    /// claim older than this belongs to a request that died and may be taken over.
    async fn begin(
        &self,
        client_id: &str,
        key: &str,
        request_hash: &str,
        ttl: Duration,
        stale_after: Duration,
    ) -> Result<KeyState, RepoError>;

    async fn finish(
        &self,
        client_id: &str,
        key: &str,
        response: StoredResponse,
    ) -> Result<(), RepoError>;

    /// Forgets a claim whose request failed in a way worth retrying (5xx).
    async fn abandon(&self, client_id: &str, key: &str) -> Result<(), RepoError>;
}

pub struct MysqlIdempotencyRepository {
    db: Db,
}

impl MysqlIdempotencyRepository {
    pub fn new(db: Db) -> Self {
        MysqlIdempotencyRepository { db }
    }
}

#[derive(Queryable)]
struct Row {
    request_hash: String,
    status: String,
    response_status: Option<i32>,
    content_type: Option<String>,
    location: Option<String>,
    response_body: Option<Vec<u8>>,
}

/// No explicit transaction: each statement is atomic on its own, and holding the
/// shared lock of a duplicate insert while asking for an exclusive one is the classic
/// InnoDB deadlock when many requests race for one key.
fn begin(
    conn: &mut MysqlConnection,
    client_id: &str,
    key: &str,
    hash: &str,
    ttl: Duration,
    stale_after: Duration,
) -> Result<KeyState, RepoError> {
    let now = db_now(conn)?;
    // The insert decides races: exactly one of many concurrent first requests wins.
    let inserted = diesel::insert_or_ignore_into(idempotency_keys::table)
        .values((
            idempotency_keys::client_id.eq(client_id),
            idempotency_keys::idem_key.eq(key),
            idempotency_keys::request_hash.eq(hash),
            idempotency_keys::status.eq(IN_PROGRESS),
            idempotency_keys::started_at.eq(now),
            idempotency_keys::expires_at.eq(lease_end(now, ttl)),
        ))
        .execute(conn)?;
    if inserted == 1 {
        return Ok(KeyState::Fresh);
    }
    // An expired key, or a claim whose request died, is taken over by exactly one
    // caller: the conditional update succeeds once.
    let stale_before =
        now - chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::minutes(2));
    let taken = diesel::update(
        idempotency_keys::table.find((client_id, key)).filter(
            idempotency_keys::expires_at
                .le(now)
                .or(idempotency_keys::status
                    .eq(IN_PROGRESS)
                    .and(idempotency_keys::started_at.le(stale_before))),
        ),
    )
    .set((
        idempotency_keys::request_hash.eq(hash),
        idempotency_keys::status.eq(IN_PROGRESS),
        idempotency_keys::response_status.eq(None::<i32>),
        idempotency_keys::content_type.eq(None::<String>),
        idempotency_keys::location.eq(None::<String>),
        idempotency_keys::response_body.eq(None::<Vec<u8>>),
        idempotency_keys::started_at.eq(now),
        idempotency_keys::expires_at.eq(lease_end(now, ttl)),
    ))
    .execute(conn)?;
    if taken == 1 {
        return Ok(KeyState::Fresh);
    }
    let row: Row = idempotency_keys::table
        .find((client_id, key))
        .select((
            idempotency_keys::request_hash,
            idempotency_keys::status,
            idempotency_keys::response_status,
            idempotency_keys::content_type,
            idempotency_keys::location,
            idempotency_keys::response_body,
        ))
        .first(conn)?;
    if row.request_hash != hash {
        return Ok(KeyState::Mismatch);
    }
    match (row.status.as_str(), row.response_status) {
        (DONE, Some(status)) => Ok(KeyState::Replay(StoredResponse {
            status: u16::try_from(status).unwrap_or(500),
            content_type: row.content_type,
            location: row.location,
            body: row.response_body.unwrap_or_default(),
        })),
        _ => Ok(KeyState::InProgress),
    }
}

#[async_trait]
impl IdempotencyRepository for MysqlIdempotencyRepository {
    async fn begin(
        &self,
        client_id: &str,
        key: &str,
        request_hash: &str,
        ttl: Duration,
        stale_after: Duration,
    ) -> Result<KeyState, RepoError> {
        let (client_id, key, hash) = (
            client_id.to_owned(),
            key.to_owned(),
            request_hash.to_owned(),
        );
        self.db
            .run(move |conn| begin(conn, &client_id, &key, &hash, ttl, stale_after))
            .await
    }

    async fn finish(
        &self,
        client_id: &str,
        key: &str,
        response: StoredResponse,
    ) -> Result<(), RepoError> {
        let (client_id, key) = (client_id.to_owned(), key.to_owned());
        self.db
            .run(move |conn| {
                diesel::update(idempotency_keys::table.find((&client_id, &key)))
                    .set((
                        idempotency_keys::status.eq(DONE),
                        idempotency_keys::response_status.eq(i32::from(response.status)),
                        idempotency_keys::content_type.eq(response.content_type),
                        idempotency_keys::location.eq(response.location),
                        idempotency_keys::response_body.eq(response.body),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await
    }

    async fn abandon(&self, client_id: &str, key: &str) -> Result<(), RepoError> {
        let (client_id, key) = (client_id.to_owned(), key.to_owned());
        self.db
            .run(move |conn| {
                diesel::delete(
                    idempotency_keys::table
                        .find((&client_id, &key))
                        .filter(idempotency_keys::status.eq(IN_PROGRESS)),
                )
                .execute(conn)?;
                Ok(())
            })
            .await
    }
}
