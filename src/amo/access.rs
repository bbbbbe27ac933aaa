//! `AccessGuard`: stop calling AmoCRM once it says the account is blocked (403),
//! unpaid (402) or the token is no longer accepted (401). Hammering a blocked account
//! only prolongs the block; until `probe_after` passes, calls fail at once with the
//! same error, then one real call probes whether access is back.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::AmoError;

/// What operators (and `/ready`) see of AmoCRM access.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AmoAccess {
    Ok,
    /// AmoCRM refused access; calls are held back until the next probe.
    Refused {
        /// `unauthorized`, `payment_required` or `forbidden`.
        reason: &'static str,
        /// Unix seconds.
        since: u64,
    },
}

#[derive(Debug)]
struct Refusal {
    error: AmoError,
    since: u64,
    probe_at: Instant,
}

#[derive(Debug)]
pub struct AccessGuard {
    probe_after: Duration,
    refusal: Mutex<Option<Refusal>>,
}

impl AccessGuard {
    pub fn new(probe_after: Duration) -> Self {
        AccessGuard {
            probe_after,
            refusal: Mutex::new(None),
        }
    }

    /// `Err` with the refusal while calls are held back; `Ok` lets one call through.
    pub fn check(&self) -> Result<(), AmoError> {
        let mut refusal = self.refusal.lock().unwrap_or_else(PoisonError::into_inner);
        match refusal.as_mut() {
            Some(r) if Instant::now() < r.probe_at => Err(r.error.clone()),
            // Probe time: this call goes out; concurrent ones wait for its verdict.
            Some(r) => {
                r.probe_at = Instant::now() + self.probe_after;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Records what a call came back with; returns `true` when access was just lost
    /// (the moment worth one error line in the log).
    pub fn record<T>(&self, outcome: &Result<T, AmoError>) -> bool {
        let mut refusal = self.refusal.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Err(
                error @ (AmoError::Unauthorized | AmoError::PaymentRequired | AmoError::Forbidden),
            ) => {
                let fresh = refusal.is_none();
                let since = refusal.as_ref().map(|r| r.since).unwrap_or_else(unix_now);
                *refusal = Some(Refusal {
                    error: error.clone(),
                    since,
                    probe_at: Instant::now() + self.probe_after,
                });
                fresh
            }
            // Any answer that is not a refusal means access works (again).
            Ok(_) | Err(_) => {
                *refusal = None;
                false
            }
        }
    }

    pub fn state(&self) -> AmoAccess {
        let refusal = self.refusal.lock().unwrap_or_else(PoisonError::into_inner);
        match refusal.as_ref() {
            None => AmoAccess::Ok,
            Some(r) => AmoAccess::Refused {
                reason: r.error.kind(),
                since: r.since,
            },
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_refusal_holds_calls_back_until_one_probe_and_an_answer_clears_it() {
        let guard = AccessGuard::new(Duration::from_secs(60));
        assert!(guard.check().is_ok());
        assert!(
            guard.record::<()>(&Err(AmoError::Forbidden)),
            "access just lost"
        );
        assert!(
            !guard.record::<()>(&Err(AmoError::Forbidden)),
            "already known"
        );
        assert!(matches!(guard.check(), Err(AmoError::Forbidden)));
        assert!(matches!(
            guard.state(),
            AmoAccess::Refused {
                reason: "forbidden",
                ..
            }
        ));

        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(guard.check().is_ok(), "one probe goes out");
        assert!(guard.check().is_err(), "the others wait for it");
        guard.record(&Ok(()));
        assert_eq!(guard.state(), AmoAccess::Ok);
        assert!(guard.check().is_ok());
    }

    #[test]
    fn transient_failures_do_not_count_as_refusals() {
        let guard = AccessGuard::new(Duration::from_secs(60));
        guard.record::<()>(&Err(AmoError::Server { status: 502 }));
        guard.record::<()>(&Err(AmoError::RateLimited { retry_after: None }));
        assert_eq!(guard.state(), AmoAccess::Ok);
    }
}
