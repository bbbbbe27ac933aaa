//! Applying AmoCRM's view to the mirror in batches: multi-row upserts keyed by
//! `amocrm_id`, where a row only takes values that are at least as new as what it
//! holds (`amo_updated_at`), so late or repeated deliveries change nothing.

use async_trait::async_trait;
use diesel::mysql::{Mysql, MysqlConnection};
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, RunQueryDsl};

use super::db::{retry_deadlocks, Db};
use super::RepoError;

/// Rows per INSERT: far below MySQL's placeholder limit, large enough that a burst
/// of a thousand entities costs a handful of statements.
const CHUNK: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactChange {
    pub amocrm_id: i64,
    pub name: Option<String>,
    /// E.164, or none when the contact has no usable phone.
    pub phone: Option<String>,
    pub changed_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadChange {
    pub amocrm_id: i64,
    /// `None` for events that do not carry it (status changes); the stored value stays.
    pub name: Option<String>,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub contact_amocrm_id: Option<i64>,
    pub changed_at: i64,
}

/// A delete or restore of one record. AmoCRM's delete events carry only the id:
/// without a time of their own they apply as they come (AmoCRM sends them in order),
/// rather than losing to an `updated_at` stamped a moment ahead of our clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    pub amocrm_id: i64,
    pub changed_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorBatch {
    pub contacts: Vec<ContactChange>,
    pub leads: Vec<LeadChange>,
    pub contact_deletes: Vec<Removal>,
    pub contact_restores: Vec<Removal>,
    pub lead_deletes: Vec<Removal>,
    pub lead_restores: Vec<Removal>,
    /// `(lead amocrm_id, contact amocrm_id)` from contacts' `linked_leads_id`.
    pub links: Vec<(i64, i64)>,
}

impl MirrorBatch {
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
            && self.leads.is_empty()
            && self.contact_deletes.is_empty()
            && self.contact_restores.is_empty()
            && self.lead_deletes.is_empty()
            && self.lead_restores.is_empty()
            && self.links.is_empty()
    }

    /// Sorts every list by the row it locks (stable: a record's changes keep their
    /// order). Transactions that lock rows in one order wait for each other instead
    /// of deadlocking, and the worker applies overlapping batches side by side.
    fn in_lock_order(&mut self) {
        self.contacts.sort_by_key(|c| c.amocrm_id);
        self.leads.sort_by_key(|l| l.amocrm_id);
        for removals in [
            &mut self.contact_deletes,
            &mut self.contact_restores,
            &mut self.lead_deletes,
            &mut self.lead_restores,
        ] {
            removals.sort_by_key(|r| r.amocrm_id);
        }
        self.links.sort_by_key(|(lead, _)| *lead);
    }

    pub fn extend(&mut self, other: MirrorBatch) {
        self.contacts.extend(other.contacts);
        self.leads.extend(other.leads);
        self.contact_deletes.extend(other.contact_deletes);
        self.contact_restores.extend(other.contact_restores);
        self.lead_deletes.extend(other.lead_deletes);
        self.lead_restores.extend(other.lead_restores);
        self.links.extend(other.links);
    }
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait MirrorRepository: Send + Sync {
    /// Applies the whole batch in one transaction; returns the statements it took.
    async fn apply(&self, batch: MirrorBatch) -> Result<usize, RepoError>;

    /// `apply`, marking the webhook inbox rows the batch came from processed in the
    /// same transaction: a delivery counts as processed exactly when its changes are
    /// in, and the batch costs one commit.
    async fn apply_deliveries(
        &self,
        batch: MirrorBatch,
        inbox_ids: Vec<i64>,
    ) -> Result<usize, RepoError>;
}

pub struct MysqlMirrorRepository {
    db: Db,
}

impl MysqlMirrorRepository {
    pub fn new(db: Db) -> Self {
        MysqlMirrorRepository { db }
    }
}

#[async_trait]
impl MirrorRepository for MysqlMirrorRepository {
    async fn apply(&self, mut batch: MirrorBatch) -> Result<usize, RepoError> {
        if batch.is_empty() {
            return Ok(0);
        }
        batch.in_lock_order();
        self.db
            .run(move |conn| {
                retry_deadlocks(conn, |conn| conn.transaction(|conn| apply(conn, &batch)))
            })
            .await
    }

    async fn apply_deliveries(
        &self,
        mut batch: MirrorBatch,
        inbox_ids: Vec<i64>,
    ) -> Result<usize, RepoError> {
        batch.in_lock_order();
        self.db
            .run(move |conn| {
                retry_deadlocks(conn, |conn| {
                    conn.transaction(|conn| {
                        let statements = apply(conn, &batch)?;
                        super::inbox::mark_processed(conn, &inbox_ids)?;
                        Ok(statements + 1)
                    })
                })
            })
            .await
    }
}

type Query = BoxedSqlQuery<'static, Mysql, diesel::query_builder::SqlQuery>;

fn query(sql: String) -> Query {
    diesel::sql_query(sql).into_boxed()
}

fn placeholders(rows: usize, row: &str) -> String {
    vec![row; rows].join(", ")
}

/// `true` when the incoming row is at least as new as the stored one.
const NEWER: &str = "VALUES(amo_updated_at) >= COALESCE(amo_updated_at, 0)";
/// Assigned last: MySQL evaluates ON DUPLICATE KEY assignments left to right.
const KEEP_NEWEST: &str =
    "amo_updated_at = GREATEST(COALESCE(amo_updated_at, 0), VALUES(amo_updated_at))";

fn apply(conn: &mut MysqlConnection, batch: &MirrorBatch) -> Result<usize, RepoError> {
    let mut statements = 0;
    for chunk in batch.contacts.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO contacts (amocrm_id, name, phone, sync_status, amo_updated_at) VALUES {} \
             ON DUPLICATE KEY UPDATE \
             name = IF({NEWER} AND VALUES(name) <> '', VALUES(name), name), \
             phone = IF({NEWER}, VALUES(phone), phone), \
             sync_status = 'synced', sync_error = NULL, {KEEP_NEWEST}",
            placeholders(chunk.len(), "(?, ?, ?, 'synced', ?)")
        );
        let mut q = query(sql);
        for c in chunk {
            q = q
                .bind::<BigInt, _>(c.amocrm_id)
                .bind::<Text, _>(c.name.clone().unwrap_or_default())
                .bind::<Nullable<Text>, _>(c.phone.clone())
                .bind::<BigInt, _>(c.changed_at);
        }
        q.execute(conn)?;
        statements += 1;
    }
    for chunk in batch.leads.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO leads (amocrm_id, name, price, status_id, pipeline_id, contact_amocrm_id, \
             sync_status, amo_updated_at) VALUES {} \
             ON DUPLICATE KEY UPDATE \
             name = IF({NEWER} AND VALUES(name) <> '', VALUES(name), name), \
             price = IF({NEWER}, COALESCE(VALUES(price), price), price), \
             status_id = IF({NEWER}, COALESCE(VALUES(status_id), status_id), status_id), \
             pipeline_id = IF({NEWER}, COALESCE(VALUES(pipeline_id), pipeline_id), pipeline_id), \
             contact_amocrm_id = IF({NEWER}, COALESCE(VALUES(contact_amocrm_id), contact_amocrm_id), \
             contact_amocrm_id), \
             sync_status = 'synced', sync_error = NULL, {KEEP_NEWEST}",
            placeholders(chunk.len(), "(?, ?, ?, ?, ?, ?, 'synced', ?)")
        );
        let mut q = query(sql);
        for l in chunk {
            q = q
                .bind::<BigInt, _>(l.amocrm_id)
                .bind::<Text, _>(l.name.clone().unwrap_or_default())
                .bind::<Nullable<BigInt>, _>(l.price)
                .bind::<Nullable<BigInt>, _>(l.status_id)
                .bind::<Nullable<BigInt>, _>(l.pipeline_id)
                .bind::<Nullable<BigInt>, _>(l.contact_amocrm_id)
                .bind::<BigInt, _>(l.changed_at);
        }
        q.execute(conn)?;
        statements += 1;
    }
    statements += delete(conn, "contacts", &batch.contact_deletes)?;
    statements += delete(conn, "leads", &batch.lead_deletes)?;
    statements += restore(conn, "contacts", &batch.contact_restores)?;
    statements += restore(conn, "leads", &batch.lead_restores)?;
    statements += link(conn, batch)?;
    Ok(statements)
}

