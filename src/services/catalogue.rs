//! The AmoCRM account's catalogue (custom fields of contacts, leads and companies,
//! pipelines with statuses, users), cached in the database: refreshed at start,
//! every `CATALOGUE_REFRESH_SECS`, and on demand (`refresh`; `refresh_unless_fresh`
//! for code that meets a field AmoCRM no longer knows). Readers get the stored copy,
//! never a live call.
//!
//! One instance refreshes at a time (a lease on the `catalogue` cursor); the others
//! skip that turn and read what it stored.

use std::sync::Arc;
use std::time::Duration;

use slog::Logger;

use super::leased::while_leased;
use super::ServiceError;
use crate::amo::{AmoError, AmoTransport};
use crate::domain::{Catalogue, CatalogueEntity, CustomField, Pipeline, User};
use crate::lifecycle::Lifecycle;
use crate::repositories::{CatalogueAge, CatalogueRepository, CursorRepository};
use crate::settings;

const LEASE_NAME: &str = "catalogue";

/// The first refresh waits this long after start: start-up's own AmoCRM calls (the
/// first reconciliation, a webhook subscription made right after start by another
/// process with a limiter of its own) and the first submissions go first, and five
/// calls more in that second would push two processes over AmoCRM's limit.
const START_DELAY: Duration = Duration::from_secs(5);

/// The least time between two refreshes asked for by `refresh_unless_fresh`: AmoCRM
/// counts reading the same data again and again as suspicious, so a burst of refusals
/// costs one read, not one each.
pub const MIN_DEMAND_GAP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogueConfig {
    /// Time between refreshes; zero refreshes only on demand.
    pub interval: Duration,
    /// How long one instance holds the lease while it reads and stores.
    pub lease: Duration,
}

impl From<settings::Catalogue> for CatalogueConfig {
    fn from(section: settings::Catalogue) -> Self {
        CatalogueConfig {
            interval: section.refresh,
            lease: Duration::from_secs(120),
        }
    }
}

/// What one refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// Stored: how many fields and pipelines, and users (`None`: AmoCRM would not
    /// list them to this token, the stored ones were kept).
    Stored {
        fields: usize,
        pipelines: usize,
        users: Option<usize>,
    },
    /// Another instance was refreshing; nothing was read.
    Skipped,
    /// Read less than `MIN_DEMAND_GAP` ago; nothing was read.
    Fresh,
}

pub struct CatalogueService {
    amo: Arc<dyn AmoTransport>,
    repo: Arc<dyn CatalogueRepository>,
    cursors: Arc<dyn CursorRepository>,
    config: CatalogueConfig,
    /// Refreshes of this instance wait for each other rather than for the lease.
    running: tokio::sync::Mutex<()>,
    logger: Logger,
}

impl CatalogueService {
    pub fn new(
        amo: Arc<dyn AmoTransport>,
        repo: Arc<dyn CatalogueRepository>,
        cursors: Arc<dyn CursorRepository>,
        config: CatalogueConfig,
        logger: Logger,
    ) -> Self {
        CatalogueService {
            amo,
            repo,
            cursors,
            config,
            running: tokio::sync::Mutex::new(()),
            logger,
        }
    }

    /// Refreshes shortly after start, then every `interval` (not at all when it is
    /// zero) until the service drains.
    pub async fn run(self: Arc<Self>, lifecycle: Arc<Lifecycle>) {
        if self.config.interval.is_zero() {
            return;
        }
        lifecycle.pause(START_DELAY.min(self.config.interval)).await;
        while !lifecycle.is_draining() {
            match self.refresh().await {
                Ok(Refreshed::Stored {
                    fields,
                    pipelines,
                    users,
                }) => slog::info!(self.logger, "AmoCRM catalogue refreshed";
                    "fields" => fields, "pipelines" => pipelines, "users" => users),
                Ok(Refreshed::Skipped | Refreshed::Fresh) => {}
                Err(err) => {
                    slog::warn!(self.logger, "AmoCRM catalogue refresh failed"; "error" => err.to_string())
                }
            }
            lifecycle.pause(self.config.interval).await;
        }
    }

    /// Reads the whole catalogue from AmoCRM and replaces the stored one, unless
    /// another instance is at it. Any failure leaves the stored catalogue as it was.
    pub async fn refresh(&self) -> Result<Refreshed, ServiceError> {
        let _turn = self.running.lock().await;
        let work = self.read_and_store();
        let done = while_leased(
            &*self.cursors,
            LEASE_NAME,
            self.config.lease,
            &self.logger,
            work,
        );
        Ok(done.await?.unwrap_or(Refreshed::Skipped))
    }

