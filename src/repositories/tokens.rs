//! The AmoCRM OAuth token pair in `amo_tokens` (one row, id 1).

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::db::Db;
use super::sync_state::{bounded_error, db_now, lease_end};
use super::RepoError;
use crate::amo::{AmoError, StoredTokens, TokenStore};
use crate::schema::amo_tokens;

const ROW: i8 = 1;

pub struct MysqlTokenStore {
    db: Db,
}

impl MysqlTokenStore {
    pub fn new(db: Db) -> Self {
        MysqlTokenStore { db }
    }
}

/// The token store runs under the AmoCRM client: its database trouble is a
/// transient failure to get a token, which callers retry like any other.
fn amo(err: RepoError) -> AmoError {
    AmoError::Network(format!("token store: {err}"))
}

#[async_trait]
impl TokenStore for MysqlTokenStore {
    async fn load(&self) -> Result<Option<StoredTokens>, AmoError> {
        self.db
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
                Ok(
                    row.map(|(access_token, refresh_token, expires_at, needs_reauth)| {
                        StoredTokens {
                            access_token,
                            refresh_token,
                            expires_at,
                            needs_reauth,
                        }
                    }),
                )
            })
            .await
            .map_err(amo)
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
        let tokens = tokens.clone();
        self.db
            .run(move |conn| {
                diesel::replace_into(amo_tokens::table)
                    .values((
                        amo_tokens::id.eq(ROW),
                        amo_tokens::access_token.eq(&tokens.access_token),
                        amo_tokens::refresh_token.eq(&tokens.refresh_token),
                        amo_tokens::expires_at.eq(tokens.expires_at),
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
