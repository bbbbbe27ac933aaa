//! Work one instance at a time: under a named lease in `sync_cursors`, freed after.

use std::future::Future;
use std::time::Duration;

use slog::Logger;

use crate::repositories::{CursorRepository, RepoError};

/// Runs `work` while this instance holds the lease `name` (for at most `lease`), then
/// frees it whatever `work` came to; `None` without running it when another
/// instance holds the lease. A lease that cannot be freed lapses by itself: logged.
pub async fn while_leased<T, E: From<RepoError>>(
    cursors: &dyn CursorRepository,
    name: &str,
    lease: Duration,
    logger: &Logger,
    work: impl Future<Output = Result<T, E>>,
) -> Result<Option<T>, E> {
    if cursors.lease(name, 0, lease).await?.is_none() {
        return Ok(None);
    }
    let outcome = work.await;
    if let Err(err) = cursors.release(name).await {
        slog::warn!(logger, "could not release a lease"; "lease" => name, "error" => err.to_string());
    }
    outcome.map(Some)
}
