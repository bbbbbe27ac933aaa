//! Rows and bytes per table, for `/metrics` and `amosync db stats`.
//!
//! The figures are the server's estimates from `information_schema` (InnoDB samples
//! them): cheap to read at every scrape, close enough to see a table outgrow its disk.

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};

use super::{Db, RepoError};
use crate::metrics::TableSize;

/// `TABLE_SIZES`' rows, read into the plain `TableSize` the gauges take.
#[derive(QueryableByName)]
struct TableRow {
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = BigInt)]
    rows: i64,
    #[diesel(sql_type = BigInt)]
    bytes: i64,
}

// Only amosync's own database; diesel's migration bookkeeping is not worth a series.
const TABLE_SIZES: &str = "SELECT CAST(TABLE_NAME AS CHAR) AS `table`, \
    CAST(COALESCE(TABLE_ROWS, 0) AS SIGNED) AS `rows`, \
    CAST(COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) AS SIGNED) AS bytes \
    FROM information_schema.TABLES \
    WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' \
      AND TABLE_NAME <> '__diesel_schema_migrations' \
    ORDER BY TABLE_NAME";

pub async fn table_sizes(db: &Db) -> Result<Vec<TableSize>, RepoError> {
    db.run(|conn| {
        let rows: Vec<TableRow> = diesel::sql_query(TABLE_SIZES).load(conn)?;
        Ok(rows
            .into_iter()
            .map(|row| TableSize {
                table: row.table,
                rows: row.rows,
                bytes: row.bytes,
            })
            .collect())
    })
    .await
}
