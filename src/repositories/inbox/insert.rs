//! The group commit's two statements, written so that a connection keeps them
//! prepared. Diesel prepares a multi-row INSERT built from a `Vec` (and any raw
//! SQL) anew on every call, a round trip of its own before the one that runs it;
//! under a flood of webhooks that doubled the round trips of every commit.

use diesel::mysql::{Mysql, MysqlConnection};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Binary, Unsigned, Varchar};
use diesel::{QueryResult, RunQueryDsl};

/// Which INSERTs stay prepared: a power of two of rows (the group commit makes
/// small batches that size) up to `CACHED_ROWS`, of at most `CACHED_BYTES` of
/// bodies. Diesel keeps a cached statement's last bound values until its next use,
/// so this bounds what a connection holds to five statements of at most 128 KiB;
/// with every row count cached, ten connections held ~15 MB of old bodies after a
/// flood. Other batches, large and cheap per row anyway, are prepared each time.
const CACHED_ROWS: usize = 16;
const CACHED_BYTES: usize = 128 * 1024;

fn keep_prepared(rows: &[(String, Vec<u8>)]) -> bool {
    let bytes: usize = rows
        .iter()
        .map(|(kind, body)| kind.len() + body.len())
        .sum();
    rows.len().is_power_of_two() && rows.len() <= CACHED_ROWS && bytes <= CACHED_BYTES
}

/// `INSERT INTO webhook_inbox (content_type, body) VALUES (?, ?), …` for `rows`.
pub(super) struct InsertDeliveries<'a> {
    pub rows: &'a [(String, Vec<u8>)],
}

impl QueryId for InsertDeliveries<'_> {
    type QueryId = ();
    // No type-level id: Diesel keys the prepared statement by its SQL, which
    // differs with the row count.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Mysql> for InsertDeliveries<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        if !keep_prepared(self.rows) {
            out.unsafe_to_cache_prepared();
        }
        out.push_sql("INSERT INTO webhook_inbox (content_type, body) VALUES ");
        for (n, (content_type, body)) in self.rows.iter().enumerate() {
            out.push_sql(if n == 0 { "(" } else { ", (" });
            out.push_bind_param::<Varchar, _>(content_type)?;
            out.push_sql(", ");
            out.push_bind_param::<Binary, _>(body)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl RunQueryDsl<MysqlConnection> for InsertDeliveries<'_> {}

/// `LAST_INSERT_ID()` (the first row's id of the last INSERT on the connection)
/// and the step between the ids of one INSERT's rows.
pub(super) struct InsertedBlock;

impl QueryId for InsertedBlock {
    type QueryId = InsertedBlock;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for InsertedBlock {
    type SqlType = (Unsigned<BigInt>, Unsigned<BigInt>);
}

impl QueryFragment<Mysql> for InsertedBlock {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        out.push_sql("SELECT LAST_INSERT_ID(), @@auto_increment_increment");
        Ok(())
    }
}

impl RunQueryDsl<MysqlConnection> for InsertedBlock {}
