//! Facts that make the mirror authoritative, shared by every instance: when the full
//! import finished, when our webhook was last seen active in AmoCRM, when
//! reconciliation last caught up. Ages come from the database clock, so instances
//! whose clocks drift still agree on how old a fact is.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::db::Db;
use super::RepoError;
use crate::schema::mirror_facts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorFact {
    /// `amosync sync --full` walked every contact and lead of the account.
    FullImport,
    /// AmoCRM's webhook list holds ours, enabled, with the events the mirror needs.
    WebhookActive,
    /// A reconciliation round caught up with AmoCRM's changes.
    Reconciled,
}

impl MirrorFact {
    pub fn name(self) -> &'static str {
        match self {
            MirrorFact::FullImport => "full_import",
            MirrorFact::WebhookActive => "webhook_active",
            MirrorFact::Reconciled => "reconciled",
        }
    }
}

/// Seconds since each fact was recorded; `None` when it is not recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FactAges {
    pub full_import: Option<i64>,
    pub webhook_active: Option<i64>,
    pub reconciled: Option<i64>,
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait MirrorFactRepository: Send + Sync {
    /// Records the fact as of now.
    async fn record(&self, fact: MirrorFact) -> Result<(), RepoError>;

    /// Withdraws the fact (it no longer holds).
    async fn clear(&self, fact: MirrorFact) -> Result<(), RepoError>;

    async fn ages(&self) -> Result<FactAges, RepoError>;
}

pub struct MysqlMirrorFactRepository {
    db: Db,
}

impl MysqlMirrorFactRepository {
    pub fn new(db: Db) -> Self {
        MysqlMirrorFactRepository { db }
    }
}

#[derive(QueryableByName)]
struct Age {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    age: i64,
}

#[async_trait]
impl MirrorFactRepository for MysqlMirrorFactRepository {
    async fn record(&self, fact: MirrorFact) -> Result<(), RepoError> {
        self.db
            .run(move |conn| {
                diesel::sql_query(
                    "INSERT INTO mirror_facts (name, recorded_at) VALUES (?, NOW(6)) \
                     ON DUPLICATE KEY UPDATE recorded_at = NOW(6)",
                )
                .bind::<Text, _>(fact.name())
                .execute(conn)?;
                Ok(())
            })
            .await
    }

    async fn clear(&self, fact: MirrorFact) -> Result<(), RepoError> {
        self.db
            .run(move |conn| {
                diesel::delete(mirror_facts::table.find(fact.name())).execute(conn)?;
                Ok(())
            })
            .await
    }

    async fn ages(&self) -> Result<FactAges, RepoError> {
        self.db
            .run(|conn| {
                let rows: Vec<Age> = diesel::sql_query(
                    "SELECT name, CAST(TIMESTAMPDIFF(SECOND, recorded_at, NOW(6)) AS SIGNED) AS age \
                     FROM mirror_facts",
                )
                .load(conn)?;
                let age_of = |fact: MirrorFact| {
                    rows.iter()
                        .find(|row| row.name == fact.name())
                        .map(|row| row.age)
                };
                Ok(FactAges {
                    full_import: age_of(MirrorFact::FullImport),
                    webhook_active: age_of(MirrorFact::WebhookActive),
                    reconciled: age_of(MirrorFact::Reconciled),
                })
            })
            .await
    }
}
