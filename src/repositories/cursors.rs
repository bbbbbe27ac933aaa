//! Reconciliation cursors: how far each walk over AmoCRM's changes has come.

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::db::Db;
use super::sync_state::{db_now, lease_end};
use super::RepoError;
use crate::schema::sync_cursors;

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait CursorRepository: Send + Sync {
    /// Takes the cursor for `lease` and returns its position (created at `start`
    /// when new); `None` while another instance holds it.
    async fn lease(
        &self,
        name: &str,
        start: i64,
        lease: Duration,
    ) -> Result<Option<i64>, RepoError>;

    /// Saves progress (the cursor stays leased).
    async fn advance(&self, name: &str, position: i64) -> Result<(), RepoError>;

    async fn release(&self, name: &str) -> Result<(), RepoError>;
}

pub struct MysqlCursorRepository {
    db: Db,
}

impl MysqlCursorRepository {
    pub fn new(db: Db) -> Self {
        MysqlCursorRepository { db }
    }
}

#[async_trait]
impl CursorRepository for MysqlCursorRepository {
    async fn lease(
        &self,
        name: &str,
        start: i64,
        lease: Duration,
    ) -> Result<Option<i64>, RepoError> {
        let name = name.to_owned();
        self.db
            .run(move |conn| {
                let now = db_now(conn)?;
                diesel::insert_or_ignore_into(sync_cursors::table)
                    .values((
                        sync_cursors::name.eq(&name),
                        sync_cursors::position.eq(start),
                    ))
                    .execute(conn)?;
                let taken = diesel::update(
                    sync_cursors::table.find(&name).filter(
                        sync_cursors::leased_until
                            .is_null()
                            .or(sync_cursors::leased_until.lt(now)),
                    ),
                )
                .set(sync_cursors::leased_until.eq(lease_end(now, lease)))
                .execute(conn)?;
                if taken == 0 {
                    return Ok(None);
                }
                Ok(Some(
                    sync_cursors::table
                        .find(&name)
                        .select(sync_cursors::position)
                        .first(conn)?,
                ))
            })
            .await
    }

    async fn advance(&self, name: &str, position: i64) -> Result<(), RepoError> {
        let name = name.to_owned();
        self.db
            .run(move |conn| {
                diesel::update(sync_cursors::table.find(&name))
                    .set(sync_cursors::position.eq(position))
                    .execute(conn)?;
                Ok(())
            })
            .await
    }

    async fn release(&self, name: &str) -> Result<(), RepoError> {
        let name = name.to_owned();
        self.db
            .run(move |conn| {
                diesel::update(sync_cursors::table.find(&name))
                    .set(sync_cursors::leased_until.eq(None::<NaiveDateTime>))
                    .execute(conn)?;
                Ok(())
            })
            .await
    }
}
