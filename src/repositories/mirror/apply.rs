//! The statements of one mirror batch, all inside the caller's transaction.

use diesel::mysql::{Mysql, MysqlConnection};
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::RunQueryDsl;

use super::{CompanyChange, ContactChange, LeadChange, MirrorBatch, Removal};
use crate::domain::SyncStatus;
use crate::repositories::RepoError;

/// Rows per INSERT: far below MySQL's placeholder limit, large enough that a burst
/// of a thousand entities costs a handful of statements.
const CHUNK: usize = 500;

type Query = BoxedSqlQuery<'static, Mysql, diesel::query_builder::SqlQuery>;

fn query(sql: String) -> Query {
    diesel::sql_query(sql).into_boxed()
}

/// `rows` copies of `row`, each separated by `separator`.
fn repeated(rows: usize, row: &str, separator: &str) -> String {
    vec![row; rows].join(separator)
}

fn placeholders(rows: usize, row: &str) -> String {
    repeated(rows, row, ", ")
}

/// `true` when the incoming row is at least as new as the stored one.
const NEWER: &str = "VALUES(amo_updated_at) >= COALESCE(amo_updated_at, 0)";
/// Assigned last: MySQL evaluates ON DUPLICATE KEY assignments left to right.
const KEEP_NEWEST: &str =
    "amo_updated_at = GREATEST(COALESCE(amo_updated_at, 0), VALUES(amo_updated_at))";

/// The `name` assignment of an upsert: changes that carry a name (empty included)
/// and changes that carry none go in separate statements, since a multi-row
/// `VALUES` cannot say "absent" for a NOT NULL column.
fn name_rule(carried: bool) -> String {
    if carried {
        format!("name = IF({NEWER}, VALUES(name), name), ")
    } else {
        String::new()
    }
}

pub(super) fn apply(conn: &mut MysqlConnection, batch: &MirrorBatch) -> Result<usize, RepoError> {
    let mut statements = 0;
    for carried in [true, false] {
        let contacts: Vec<&ContactChange> = batch
            .contacts
            .iter()
            .filter(|c| c.name.is_some() == carried)
            .collect();
        statements += upsert_contacts(conn, &contacts, carried)?;
        let leads: Vec<&LeadChange> = batch
            .leads
            .iter()
            .filter(|l| l.name.is_some() == carried)
            .collect();
        statements += upsert_leads(conn, &leads, carried)?;
        let companies: Vec<&CompanyChange> = batch
            .companies
            .iter()
            .filter(|c| c.name.is_some() == carried)
            .collect();
        statements += upsert_companies(conn, &companies, carried)?;
    }
    statements += delete(conn, Table::Contacts, &batch.contact_deletes)?;
    statements += delete(conn, Table::Leads, &batch.lead_deletes)?;
    statements += delete(conn, Table::Companies, &batch.company_deletes)?;
    statements += restore(conn, Table::Contacts, &batch.contact_restores)?;
    statements += restore(conn, Table::Leads, &batch.lead_restores)?;
    statements += restore(conn, Table::Companies, &batch.company_restores)?;
    statements += link(conn, batch)?;
    statements += crate::repositories::refetch::enqueue(conn, &batch.refetch)?;
    Ok(statements)
}

/// One multi-row statement per `CHUNK` changes: `sql` gets the row count, `bind`
/// binds one change's values in `VALUES` order.
fn in_chunks<T>(
    conn: &mut MysqlConnection,
    changes: &[&T],
    sql: impl Fn(usize) -> String,
    bind: impl Fn(Query, &T) -> Query,
) -> Result<usize, RepoError> {
    let mut statements = 0;
    for chunk in changes.chunks(CHUNK) {
        let q = chunk
            .iter()
            .fold(query(sql(chunk.len())), |q, c| bind(q, c));
        q.execute(conn)?;
        statements += 1;
    }
    Ok(statements)
}

