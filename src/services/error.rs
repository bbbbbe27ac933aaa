//! The services' one error type: what went wrong, for the HTTP layer to render once.

use crate::amo::AmoError;
use crate::cause::Cause;
use crate::domain::FieldError;
use crate::repositories::RepoError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// Input that passed parsing but breaks a rule (e.g. an unknown `contact_id`).
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    /// AmoCRM failed or refused; `pending_id` is the local row kept as pending.
    #[error("AmoCRM call failed: {error}")]
    Amo {
        error: AmoError,
        pending_id: Option<i64>,
    },
    /// Another instance holds the lease on this record and did not finish in time.
    #[error("record {id} is being synced elsewhere")]
    SyncInProgress { id: i64 },
    /// The database could not be reached or kept failing; the cause says why (for logs).
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(#[source] Cause),
    /// A webhook delivery that is not one (bad content type or body).
    #[error("{0}")]
    Payload(crate::webhooks::PayloadError),
    /// A webhook delivery from another AmoCRM account than the configured one.
    #[error("delivery from another AmoCRM account")]
    WrongAccount,
    /// A feature that needs configuration the service does not have.
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// A bug or a broken invariant; the cause is for the log only.
    #[error("internal error: {0}")]
    Internal(#[source] Cause),
}

impl ServiceError {
    /// A broken invariant or a bug; `why` is for the log only.
    pub fn internal(why: impl Into<Cause>) -> Self {
        ServiceError::Internal(why.into())
    }

    /// An AmoCRM failure with no local record involved.
    pub fn amo(error: AmoError) -> Self {
        ServiceError::Amo {
            error,
            pending_id: None,
        }
    }
}

impl From<RepoError> for ServiceError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::Unavailable(cause) => ServiceError::DatabaseUnavailable(cause),
            RepoError::Conflict(_) | RepoError::Query(_) => ServiceError::Internal(Cause::new(err)),
        }
    }
}
