//! `AmoError`: every way a call to AmoCRM can end badly, one variant per meaning,
//! so the service can tell "retry later" from "fix the configuration".

use std::time::Duration;

use crate::redact::Redactor;

/// One refusal in AmoCRM's `validation-errors`: which item, which field, what rule.
/// AmoCRM's `detail` is not kept: it may quote the refused value back (a name, a phone).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ValidationIssue {
    pub request_id: Option<String>,
    pub code: String,
    pub path: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AmoError {
    /// 401: the access token is missing, expired or revoked.
    #[error("AmoCRM rejected the access token (401)")]
    Unauthorized,
    /// 402: the account's subscription has expired.
    #[error("AmoCRM account is unpaid (402)")]
    PaymentRequired,
    /// 403: the account is blocked (often after rate-limit abuse) or the IP is not allowed.
    /// The body is frequently an nginx HTML page, so nothing is read from it.
    #[error("AmoCRM refused access to the account (403)")]
    Forbidden,
    /// 429: over the per-integration rate limit. The body is not JSON in practice.
    #[error("AmoCRM rate limit reached (429)")]
    RateLimited { retry_after: Option<Duration> },
    /// 400 with `validation-errors`: AmoCRM understood the request and refused its content.
    #[error("AmoCRM rejected the request: {}", summarize(.issues))]
    Validation { issues: Vec<ValidationIssue> },
    /// 404 problem: the path or a referenced object does not exist.
    #[error("AmoCRM answered 404: {detail}")]
    NotFound { detail: String },
    /// Any other 4xx: a request amosync should not have made.
    #[error("AmoCRM answered {status}: {detail}")]
    BadRequest { status: u16, detail: String },
    /// 5xx: AmoCRM is failing; the call may be retried later.
    #[error("AmoCRM server error ({status})")]
    Server { status: u16 },
    /// No answer within the configured time. The request may have been applied.
    #[error("AmoCRM did not answer in time")]
    Timeout,
    /// The connection could not be made or broke off.
    #[error("could not reach AmoCRM: {0}")]
    Network(String),
    /// A 2xx whose body is not what the API promises.
    #[error("unexpected AmoCRM response: {0}")]
    InvalidResponse(String),
}

impl AmoError {
    /// Failures that say nothing about the request itself: trying again later may work.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AmoError::RateLimited { .. }
                | AmoError::Server { .. }
                | AmoError::Timeout
                | AmoError::Network(_)
        )
    }

    /// AmoCRM understood the request and refused it: retrying the same request won't help.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            AmoError::Validation { .. } | AmoError::BadRequest { .. } | AmoError::NotFound { .. }
        )
    }

    /// The same error with `redactor`'s secrets masked in every text it carries.
    pub fn redacted(self, redactor: &Redactor) -> AmoError {
        let mask = |text: String| redactor.redact(&text).into_owned();
        match self {
            AmoError::Validation { issues } => AmoError::Validation {
                issues: issues
                    .into_iter()
                    .map(|i| ValidationIssue {
                        request_id: i.request_id.map(mask),
                        code: mask(i.code),
                        path: mask(i.path),
                    })
                    .collect(),
            },
            AmoError::NotFound { detail } => AmoError::NotFound {
                detail: mask(detail),
            },
            AmoError::BadRequest { status, detail } => AmoError::BadRequest {
                status,
                detail: mask(detail),
            },
            AmoError::Network(why) => AmoError::Network(mask(why)),
            AmoError::InvalidResponse(why) => AmoError::InvalidResponse(mask(why)),
            other => other,
        }
    }

    /// A short stable name for logs and stored sync errors.
    pub fn kind(&self) -> &'static str {
        match self {
            AmoError::Unauthorized => "unauthorized",
            AmoError::PaymentRequired => "payment_required",
            AmoError::Forbidden => "forbidden",
            AmoError::RateLimited { .. } => "rate_limited",
            AmoError::Validation { .. } => "validation",
            AmoError::NotFound { .. } => "not_found",
            AmoError::BadRequest { .. } => "bad_request",
            AmoError::Server { .. } => "server_error",
            AmoError::Timeout => "timeout",
            AmoError::Network(_) => "network",
            AmoError::InvalidResponse(_) => "invalid_response",
        }
    }
}

fn summarize(issues: &[ValidationIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("{} {}", i.path, i.code).trim().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}