fn upsert_contacts(
    conn: &mut MysqlConnection,
    changes: &[&ContactChange],
    carried: bool,
) -> Result<usize, RepoError> {
    // What AmoCRM sends is by definition synced.
    let synced = SyncStatus::Synced;
    let row = format!("(?, ?, ?, '{synced}', ?)");
    let sql = |rows| {
        format!(
            "INSERT INTO contacts (amocrm_id, name, phone, sync_status, amo_updated_at) VALUES {} \
             ON DUPLICATE KEY UPDATE {}\
             phone = IF({NEWER}, VALUES(phone), phone), \
             sync_status = '{synced}', sync_error = NULL, {KEEP_NEWEST}",
            placeholders(rows, &row),
            name_rule(carried)
        )
    };
    in_chunks(conn, changes, sql, |q, c| {
        q.bind::<BigInt, _>(c.amocrm_id)
            .bind::<Text, _>(c.name.clone().unwrap_or_default())
            .bind::<Nullable<Text>, _>(c.phone.clone())
            .bind::<BigInt, _>(c.changed_at)
    })
}

fn upsert_leads(
    conn: &mut MysqlConnection,
    changes: &[&LeadChange],
    carried: bool,
) -> Result<usize, RepoError> {
    let synced = SyncStatus::Synced;
    let row = format!("(?, ?, ?, ?, ?, ?, '{synced}', ?)");
    let sql = |rows| {
        format!(
            "INSERT INTO leads (amocrm_id, name, price, status_id, pipeline_id, contact_amocrm_id, \
             sync_status, amo_updated_at) VALUES {} \
             ON DUPLICATE KEY UPDATE {}\
             price = IF({NEWER}, COALESCE(VALUES(price), price), price), \
             status_id = IF({NEWER}, COALESCE(VALUES(status_id), status_id), status_id), \
             pipeline_id = IF({NEWER}, COALESCE(VALUES(pipeline_id), pipeline_id), pipeline_id), \
             contact_amocrm_id = IF({NEWER}, COALESCE(VALUES(contact_amocrm_id), contact_amocrm_id), \
             contact_amocrm_id), \
             sync_status = '{synced}', sync_error = NULL, {KEEP_NEWEST}",
            placeholders(rows, &row),
            name_rule(carried)
        )
    };
    in_chunks(conn, changes, sql, |q, l| {
        q.bind::<BigInt, _>(l.amocrm_id)
            .bind::<Text, _>(l.name.clone().unwrap_or_default())
            .bind::<Nullable<BigInt>, _>(l.price)
            .bind::<Nullable<BigInt>, _>(l.status_id)
            .bind::<Nullable<BigInt>, _>(l.pipeline_id)
            .bind::<Nullable<BigInt>, _>(l.contact_amocrm_id)
            .bind::<BigInt, _>(l.changed_at)
    })
}

fn upsert_companies(
    conn: &mut MysqlConnection,
    changes: &[&CompanyChange],
    carried: bool,
) -> Result<usize, RepoError> {
    let sql = |rows| {
        format!(
            "INSERT INTO companies (amocrm_id, name, responsible_user_id, amo_updated_at) VALUES {} \
             ON DUPLICATE KEY UPDATE {}\
             responsible_user_id = IF({NEWER}, \
             COALESCE(VALUES(responsible_user_id), responsible_user_id), responsible_user_id), \
             {KEEP_NEWEST}",
            placeholders(rows, "(?, ?, ?, ?)"),
            name_rule(carried)
        )
    };
    in_chunks(conn, changes, sql, |q, c| {
        q.bind::<BigInt, _>(c.amocrm_id)
            .bind::<Text, _>(c.name.clone().unwrap_or_default())
            .bind::<Nullable<BigInt>, _>(c.responsible_user_id)
            .bind::<BigInt, _>(c.changed_at)
    })
}

#[derive(Clone, Copy)]
enum Table {
    Contacts,
    Leads,
    Companies,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Contacts => "contacts",
            Table::Leads => "leads",
            Table::Companies => "companies",
        }
    }

    /// The columns and row of a tombstone for a record the mirror never saw.
    fn tombstone(self) -> (&'static str, String) {
        match self {
            Table::Contacts | Table::Leads => (
                "(amocrm_id, name, sync_status, amo_updated_at, deleted_at)",
                format!("(?, '', '{}', ?, NOW(6))", SyncStatus::Synced),
            ),
            Table::Companies => (
                "(amocrm_id, name, amo_updated_at, deleted_at)",
                "(?, '', ?, NOW(6))".to_owned(),
            ),
        }
    }
}