/// Soft-deletes, batched. A delete for a record the mirror never saw leaves a
/// tombstone (upserts never clear `deleted_at`), so a late "add" cannot bring it back.
/// A timed delete loses to newer data; an untimed one (AmoCRM's usual) applies.
fn delete(
    conn: &mut MysqlConnection,
    table: &str,
    removals: &[Removal],
) -> Result<usize, RepoError> {
    let mut statements = 0;
    for chunk in removals.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO {table} (amocrm_id, name, sync_status, amo_updated_at, deleted_at) VALUES {} \
             ON DUPLICATE KEY UPDATE \
             deleted_at = IF(VALUES(amo_updated_at) IS NULL OR {NEWER}, COALESCE(deleted_at, NOW(6)), deleted_at), \
             amo_updated_at = IF(VALUES(amo_updated_at) IS NULL, amo_updated_at, \
             GREATEST(COALESCE(amo_updated_at, 0), VALUES(amo_updated_at)))",
            placeholders(chunk.len(), "(?, '', 'synced', ?, NOW(6))")
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

/// Restores are rare; one statement each keeps the per-row time check simple.
fn restore(
    conn: &mut MysqlConnection,
    table: &str,
    removals: &[Removal],
) -> Result<usize, RepoError> {
    for r in removals {
        query(format!(
            "UPDATE {table} SET deleted_at = NULL, \
             amo_updated_at = GREATEST(COALESCE(amo_updated_at, 0), COALESCE(?, 0)) \
             WHERE amocrm_id = ? AND (? IS NULL OR COALESCE(amo_updated_at, 0) <= ?)"
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
        let cases = placeholders(chunk.len(), "WHEN ? THEN ?");
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

    fn contact(amocrm_id: i64, name: &str) -> ContactChange {
        ContactChange {
            amocrm_id,
            name: Some(name.into()),
            phone: None,
            changed_at: 1,
        }
    }

    #[test]
    fn lock_order_sorts_by_record_and_keeps_each_records_changes_in_order() {
        let mut batch = MirrorBatch {
            contacts: vec![
                contact(9, "a"),
                contact(3, "b"),
                contact(9, "c"),
                contact(1, "d"),
            ],
            links: vec![(20, 1), (10, 2), (20, 3)],
            ..MirrorBatch::default()
        };
        batch.in_lock_order();
        let contacts: Vec<_> = batch
            .contacts
            .iter()
            .map(|c| (c.amocrm_id, c.name.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(contacts, [(1, "d"), (3, "b"), (9, "a"), (9, "c")]);
        assert_eq!(batch.links, [(10, 2), (20, 1), (20, 3)]);
    }
}
