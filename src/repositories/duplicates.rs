//! AmoCRM contacts that share one phone. AmoCRM allows it and the mirror follows
//! AmoCRM, so such pairs are found in the mirror after changes are applied, recorded
//! once, and listed for an operator to merge in AmoCRM.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Datetime, Text};

use super::db::Db;
use super::RepoError;

/// Rows per lookup: far below MySQL's placeholder limit.
const CHUNK: usize = 500;

/// Two AmoCRM contacts with one phone, the lower AmoCRM id first.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct DuplicatePair {
    #[diesel(sql_type = BigInt)]
    pub first_amocrm_id: i64,
    #[diesel(sql_type = BigInt)]
    pub second_amocrm_id: i64,
    /// E.164.
    #[diesel(sql_type = Text)]
    pub phone: String,
}

/// A recorded pair and when it was first found.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct RecordedDuplicate {
    #[diesel(embed)]
    pub pair: DuplicatePair,
    #[diesel(sql_type = Datetime)]
    pub detected_at: NaiveDateTime,
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait DuplicateRepository: Send + Sync {
    /// Pairs formed by the mirrored AmoCRM contacts `amocrm_ids` and any other live
    /// mirrored AmoCRM contact with the same phone; records them and returns only the
    /// pairs not recorded before, so each is reported once.
    async fn detect(&self, amocrm_ids: Vec<i64>) -> Result<Vec<DuplicatePair>, RepoError>;

    /// Recorded pairs whose two contacts still share the phone in the mirror, newest first.
    async fn open(&self, limit: i64) -> Result<Vec<RecordedDuplicate>, RepoError>;
}

pub struct MysqlDuplicateRepository {
    db: Db,
}

impl MysqlDuplicateRepository {
    pub fn new(db: Db) -> Self {
        MysqlDuplicateRepository { db }
    }
}

#[async_trait]
impl DuplicateRepository for MysqlDuplicateRepository {
    async fn detect(&self, amocrm_ids: Vec<i64>) -> Result<Vec<DuplicatePair>, RepoError> {
        if amocrm_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.db
            .run(move |conn| {
                let mut found: Vec<DuplicatePair> = Vec::new();
                for chunk in amocrm_ids.chunks(CHUNK) {
                    let sql = format!(
                        "SELECT DISTINCT LEAST(a.amocrm_id, b.amocrm_id) AS first_amocrm_id, \
                         GREATEST(a.amocrm_id, b.amocrm_id) AS second_amocrm_id, a.phone AS phone \
                         FROM contacts a JOIN contacts b \
                         ON b.phone = a.phone AND b.amocrm_id <> a.amocrm_id \
                         WHERE a.amocrm_id IN ({}) AND a.deleted_at IS NULL AND b.deleted_at IS NULL",
                        vec!["?"; chunk.len()].join(", ")
                    );
                    let mut query = diesel::sql_query(sql).into_boxed();
                    for id in chunk {
                        query = query.bind::<BigInt, _>(*id);
                    }
                    found.extend(query.load::<DuplicatePair>(conn)?);
                }
                found.sort_by_key(|p| (p.first_amocrm_id, p.second_amocrm_id));
                found.dedup_by_key(|p| (p.first_amocrm_id, p.second_amocrm_id));
                let mut new = Vec::new();
                // Duplicates are rare: one statement per pair keeps "new or not" exact.
                for pair in found {
                    let inserted = diesel::sql_query(
                        "INSERT IGNORE INTO contact_duplicates \
                         (first_amocrm_id, second_amocrm_id, phone, detected_at) \
                         VALUES (?, ?, ?, NOW(6))",
                    )
                    .bind::<BigInt, _>(pair.first_amocrm_id)
                    .bind::<BigInt, _>(pair.second_amocrm_id)
                    .bind::<Text, _>(&pair.phone)
                    .execute(conn)?;
                    if inserted > 0 {
                        new.push(pair);
                    }
                }
                Ok(new)
            })
            .await
    }

    async fn open(&self, limit: i64) -> Result<Vec<RecordedDuplicate>, RepoError> {
        self.db
            .run(move |conn| {
                Ok(diesel::sql_query(
                    "SELECT d.first_amocrm_id, d.second_amocrm_id, d.phone, d.detected_at \
                     FROM contact_duplicates d \
                     JOIN contacts a ON a.amocrm_id = d.first_amocrm_id \
                       AND a.deleted_at IS NULL AND a.phone = d.phone \
                     JOIN contacts b ON b.amocrm_id = d.second_amocrm_id \
                       AND b.deleted_at IS NULL AND b.phone = d.phone \
                     ORDER BY d.detected_at DESC, d.first_amocrm_id LIMIT ?",
                )
                .bind::<BigInt, _>(limit)
                .load(conn)?)
            })
            .await
    }
}