/// Soft-deletes, batched. A delete for a record the mirror never saw leaves a
/// tombstone (upserts never clear `deleted_at`), so a late "add" cannot bring it back.
/// A timed delete loses to newer data; an untimed one (AmoCRM's usual) applies.
fn delete(
    conn: &mut MysqlConnection,
    table: Table,
    removals: &[Removal],
) -> Result<usize, RepoError> {
    let mut statements = 0;
    let (columns, row) = table.tombstone();
    for chunk in removals.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO {} {columns} VALUES {} \
             ON DUPLICATE KEY UPDATE \
             deleted_at = IF(VALUES(amo_updated_at) IS NULL OR {NEWER}, COALESCE(deleted_at, NOW(6)), deleted_at), \
             amo_updated_at = IF(VALUES(amo_updated_at) IS NULL, amo_updated_at, \
             GREATEST(COALESCE(amo_updated_at, 0), VALUES(amo_updated_at)))",
            table.name(),
            placeholders(chunk.len(), &row)
        );
        let mut q = query(sql);
        for r in chunk {
            q = q
                .bind::<BigInt, _>(r.amocrm_id)
                .bind::<Nullable<BigInt>, _>(r.changed_at);
        }
        q.execute(conn)?;
        statements += 1;
    }
    Ok(statements)
}

/// Restores are rare; one statement each keeps the per-row time check simple. A
/// restore that carries the record was upserted just before (`to_batch` adds both),
/// so a record the mirror did not hold exists by now and comes back whole.
fn restore(
    conn: &mut MysqlConnection,
    table: Table,
    removals: &[Removal],
) -> Result<usize, RepoError> {
    for r in removals {
        query(format!(
            "UPDATE {} SET deleted_at = NULL, \
             amo_updated_at = GREATEST(COALESCE(amo_updated_at, 0), COALESCE(?, 0)) \
             WHERE amocrm_id = ? AND (? IS NULL OR COALESCE(amo_updated_at, 0) <= ?)",
            table.name()
        ))
        .bind::<Nullable<BigInt>, _>(r.changed_at)
        .bind::<BigInt, _>(r.amocrm_id)
        .bind::<Nullable<BigInt>, _>(r.changed_at)
        .bind::<Nullable<BigInt>, _>(r.changed_at)
        .execute(conn)?;
    }
    Ok(removals.len())
}

/// Records contacts' `linked_leads_id` on leads that name no main contact yet, then
/// points every touched lead at its contact's local id where that contact is mirrored.
fn link(conn: &mut MysqlConnection, batch: &MirrorBatch) -> Result<usize, RepoError> {
    let mut statements = 0;
    for chunk in batch.links.chunks(CHUNK) {
        // `CASE x WHEN a THEN b WHEN c THEN d END`: the branches take no commas.
        let cases = repeated(chunk.len(), "WHEN ? THEN ?", " ");
        let sql = format!(
            "UPDATE leads SET contact_amocrm_id = CASE amocrm_id {cases} END \
             WHERE contact_amocrm_id IS NULL AND amocrm_id IN ({})",
            placeholders(chunk.len(), "?")
        );
        let mut q = query(sql);
        for (lead, contact) in chunk {
            q = q.bind::<BigInt, _>(*lead).bind::<BigInt, _>(*contact);
        }
        for (lead, _) in chunk {
            q = q.bind::<BigInt, _>(*lead);
        }
        q.execute(conn)?;
        statements += 1;
    }
    let lead_ids: Vec<i64> = batch
        .leads
        .iter()
        .map(|l| l.amocrm_id)
        .chain(batch.links.iter().map(|l| l.0))
        .collect();
    let contact_ids: Vec<i64> = batch.contacts.iter().map(|c| c.amocrm_id).collect();
    for (column, ids) in [("l.amocrm_id", lead_ids), ("c.amocrm_id", contact_ids)] {
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "UPDATE leads l JOIN contacts c ON c.amocrm_id = l.contact_amocrm_id \
                 SET l.contact_id = c.id \
                 WHERE (l.contact_id IS NULL OR l.contact_id <> c.id) AND {column} IN ({})",
                placeholders(chunk.len(), "?")
            );
            let mut q = query(sql);
            for id in chunk {
                q = q.bind::<BigInt, _>(*id);
            }
            q.execute(conn)?;
            statements += 1;
        }
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_branches_are_separated_by_spaces_and_values_by_commas() {
        assert_eq!(
            repeated(3, "WHEN ? THEN ?", " "),
            "WHEN ? THEN ? WHEN ? THEN ? WHEN ? THEN ?"
        );
        assert_eq!(placeholders(2, "(?, ?)"), "(?, ?), (?, ?)");
    }
}
