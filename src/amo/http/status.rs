//! How AmoCRM answers map to `AmoError`: one pure function, so every status rule
//! is tested without a server.

use std::time::Duration;

use super::scrub::scrub;
use crate::amo::wire;
use crate::amo::{AmoError, ValidationIssue};

/// A server asking for a longer pause is better retried by the caller's own schedule.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A successful answer: a body to parse, or AmoCRM's way of saying "nothing found".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Content,
    NoContent,
}

/// Maps an AmoCRM status (and, for 4xx, its body) to an `Answer` or an `AmoError`.
pub(super) fn map_status(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Result<Answer, AmoError> {
    match status {
        204 => Ok(Answer::NoContent),
        200..=299 => Ok(Answer::Content),
        401 => Err(AmoError::Unauthorized),
        402 => Err(AmoError::PaymentRequired),
        403 => Err(AmoError::Forbidden),
        429 => Err(AmoError::RateLimited {
            retry_after: parse_retry_after(retry_after),
        }),
        // What AmoCRM says about a refused request may quote the request back (names,
        // phones, our webhook URL with its secret), and this text is stored, logged and
        // shown to clients: only AmoCRM's own words are kept (`scrub`), and of a
        // validation error only its code and field path.
        400..=499 => {
            let problem = serde_json::from_slice::<wire::ProblemDto>(body).ok();
            let detail = problem
                .as_ref()
                .and_then(|p| p.detail.as_deref().or(p.title.as_deref()))
                .map(scrub)
                .filter(|d| !d.is_empty())
                // Not a problem body (an HTML error page): nothing of it is kept.
                .unwrap_or_else(|| "no details".to_owned());
            if status == 400 {
                let issues = problem
                    .and_then(|p| p.validation_errors)
                    .map(flatten_issues)
                    .unwrap_or_default();
                if !issues.is_empty() {
                    return Err(AmoError::Validation { issues });
                }
            }
            if status == 404 {
                return Err(AmoError::NotFound { detail });
            }
            Err(AmoError::BadRequest { status, detail })
        }
        500..=599 => Err(AmoError::Server { status }),
        other => Err(AmoError::InvalidResponse(format!(
            "unexpected HTTP status {other}"
        ))),
    }
}

fn flatten_issues(items: Vec<wire::ValidationItemDto>) -> Vec<ValidationIssue> {
    items
        .into_iter()
        .flat_map(|item| {
            let request_id = item.request_id;
            item.errors.into_iter().map(move |e| ValidationIssue {
                request_id: request_id.clone(),
                code: scrub(&e.code.unwrap_or_default()),
                path: scrub(&e.path.unwrap_or_default()),
            })
        })
        .collect()
}

/// `Retry-After` in seconds (the HTTP-date form is not used by AmoCRM), at most a minute.
fn parse_retry_after(raw: Option<&str>) -> Option<Duration> {
    let secs: u64 = raw?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_statuses_hand_over_the_body_and_204_means_nothing_found() {
        for status in [200, 201, 202] {
            assert_eq!(map_status(status, None, b"{}").ok(), Some(Answer::Content));
        }
        assert_eq!(map_status(204, None, b"").ok(), Some(Answer::NoContent));
    }

    #[test]
    fn a_400_with_validation_errors_becomes_flattened_issues() {
        let body = br#"{"validation-errors":[{"request_id":"r1","errors":[
            {"code":"NotSupportedChoice","path":"custom_fields_values.0.field_id","detail":"bad"},
            {"code":"X","path":"name","detail":"empty"}]}],
            "title":"Bad Request","status":400,"detail":"Request validation failed"}"#;
        let Err(AmoError::Validation { issues }) = map_status(400, None, body) else {
            panic!("expected Validation");
        };
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0].request_id.as_deref(), Some("r1"));
        assert_eq!(issues[0].code, "NotSupportedChoice");
        assert_eq!(issues[1].path, "name");
    }

    #[test]
    fn other_4xx_carry_the_problem_detail_but_nothing_of_an_html_page() {
        let problem = br#"{"title":"Bad Request","status":400,"detail":"Empty body"}"#;
        assert!(matches!(map_status(400, None, problem),
            Err(AmoError::BadRequest { status: 400, detail }) if detail == "Empty body"));
        assert!(matches!(map_status(404, None, br#"{"title":"Not Found"}"#),
            Err(AmoError::NotFound { detail }) if detail == "Not Found"));
        let html = format!("<html>{} +79161234567</html>", "x".repeat(5000));
        let Err(AmoError::BadRequest {
            status: 405,
            detail,
        }) = map_status(405, None, html.as_bytes())
        else {
            panic!("expected BadRequest");
        };
        assert_eq!(detail, "no details");
    }

    #[test]
    fn what_amocrm_echoes_from_the_request_is_not_kept() {
        let body = r#"{"validation-errors":[{"request_id":"0","errors":[
            {"code":"NotSupportedChoice","path":"custom_fields_values.0.values.0.value",
             "detail":"The value \"+79161234567\" of Иван Петров is not valid"}]}],
            "title":"Bad Request","status":400,"detail":"Request validation failed"}"#;
        let Err(error) = map_status(400, None, body.as_bytes()) else {
            panic!("expected an error");
        };
        let text = error.to_string();
        assert!(
            text.contains("custom_fields_values.0.values.0.value NotSupportedChoice"),
            "{text}"
        );
        for echoed in ["79161234567", "Иван", "not valid"] {
            assert!(!text.contains(echoed), "{echoed} in {text}");
        }
        let problem = br#"{"title":"Bad Request","status":400,
            "detail":"Hook 'https://amosync.example.com/webhooks/amocrm/s3cr3t-0123456789abcdef' is unreachable"}"#;
        let Err(AmoError::BadRequest { detail, .. }) = map_status(400, None, problem) else {
            panic!("expected BadRequest");
        };
        assert_eq!(detail, r#"Hook "…" is unreachable"#);
    }

    #[test]
    fn auth_payment_and_block_statuses_have_their_own_errors() {
        assert!(matches!(
            map_status(401, None, b"{}"),
            Err(AmoError::Unauthorized)
        ));
        assert!(matches!(
            map_status(402, None, b""),
            Err(AmoError::PaymentRequired)
        ));
        assert!(matches!(
            map_status(403, None, b"<html>403 Forbidden nginx</html>"),
            Err(AmoError::Forbidden)
        ));
    }

    #[test]
    fn a_429_reads_retry_after_in_seconds_clamped_to_a_minute() {
        let after = |h| match map_status(429, h, b"Too Many Requests") {
            Err(AmoError::RateLimited { retry_after }) => retry_after,
            other => panic!("expected RateLimited, got {other:?}"),
        };
        assert_eq!(after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(after(Some("3600")), Some(Duration::from_secs(60)));
        assert_eq!(after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(after(None), None);
    }

    #[test]
    fn server_errors_keep_their_status_and_odd_statuses_are_invalid() {
        assert!(matches!(
            map_status(500, None, b""),
            Err(AmoError::Server { status: 500 })
        ));
        assert!(matches!(
            map_status(504, None, b"<html/>"),
            Err(AmoError::Server { status: 504 })
        ));
        assert!(matches!(
            map_status(302, None, b""),
            Err(AmoError::InvalidResponse(_))
        ));
    }
}
