//! `amosync sync`: the full import with its progress line, and the sync-job commands.

use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};

use super::{open_db, CliError, RetryArgs, SyncAction};
use crate::amo::AmoEntity;
use crate::redact::Redactor;
use crate::repositories::{
    mirror_counts, DuplicateRepository, MirrorCounts, MysqlDuplicateRepository, MysqlJobRepository,
};
use crate::services::{JobService, ServiceError};
use crate::settings::Settings;
use crate::startup::importer;

pub(super) async fn sync(
    settings: Settings,
    logger: slog::Logger,
    action: SyncAction,
    redactor: &Redactor,
) -> Result<(), CliError> {
    let db = open_db(&settings, &logger).await?;
    let duplicates = MysqlDuplicateRepository::new(db.clone());
    let jobs = JobService::new(Arc::new(MysqlJobRepository::new(db)));
    match action {
        SyncAction::Duplicates { limit } => {
            let pairs = duplicates.open(limit).await?;
            for found in &pairs {
                println!(
                    "{}\t{}\t{}\tdetected {}",
                    found.pair.first_amocrm_id,
                    found.pair.second_amocrm_id,
                    found.pair.phone,
                    found.detected_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
            println!("{} pair(s) of AmoCRM contacts share a phone", pairs.len());
        }
        SyncAction::Jobs { status, limit } => {
            let status = status.map(|s| s.as_str().to_owned());
            for job in jobs.list(status, None, limit).await? {
                println!(
                    "{}\t{}\t{}\t{}\tattempts={}\t{}",
                    job.id,
                    job.entity,
                    job.record_id,
                    job.status,
                    job.attempts,
                    // Rows stored before AmoCRM's errors were scrubbed may still quote a secret.
                    redactor.redact(&job.last_error.unwrap_or_default())
                );
            }
        }
        SyncAction::Retry(RetryArgs { id: Some(id), .. }) => match jobs.retry(id).await {
            Ok(job) => println!("job {} is {} (attempts reset)", job.id, job.status),
            Err(ServiceError::NotFound) => {
                return Err(CliError::Failed(format!("there is no sync job {id}")))
            }
            Err(err) => return Err(err.into()),
        },
        // clap lets through only an id or `--all-dead`.
        SyncAction::Retry(RetryArgs { id: None, .. }) => {
            let count = jobs.retry_dead().await?;
            println!("re-queued {count} dead job(s)");
        }
    }
    Ok(())
}

/// What the progress line shows: records read from AmoCRM so far, per entity.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Progress {
    contacts: usize,
    leads: usize,
}

impl Progress {
    fn label(&self) -> String {
        format!(
            "read from AmoCRM: {} contact(s), {} lead(s)",
            self.contacts, self.leads
        )
    }
}

/// The closing lines: what is new in the mirror, and what was already there.
fn summary(read: crate::services::Imported, before: MirrorCounts, after: MirrorCounts) -> String {
    let line = |entity: &str, read: usize, before: i64, after: i64| {
        let new = usize::try_from(after - before).unwrap_or(0);
        let known = read.saturating_sub(new);
        format!("{entity}: {new} imported, {known} already in the mirror")
    };
    [
        line("contacts", read.contacts, before.contacts, after.contacts),
        line("leads", read.leads, before.leads, after.leads),
        format!(
            "done: the mirror holds {} contact(s) and {} lead(s), up to date with AmoCRM",
            after.contacts, after.leads
        ),
    ]
    .join("\n")
}

pub(super) async fn full_import(settings: Settings, logger: slog::Logger) -> Result<(), CliError> {
    let db = open_db(&settings, &logger).await?;
    db.migrate().await?;
    let reconciler = importer(&settings, &db, logger)?;
    let before = mirror_counts(&db).await?;
    // AmoCRM gives no total count, so the line counts up; it names both entities from
    // the first frame on.
    let progress = Mutex::new(Progress::default());
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(Progress::default().label());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let imported = reconciler
        .import_all(|entity, n| {
            let mut now = progress.lock().unwrap_or_else(|p| p.into_inner());
            match entity {
                AmoEntity::Contacts => now.contacts = n,
                AmoEntity::Leads => now.leads = n,
            }
            bar.set_message(now.label());
        })
        .await?;
    let Some(imported) = imported else {
        bar.abandon_with_message("another import is running");
        return Err(CliError::Failed(
            "another import holds the cursor; try again later".into(),
        ));
    };
    bar.finish_and_clear();
    let after = mirror_counts(&db).await?;
    println!("{}", summary(imported, before, after));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::Imported;

    #[test]
    fn the_progress_line_names_both_entities_from_the_start() {
        assert_eq!(
            Progress::default().label(),
            "read from AmoCRM: 0 contact(s), 0 lead(s)"
        );
        let p = Progress {
            contacts: 165,
            leads: 3,
        };
        assert_eq!(p.label(), "read from AmoCRM: 165 contact(s), 3 lead(s)");
    }

    #[test]
    fn a_re_run_with_nothing_new_says_nothing_was_imported() {
        let read = Imported {
            contacts: 165,
            leads: 40,
        };
        let same = MirrorCounts {
            contacts: 165,
            leads: 40,
        };
        let text = summary(read, same, same);
        assert!(
            text.contains("contacts: 0 imported, 165 already in the mirror"),
            "{text}"
        );
        assert!(
            text.contains("leads: 0 imported, 40 already in the mirror"),
            "{text}"
        );
    }

    #[test]
    fn a_first_run_counts_what_it_added() {
        let read = Imported {
            contacts: 165,
            leads: 40,
        };
        let empty = MirrorCounts::default();
        let after = MirrorCounts {
            contacts: 165,
            leads: 40,
        };
        let text = summary(read, empty, after);
        assert!(
            text.contains("contacts: 165 imported, 0 already in the mirror"),
            "{text}"
        );
        assert!(text.contains("165 contact(s) and 40 lead(s)"), "{text}");
    }
}