    /// For code that met a field, option or status AmoCRM no longer knows: refreshes
    /// unless the fields were stored less than `MIN_DEMAND_GAP` ago.
    pub async fn refresh_unless_fresh(&self) -> Result<Refreshed, ServiceError> {
        let stored = self.repo.age().await?.fields;
        let gap = chrono::Duration::from_std(MIN_DEMAND_GAP).unwrap_or_default();
        if stored.is_some_and(|at| chrono::Utc::now().naive_utc() - at < gap) {
            return Ok(Refreshed::Fresh);
        }
        self.refresh().await
    }

    async fn read_and_store(&self) -> Result<Refreshed, ServiceError> {
        let mut fields = Vec::new();
        for entity in CatalogueEntity::ALL {
            fields.extend(
                self.amo
                    .custom_fields(entity)
                    .await
                    .map_err(ServiceError::amo)?,
            );
        }
        let pipelines = self.amo.pipelines().await.map_err(ServiceError::amo)?;
        let users = match self.amo.users().await {
            Ok(users) => Some(users),
            // Only an admin's token may list users: the rest is still worth storing.
            Err(AmoError::Forbidden) => {
                slog::warn!(self.logger, "AmoCRM does not list users to this token; the stored users are kept";
                    "hint" => "use an AmoCRM admin's token to read users");
                None
            }
            Err(err) => return Err(ServiceError::amo(err)),
        };
        let refreshed = Refreshed::Stored {
            fields: fields.len(),
            pipelines: pipelines.len(),
            users: users.as_ref().map(Vec::len),
        };
        self.repo
            .replace(Catalogue {
                fields,
                pipelines,
                users,
            })
            .await?;
        Ok(refreshed)
    }

    /// The stored fields of `entity`, or of every entity.
    pub async fn fields(
        &self,
        entity: Option<CatalogueEntity>,
    ) -> Result<Vec<CustomField>, ServiceError> {
        Ok(self.repo.fields(entity).await?)
    }

    pub async fn pipelines(&self) -> Result<Vec<Pipeline>, ServiceError> {
        Ok(self.repo.pipelines().await?)
    }

    pub async fn users(&self) -> Result<Vec<User>, ServiceError> {
        Ok(self.repo.users().await?)
    }

