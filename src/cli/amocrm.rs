//! `amosync amocrm fields|pipelines|users`: the AmoCRM account's catalogue as amosync
//! stored it, one line per item, tab-separated. A part never read yet, or any part
//! with `--refresh`, is read from AmoCRM first (and stored for the service).

use std::sync::Arc;

use super::{open_db, AmoCrmAction, CliError};
use crate::domain::{CatalogueEntity, CustomField};
use crate::repositories::CatalogueAge;
use crate::services::{CatalogueService, Refreshed};
use crate::settings::Settings;
use crate::startup::{amo_transport, catalogue_service};

pub(super) async fn amocrm(
    settings: Settings,
    logger: slog::Logger,
    action: AmoCrmAction,
) -> Result<(), CliError> {
    let db = open_db(&settings, &logger).await?;
    db.migrate().await?;
    let amo = amo_transport(&settings, &db)?;
    let catalogue = catalogue_service(Arc::new(amo), &db, settings.catalogue, logger);
    let part = |age: CatalogueAge| match &action {
        AmoCrmAction::Fields { .. } => age.fields,
        AmoCrmAction::Pipelines { .. } => age.pipelines,
        AmoCrmAction::Users { .. } => age.users,
    };
    let never_read = part(catalogue.age().await?).is_none();
    if action.refresh() || never_read {
        refresh(&catalogue).await?;
    }
    match action {
        AmoCrmAction::Fields { entity, .. } => {
            let entity = entity.map(CatalogueEntity::from);
            for field in catalogue.fields(entity).await? {
                println!("{}", field_line(&field));
            }
        }
        AmoCrmAction::Pipelines { .. } => {
            for pipeline in catalogue.pipelines().await? {
                let main = if pipeline.is_main { "\tmain" } else { "" };
                let archived = if pipeline.is_archive {
                    "\tarchived"
                } else {
                    ""
                };
                println!(
                    "pipeline\t{}\t{}{main}{archived}",
                    pipeline.id, pipeline.name
                );
                for status in pipeline.statuses {
                    let incoming = if status.is_incoming { "\tincoming" } else { "" };
                    println!("  status\t{}\t{}{incoming}", status.id, status.name);
                }
            }
        }
        AmoCrmAction::Users { .. } => {
            if part(catalogue.age().await?).is_none() {
                return Err(CliError::Failed(
                    "AmoCRM lists users only to an admin's token; none are stored".into(),
                ));
            }
            for user in catalogue.users().await? {
                println!(
                    "{}\t{}\t{}\t{}{}",
                    user.id,
                    user.name,
                    user.email.unwrap_or_default(),
                    if user.is_active { "active" } else { "inactive" },
                    if user.is_admin { "\tadmin" } else { "" },
                );
            }
        }
    }
    Ok(())
}

async fn refresh(catalogue: &CatalogueService) -> Result<(), CliError> {
    match catalogue.refresh().await? {
        Refreshed::Stored { users: None, .. } => {
            eprintln!("read from AmoCRM; users were refused (only an admin's token may list them)")
        }
        Refreshed::Stored { .. } | Refreshed::Fresh => {}
        Refreshed::Skipped => {
            eprintln!("another instance is reading the catalogue; showing what is stored")
        }
    }
    Ok(())
}

/// `entity  id  type  code  name  options`, options as `id=value` joined by `, `.
fn field_line(field: &CustomField) -> String {
    let options: Vec<String> = field
        .options
        .iter()
        .map(|o| format!("{}={}", o.id, o.value))
        .collect();
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        field.entity,
        field.id,
        field.field_type.as_str(),
        field.code.as_deref().unwrap_or("-"),
        field.name,
        options.join(", ")
    )
    .trim_end()
    .to_owned()
}
