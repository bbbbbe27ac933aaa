//! The AmoCRM OAuth token pair in `amo_tokens` (one row, id 1), encrypted at rest
//! (`crate::crypto`): what the database holds opens only with `TOKEN_ENCRYPTION_KEY`.
//! A row sealed by the previous key, or stored before encryption, is opened and
//! sealed again with the current key the first time it is read.

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::db::Db;
use super::sync_state::{bounded_error, db_now, lease_end};
use super::RepoError;
use crate::amo::{AmoError, StoredTokens, TokenStore};
use crate::crypto::{CryptoError, Sealed, TokenCipher};
use crate::schema::amo_tokens;

const ROW: i8 = 1;
const ACCESS: &str = "amo_tokens.access_token";
const REFRESH: &str = "amo_tokens.refresh_token";

pub struct MysqlTokenStore {
    db: Db,
    cipher: TokenCipher,
}

/// What `reseal` found in `amo_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resealed {
    /// No token pair stored yet.
    Empty,
    /// Sealed with the current key already.
    Current,
    /// Sealed again with the current key (it was plaintext or under the previous key).
    Now,
}

/// The row as stored: sealed values.
struct StoredRow {
    access_token: String,
    refresh_token: String,
    expires_at: i64,
    needs_reauth: bool,
}

impl MysqlTokenStore {
    pub fn new(db: Db, cipher: TokenCipher) -> Self {
        MysqlTokenStore { db, cipher }
    }

    /// Opens the stored pair, and seals it again with the current key when it was not.
    /// At start-up this turns a row the keys cannot open into a refusal to start,
    /// instead of an AmoCRM client failing on every call.
    pub async fn reseal(&self) -> Result<Resealed, TokenStoreError> {
        let Some(row) = self.read().await? else {
            return Ok(Resealed::Empty);
        };
        let (_, state) = self.open(&row)?;
        if state == Sealed::Current {
            return Ok(Resealed::Current);
        }
        self.open_and_reseal(row).await?;
        Ok(Resealed::Now)
    }

    async fn read(&self) -> Result<Option<StoredRow>, TokenStoreError> {
        Ok(self
            .db
            .run(|conn| {
                let row: Option<(String, String, i64, bool)> = amo_tokens::table
                    .find(ROW)
                    .select((
                        amo_tokens::access_token,
                        amo_tokens::refresh_token,
                        amo_tokens::expires_at,
                        amo_tokens::needs_reauth,
                    ))
                    .first(conn)
                    .optional()?;
                Ok(row.map(
                    |(access_token, refresh_token, expires_at, needs_reauth)| StoredRow {
                        access_token,
                        refresh_token,
                        expires_at,
                        needs_reauth,
                    },
                ))
            })
            .await?)
    }

    fn open(&self, row: &StoredRow) -> Result<(StoredTokens, Sealed), TokenStoreError> {
        let (access_token, a) = self.cipher.open(ACCESS, &row.access_token)?;
        let (refresh_token, r) = self.cipher.open(REFRESH, &row.refresh_token)?;
        let state = if a == Sealed::Current && r == Sealed::Current {
            Sealed::Current
        } else {
            Sealed::Outdated
        };
        let tokens = StoredTokens {
            access_token,
            refresh_token,
            expires_at: row.expires_at,
            needs_reauth: row.needs_reauth,
        };
        Ok((tokens, state))
    }

    /// The pair in `row`, sealed again with the current key unless it already was. The
    /// rewrite only lands if the row still holds what was read, so a pair a refresh
    /// stored meanwhile is never replaced by an older one.
    async fn open_and_reseal(&self, row: StoredRow) -> Result<StoredTokens, TokenStoreError> {
        let (tokens, state) = self.open(&row)?;
        if state == Sealed::Current {
            return Ok(tokens);
        }
        let access = self.cipher.seal(ACCESS, &tokens.access_token);
        let refresh = self.cipher.seal(REFRESH, &tokens.refresh_token);
        self.db
            .run(move |conn| {
                diesel::update(
                    amo_tokens::table
                        .find(ROW)
                        .filter(amo_tokens::access_token.eq(row.access_token))
                        .filter(amo_tokens::refresh_token.eq(row.refresh_token)),
                )
                .set((
                    amo_tokens::access_token.eq(access),
                    amo_tokens::refresh_token.eq(refresh),
                ))
                .execute(conn)?;
                Ok(())
            })
            .await?;
        Ok(tokens)
    }
}

/// Why the token row could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    #[error("amo_tokens: {0}")]
    Database(#[from] RepoError),
    #[error("amo_tokens: {0}")]
    Crypto(#[from] CryptoError),
}

impl From<TokenStoreError> for AmoError {
    fn from(err: TokenStoreError) -> Self {
        amo_error(err.to_string())
    }
}

/// The token store runs under the AmoCRM client: its trouble is a failure to get a
/// token, which callers retry like any other (and a key that does not open the row
/// is refused at start-up, see `reseal`).
fn amo(err: RepoError) -> AmoError {
    amo_error(err.to_string())
}

fn amo_error(why: String) -> AmoError {
    AmoError::Network(format!("token store: {why}"))
}

#[async_trait]
impl TokenStore for MysqlTokenStore {
    async fn load(&self) -> Result<Option<StoredTokens>, AmoError> {
        match self.read().await? {
            Some(row) => Ok(Some(self.open_and_reseal(row).await?)),
            None => Ok(None),
        }
    }

    async fn lease_refresh(&self, lease: Duration) -> Result<bool, AmoError> {
        self.db
            .run(move |conn| {
                let now = db_now(conn)?;
                let taken = diesel::update(
                    amo_tokens::table.find(ROW).filter(
                        amo_tokens::refreshing_until
                            .is_null()
                            .or(amo_tokens::refreshing_until.lt(now)),
                    ),
                )
                .set(amo_tokens::refreshing_until.eq(lease_end(now, lease)))
                .execute(conn)?;
                Ok(taken == 1)
            })
            .await
            .map_err(amo)
    }

    async fn save(&self, tokens: &StoredTokens) -> Result<(), AmoError> {
        let access = self.cipher.seal(ACCESS, &tokens.access_token);
        let refresh = self.cipher.seal(REFRESH, &tokens.refresh_token);
        let expires_at = tokens.expires_at;
        self.db
            .run(move |conn| {
                diesel::replace_into(amo_tokens::table)
                    .values((
                        amo_tokens::id.eq(ROW),
                        amo_tokens::access_token.eq(&access),
                        amo_tokens::refresh_token.eq(&refresh),
                        amo_tokens::expires_at.eq(expires_at),
                        amo_tokens::needs_reauth.eq(false),
                        amo_tokens::last_error.eq(None::<String>),
                        amo_tokens::refreshing_until.eq(None::<NaiveDateTime>),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await
            .map_err(amo)
    }

    async fn refused(&self, why: &str) -> Result<(), AmoError> {
        let why = bounded_error(why);
        self.db
            .run(move |conn| {
                diesel::update(amo_tokens::table.find(ROW))
                    .set((
                        amo_tokens::needs_reauth.eq(true),
                        amo_tokens::last_error.eq(why),
                        amo_tokens::refreshing_until.eq(None::<NaiveDateTime>),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await
            .map_err(amo)
    }

    async fn release_refresh(&self) -> Result<(), AmoError> {
        self.db
            .run(|conn| {
                diesel::update(amo_tokens::table.find(ROW))
                    .set(amo_tokens::refreshing_until.eq(None::<NaiveDateTime>))
                    .execute(conn)?;
                Ok(())
            })
            .await
            .map_err(amo)
    }
}
