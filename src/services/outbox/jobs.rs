//! Looking at and re-queueing sync jobs (operators: admin routes and CLI).

use std::sync::Arc;

use crate::repositories::{JobRepository, SyncJob};
use crate::services::ServiceError;

pub struct JobService {
    repo: Arc<dyn JobRepository>,
}

impl JobService {
    pub fn new(repo: Arc<dyn JobRepository>) -> Self {
        JobService { repo }
    }

    pub async fn list(
        &self,
        status: Option<String>,
        after_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SyncJob>, ServiceError> {
        Ok(self.repo.list(status, after_id, limit).await?)
    }

    /// Re-queues one job now with a fresh attempt count (a done job stays done).
    pub async fn retry(&self, id: i64) -> Result<SyncJob, ServiceError> {
        self.repo.retry(id).await?.ok_or(ServiceError::NotFound)
    }

    pub async fn retry_dead(&self) -> Result<usize, ServiceError> {
        Ok(self.repo.retry_dead().await?)
    }
}
