//! `GET /api/v1/sync/jobs` and `POST /api/v1/sync/jobs/{id}/retry`: what is still
//! on its way to AmoCRM, what gave up (`dead`), and re-queueing it.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::entity::{timestamp, Page};
use super::extract::{page_params, paginate};
use super::problems::{NoSuchJob, ReadErrors};
use crate::domain::FieldError;
use crate::error::ApiError;
use crate::repositories::{SyncJob, JOB_DEAD, JOB_DONE, JOB_PENDING};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobBody {
    id: i64,
    entity: String,
    record_id: i64,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    next_attempt_at: String,
    created_at: String,
    updated_at: String,
}

impl From<SyncJob> for JobBody {
    fn from(j: SyncJob) -> Self {
        JobBody {
            id: j.id,
            entity: j.entity,
            record_id: j.record_id,
            status: j.status,
            attempts: j.attempts,
            last_error: j.last_error,
            next_attempt_at: timestamp(j.next_attempt_at),
            created_at: timestamp(j.created_at),
            updated_at: timestamp(j.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// `pending`, `done` or `dead`.
    #[param(pattern = "^(pending|done|dead)?$")]
    status: Option<String>,
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/api/v1/sync/jobs", tag = "sync",
    summary = "The outbox: pending, done and dead sync jobs",
    params(JobListQuery),
    responses(
        (status = 200, description = "One page; pass next_cursor back as cursor", body = Page<JobBody>),
        ReadErrors,
    ),
)]
pub async fn list_jobs(
    state: web::Data<AppState>,
    query: web::Query<JobListQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let status = match query.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) if [JOB_PENDING, JOB_DONE, JOB_DEAD].contains(&s) => Some(s.to_owned()),
        Some(_) => {
            errors.push(FieldError::new("status", "must be pending, done or dead"));
            None
        }
    };
    let (limit, after_id) =
        page_params(query.limit.as_deref(), query.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (rows, next_cursor) = paginate(
        state.jobs.list(status, after_id, limit + 1).await?,
        limit,
        |j| j.id,
    );
    Ok(HttpResponse::Ok().json(Page {
        items: rows.into_iter().map(JobBody::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    post, path = "/api/v1/sync/jobs/{id}/retry", tag = "sync",
    summary = "Re-queue a job now with a fresh attempt count",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The re-queued job", body = JobBody),
        NoSuchJob,
    ),
)]
pub async fn retry_job(
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let job = state.jobs.retry(id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(JobBody::from(job)))
}
