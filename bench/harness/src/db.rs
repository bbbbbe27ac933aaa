//! The few tables the suite touches, as amosync's migrations define them, and small
//! query helpers.

use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;
use diesel::{Connection, RunQueryDsl};

diesel::table! {
    webhook_inbox (id) {
        id -> BigInt,
        content_type -> Varchar,
        body -> Blob,
        status -> Varchar,
    }
}

diesel::table! {
    contacts (id) {
        id -> BigInt,
        amocrm_id -> Nullable<BigInt>,
        name -> Varchar,
        phone -> Nullable<Varchar>,
        sync_status -> Varchar,
        sync_attempts -> Integer,
        sync_error -> Nullable<Varchar>,
        sync_lease_until -> Nullable<Datetime>,
        amo_updated_at -> Nullable<BigInt>,
        deleted_at -> Nullable<Datetime>,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

/// A connection set up like amosync's pooled ones (UTC, utf8mb4).
pub fn connect(url: &str) -> crate::Result<MysqlConnection> {
    let mut conn = MysqlConnection::establish(url).map_err(|e| format!("connect {url}: {e}"))?;
    conn.batch_execute("SET time_zone = '+00:00', NAMES utf8mb4")
        .map_err(|e| format!("session setup: {e}"))?;
    Ok(conn)
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The first column of a query that returns one `BIGINT` named `n`.
pub fn scalar(conn: &mut MysqlConnection, sql: &str) -> crate::Result<i64> {
    let rows: Vec<Count> = diesel::sql_query(sql)
        .load(conn)
        .map_err(|e| format!("{sql}: {e}"))?;
    Ok(rows.first().map(|r| r.n).unwrap_or(0))
}
