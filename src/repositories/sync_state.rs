//! Pieces shared by the repositories' claim/finish/fail steps.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::mysql::MysqlConnection;
use diesel::sql_types::{BigInt, Datetime, Unsigned};
use diesel::RunQueryDsl;
use sha2::{Digest, Sha256};

use super::RepoError;

/// The stored error text is bounded by its column.
pub const MAX_ERROR_LEN: usize = 500;

/// How long `claim` waits for the named lock of one record key.
pub const CLAIM_LOCK_TIMEOUT_SECS: i32 = 10;

/// MySQL's clock, so leases mean the same on every instance.
pub fn db_now(conn: &mut MysqlConnection) -> Result<NaiveDateTime, RepoError> {
    Ok(diesel::select(diesel::dsl::sql::<Datetime>("NOW(6)")).get_result(conn)?)
}

pub fn lease_end(now: NaiveDateTime, lease: Duration) -> NaiveDateTime {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

pub fn lease_is_live(lease_until: Option<NaiveDateTime>, now: NaiveDateTime) -> bool {
    lease_until.is_some_and(|until| until > now)
}

pub fn last_insert_id(conn: &mut MysqlConnection) -> Result<i64, RepoError> {
    let id: u64 = diesel::select(diesel::dsl::sql::<Unsigned<BigInt>>("LAST_INSERT_ID()"))
        .get_result(conn)?;
    i64::try_from(id).map_err(|_| RepoError::Query(format!("insert id {id} out of range").into()))
}

/// A MySQL named-lock name (at most 64 characters) for one record identity.
/// Hashing keeps long lead names within the limit; a collision only serialises two claims.
pub fn lock_name(kind: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("amosync:{kind}:{hex}")
}

pub fn bounded_error(error: &str) -> String {
    error.chars().take(MAX_ERROR_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_fit_mysql_and_differ_by_key() {
        let long = "x".repeat(1000);
        let a = lock_name("lead", &long);
        assert!(a.len() <= 64, "{a}");
        assert_ne!(
            lock_name("contact", "+79161234567"),
            lock_name("contact", "+79161234568")
        );
        assert_eq!(lock_name("contact", "+7916"), lock_name("contact", "+7916"));
    }

    #[test]
    fn leases_expire_by_the_database_clock() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .map(|d| d.naive_utc())
            .expect("ts");
        let until = lease_end(now, Duration::from_secs(30));
        assert!(lease_is_live(Some(until), now));
        assert!(!lease_is_live(Some(until), until));
        assert!(!lease_is_live(None, now));
    }
}