    /// When each part was last stored.
    pub async fn age(&self) -> Result<CatalogueAge, ServiceError> {
        Ok(self.repo.age().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amo::MockAmoTransport;
    use crate::domain::{FieldOption, FieldType, Status};
    use crate::repositories::{MockCatalogueRepository, MockCursorRepository, RepoError};

    fn logger() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    fn config() -> CatalogueConfig {
        CatalogueConfig {
            interval: Duration::from_secs(3600),
            lease: Duration::from_secs(120),
        }
    }

    fn leased() -> MockCursorRepository {
        let mut cursors = MockCursorRepository::new();
        cursors
            .expect_lease()
            .withf(|name, start, _| name == LEASE_NAME && *start == 0)
            .times(1)
            .returning(|_, _, _| Ok(Some(0)));
        cursors.expect_release().times(1).returning(|_| Ok(()));
        cursors
    }

    fn field(entity: CatalogueEntity, id: i64) -> CustomField {
        CustomField {
            id,
            entity,
            name: format!("field {id}"),
            field_type: FieldType::Select,
            code: None,
            sort: id,
            is_api_only: false,
            options: vec![FieldOption {
                id: id * 10,
                value: "one".into(),
                sort: 1,
                code: None,
            }],
        }
    }

    fn pipeline() -> Pipeline {
        Pipeline {
            id: 7,
            name: "Sales".into(),
            sort: 1,
            is_main: true,
            is_archive: false,
            statuses: vec![Status {
                id: 142,
                name: "Won".into(),
                sort: 10_000,
                color: None,
                is_incoming: false,
            }],
        }
    }

    fn user() -> User {
        User {
            id: 5,
            name: "Anna".into(),
            email: None,
            is_active: true,
            is_admin: true,
        }
    }

    /// AmoCRM answering every catalogue read; `users` as given.
    fn amo(users: Result<Vec<User>, AmoError>) -> MockAmoTransport {
        let mut amo = MockAmoTransport::new();
        for (entity, id) in [
            (CatalogueEntity::Contacts, 1),
            (CatalogueEntity::Leads, 2),
            (CatalogueEntity::Companies, 3),
        ] {
            amo.expect_custom_fields()
                .with(mockall::predicate::eq(entity))
                .times(1)
                .returning(move |e| Ok(vec![field(e, id)]));
        }
        amo.expect_pipelines()
            .times(1)
            .returning(|| Ok(vec![pipeline()]));
        amo.expect_users().times(1).return_once(move || users);
        amo
    }

    #[tokio::test]
    async fn a_refresh_stores_every_entitys_fields_the_pipelines_and_the_users_at_once() {
        let mut repo = MockCatalogueRepository::new();
        repo.expect_replace()
            .withf(|c| {
                c.fields
                    .iter()
                    .map(|f| (f.entity, f.id))
                    .collect::<Vec<_>>()
                    == [
                        (CatalogueEntity::Contacts, 1),
                        (CatalogueEntity::Leads, 2),
                        (CatalogueEntity::Companies, 3),
                    ]
                    && c.pipelines == [pipeline()]
                    && c.users == Some(vec![user()])
            })
            .times(1)
            .returning(|_| Ok(()));
        let service = CatalogueService::new(
            Arc::new(amo(Ok(vec![user()]))),
            Arc::new(repo),
            Arc::new(leased()),
            config(),
            logger(),
        );
        assert_eq!(
            service.refresh().await.expect("refreshed"),
            Refreshed::Stored {
                fields: 3,
                pipelines: 1,
                users: Some(1)
            }
        );
    }

    #[tokio::test]
    async fn users_refused_to_a_non_admin_token_keep_the_stored_users_and_store_the_rest() {
        let mut repo = MockCatalogueRepository::new();
        repo.expect_replace()
            .withf(|c| c.users.is_none() && c.fields.len() == 3 && c.pipelines.len() == 1)
            .times(1)
            .returning(|_| Ok(()));
        let service = CatalogueService::new(
            Arc::new(amo(Err(AmoError::Forbidden))),
            Arc::new(repo),
            Arc::new(leased()),
            config(),
            logger(),
        );
        let refreshed = service.refresh().await.expect("refreshed");
        assert!(matches!(refreshed, Refreshed::Stored { users: None, .. }));
    }

    #[tokio::test]
    async fn a_failed_read_stores_nothing_and_releases_the_lease() {
        let mut amo = MockAmoTransport::new();
        amo.expect_custom_fields()
            .times(1)
            .returning(|_| Err(AmoError::Server { status: 502 }));
        amo.expect_pipelines().never();
        let mut repo = MockCatalogueRepository::new();
        repo.expect_replace().never();
        let service = CatalogueService::new(
            Arc::new(amo),
            Arc::new(repo),
            Arc::new(leased()),
            config(),
            logger(),
        );
        let err = service.refresh().await.expect_err("AmoCRM failed");
        assert!(matches!(
            err,
            ServiceError::Amo {
                error: AmoError::Server { status: 502 },
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_lease_held_by_another_instance_means_no_call_to_amocrm() {
        let mut cursors = MockCursorRepository::new();
        cursors
            .expect_lease()
            .times(1)
            .returning(|_, _, _| Ok(None));
        cursors.expect_release().never();
        let mut amo = MockAmoTransport::new();
        amo.expect_custom_fields().never();
        let mut repo = MockCatalogueRepository::new();
        repo.expect_replace().never();
        let service = CatalogueService::new(
            Arc::new(amo),
            Arc::new(repo),
            Arc::new(cursors),
            config(),
            logger(),
        );
        assert_eq!(
            service.refresh().await.expect("skipped"),
            Refreshed::Skipped
        );
    }

    fn stored_ago(secs: i64) -> MockCatalogueRepository {
        let mut repo = MockCatalogueRepository::new();
        repo.expect_age().times(1).returning(move || {
            Ok(CatalogueAge {
                fields: Some(chrono::Utc::now().naive_utc() - chrono::Duration::seconds(secs)),
                ..CatalogueAge::default()
            })
        });
        repo
    }

    #[tokio::test]
    async fn a_refresh_on_demand_right_after_another_reads_nothing() {
        let mut amo = MockAmoTransport::new();
        amo.expect_custom_fields().never();
        let mut cursors = MockCursorRepository::new();
        cursors.expect_lease().never();
        let service = CatalogueService::new(
            Arc::new(amo),
            Arc::new(stored_ago(5)),
            Arc::new(cursors),
            config(),
            logger(),
        );
        assert_eq!(
            service.refresh_unless_fresh().await.expect("fresh"),
            Refreshed::Fresh
        );
    }

    #[tokio::test]
    async fn a_refresh_on_demand_after_the_gap_reads_the_catalogue() {
        let mut repo = stored_ago(MIN_DEMAND_GAP.as_secs() as i64 + 5);
        repo.expect_replace().times(1).returning(|_| Ok(()));
        let service = CatalogueService::new(
            Arc::new(amo(Ok(vec![user()]))),
            Arc::new(repo),
            Arc::new(leased()),
            config(),
            logger(),
        );
        assert!(matches!(
            service.refresh_unless_fresh().await.expect("refreshed"),
            Refreshed::Stored { fields: 3, .. }
        ));
    }

    #[tokio::test]
    async fn a_database_failure_on_store_is_reported_as_one() {
        let mut repo = MockCatalogueRepository::new();
        repo.expect_replace()
            .times(1)
            .returning(|_| Err(RepoError::Unavailable("down".into())));
        let service = CatalogueService::new(
            Arc::new(amo(Ok(vec![user()]))),
            Arc::new(repo),
            Arc::new(leased()),
            config(),
            logger(),
        );
        assert!(matches!(
            service.refresh().await,
            Err(ServiceError::DatabaseUnavailable(_))
        ));
    }
}
