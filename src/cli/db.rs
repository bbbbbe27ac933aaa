//! `amosync db stats`: each table's approximate rows and bytes, and what retention
//! has deleted from it so far (the same figures `/metrics` exposes per process).

use super::{open_db, CliError, DbAction};
use crate::repositories::{pruned_totals, table_sizes, Db};
use crate::settings::Settings;

pub(super) async fn db(
    settings: Settings,
    logger: slog::Logger,
    action: DbAction,
) -> Result<(), CliError> {
    let db = open_db(&settings, &logger).await?;
    match action {
        DbAction::Stats => stats(&db).await,
    }
}

async fn stats(db: &Db) -> Result<(), CliError> {
    let tables = table_sizes(db).await?;
    let pruned = pruned_totals(db).await?;
    println!(
        "{:<24} {:>14} {:>16} {:>14}  last pruned (UTC)",
        "table", "rows (approx.)", "bytes (approx.)", "rows pruned"
    );
    for t in &tables {
        let total = pruned.iter().find(|p| p.table == t.table);
        println!(
            "{:<24} {:>14} {:>16} {:>14}  {}",
            t.table,
            t.rows,
            t.bytes,
            total.map_or(0, |p| p.pruned),
            total.and_then(|p| p.last_pruned_at).map_or_else(
                || "-".to_owned(),
                |at| at.format("%Y-%m-%d %H:%M:%S").to_string()
            ),
        );
    }
    Ok(())
}
