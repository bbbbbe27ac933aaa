//! Heartbeats of the instances sharing the AmoCRM rate limit.

use std::time::Duration;

use async_trait::async_trait;
use diesel::prelude::*;

use super::db::Db;
use super::sync_state::db_now;
use super::RepoError;
use crate::schema::amo_senders;

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait SenderRepository: Send + Sync {
    /// Marks `instance_id` alive now, forgets instances silent for longer than
    /// `alive`, and returns how many are alive (this one included).
    async fn heartbeat(&self, instance_id: &str, alive: Duration) -> Result<u32, RepoError>;

    /// Leaves the circle at shutdown, so the others take over its share at once.
    async fn leave(&self, instance_id: &str) -> Result<(), RepoError>;
}

pub struct MysqlSenderRepository {
    db: Db,
}

impl MysqlSenderRepository {
    pub fn new(db: Db) -> Self {
        MysqlSenderRepository { db }
    }
}

#[async_trait]
impl SenderRepository for MysqlSenderRepository {
    async fn heartbeat(&self, instance_id: &str, alive: Duration) -> Result<u32, RepoError> {
        let id = instance_id.to_owned();
        self.db
            .run(move |conn| {
                let now = db_now(conn)?;
                let cutoff =
                    now - chrono::Duration::from_std(alive).unwrap_or(chrono::Duration::seconds(6));
                diesel::replace_into(amo_senders::table)
                    .values((
                        amo_senders::instance_id.eq(&id),
                        amo_senders::seen_at.eq(now),
                    ))
                    .execute(conn)?;
                diesel::delete(amo_senders::table.filter(amo_senders::seen_at.lt(cutoff)))
                    .execute(conn)?;
                let live: i64 = amo_senders::table.count().get_result(conn)?;
                Ok(u32::try_from(live).unwrap_or(u32::MAX).max(1))
            })
            .await
    }

    async fn leave(&self, instance_id: &str) -> Result<(), RepoError> {
        let id = instance_id.to_owned();
        self.db
            .run(move |conn| {
                diesel::delete(amo_senders::table.find(&id)).execute(conn)?;
                Ok(())
            })
            .await
    }
}
