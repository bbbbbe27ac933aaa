//! Whether a new record must be searched for in AmoCRM before it is created
//! (`AMO_DEDUP`). In `auto` the search is skipped only while the mirror is
//! authoritative: a full import finished, our webhook was verified active in AmoCRM
//! within two reconciliation intervals, and reconciliation caught up within two
//! intervals. Anything missing or stale, or facts that cannot be read, means search.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use slog::Logger;

use crate::repositories::{FactAges, MirrorFactRepository};
use crate::settings::DedupMode;

/// How long one reading of the facts is reused: a burst of requests costs one query
/// a second or so, and a lapsed fact is noticed this much later at most.
const FACTS_TTL: Duration = Duration::from_secs(2);

/// The mirror's standing, as `/ready` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorState {
    pub authoritative: bool,
    /// Why not, when it is not: the first fact missing or stale.
    pub reason: Option<&'static str>,
    pub ages: FactAges,
}

pub struct MirrorAuthority {
    mode: DedupMode,
    /// `None`: no facts are kept, so `auto` always searches.
    facts: Option<Arc<dyn MirrorFactRepository>>,
    /// How old the webhook check and the last reconciliation may be.
    max_age: Duration,
    judged: Mutex<Judged>,
    logger: Logger,
}

#[derive(Default)]
struct Judged {
    at: Option<Instant>,
    state: Option<MirrorState>,
}

impl MirrorAuthority {
    /// Facts older than twice `reconcile_interval` are stale (one late round is
    /// tolerated); a zero interval (reconciliation off) never lets the mirror be
    /// authoritative.
    pub fn new(
        mode: DedupMode,
        facts: Arc<dyn MirrorFactRepository>,
        reconcile_interval: Duration,
        logger: Logger,
    ) -> Self {
        MirrorAuthority {
            mode,
            facts: Some(facts),
            max_age: reconcile_interval * 2,
            judged: Mutex::new(Judged::default()),
            logger,
        }
    }

    /// A mode with no facts behind it: `remote` and `auto` search, `mirror` does not.
    pub fn fixed(mode: DedupMode) -> Self {
        MirrorAuthority {
            mode,
            facts: None,
            max_age: Duration::ZERO,
            judged: Mutex::new(Judged::default()),
            logger: Logger::root(slog::Discard, slog::o!()),
        }
    }

    pub fn mode(&self) -> DedupMode {
        self.mode
    }

    /// Whether AmoCRM is to be searched before a create. In `auto` the facts are
    /// read at most once per `FACTS_TTL`.
    pub async fn search_amocrm(&self) -> bool {
        match self.mode {
            DedupMode::Remote => true,
            DedupMode::Mirror => false,
            DedupMode::Auto => {
                let cached = {
                    let judged = self.judged.lock().unwrap_or_else(PoisonError::into_inner);
                    match (judged.at, judged.state) {
                        (Some(at), Some(state)) if at.elapsed() < FACTS_TTL => Some(state),
                        _ => None,
                    }
                };
                let state = match cached {
                    Some(state) => state,
                    None => self.state().await,
                };
                !state.authoritative
            }
        }
    }

    /// Reads the facts now, and logs when the verdict changed since the last reading.
    pub async fn state(&self) -> MirrorState {
        let state = match &self.facts {
            None => MirrorState {
                authoritative: false,
                reason: Some("no facts are kept"),
                ages: FactAges::default(),
            },
            Some(facts) => match facts.ages().await {
                Ok(ages) => judge(ages, self.max_age),
                Err(error) => {
                    slog::warn!(self.logger, "mirror facts unreadable; AmoCRM is searched";
                        "error" => error.to_string());
                    MirrorState {
                        authoritative: false,
                        reason: Some("facts unreadable"),
                        ages: FactAges::default(),
                    }
                }
            },
        };
        self.remember(state);
        state
    }

    fn remember(&self, state: MirrorState) {
        let before = {
            let mut judged = self.judged.lock().unwrap_or_else(PoisonError::into_inner);
            judged.at = Some(Instant::now());
            judged.state.replace(state)
        };
        crate::metrics::mirror_authoritative(state.authoritative);
        if before.map(|b| b.authoritative) == Some(state.authoritative) {
            return;
        }
        let mode = self.mode.as_str();
        match (state.authoritative, self.mode) {
            (true, DedupMode::Auto) => slog::info!(self.logger,
                "the mirror is authoritative: new contacts are no longer searched for in AmoCRM";
                "dedup.mode" => mode),
            (true, _) => {
                slog::info!(self.logger, "the mirror is authoritative"; "dedup.mode" => mode)
            }
            // At start-up a mirror that is not authoritative is the normal case.
            (false, DedupMode::Auto) if before.is_some() => slog::warn!(self.logger,
                "the mirror is no longer authoritative: new contacts are searched for in AmoCRM again";
                "dedup.mode" => mode, "reason" => state.reason.unwrap_or_default()),
            (false, _) => slog::info!(self.logger, "the mirror is not authoritative";
                "dedup.mode" => mode, "reason" => state.reason.unwrap_or_default()),
        }
    }
}

/// Whether a record is searched for in AmoCRM: always while the mirror is not
/// trusted, and always on a retry, since a failed attempt (a timeout, a reply that
/// did not name the record) may have created it in AmoCRM without amosync learning its id.
pub(crate) fn searched(search_amocrm: bool, attempts: i32) -> bool {
    search_amocrm || attempts > 0
}

fn judge(ages: FactAges, max_age: Duration) -> MirrorState {
    let fresh = |age: Option<i64>| age.is_some_and(|secs| secs <= max_age.as_secs() as i64);
    let reason = if max_age.is_zero() {
        Some("reconciliation is off")
    } else if ages.full_import.is_none() {
        Some("no full import has finished")
    } else if !fresh(ages.webhook_active) {
        Some("the webhook was not verified active recently")
    } else if !fresh(ages.reconciled) {
        Some("reconciliation is not current")
    } else {
        None
    };
    MirrorState {
        authoritative: reason.is_none(),
        reason,
        ages,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::repositories::MockMirrorFactRepository;

    pub(crate) const INTERVAL: Duration = Duration::from_secs(300);

    /// All three facts recorded a moment ago.
    pub(crate) fn all_facts() -> FactAges {
        FactAges {
            full_import: Some(86_400),
            webhook_active: Some(10),
            reconciled: Some(10),
        }
    }

    /// `auto` over facts that read as `ages`.
    pub(crate) fn auto_with(ages: FactAges) -> MirrorAuthority {
        let mut facts = MockMirrorFactRepository::new();
        facts.expect_ages().returning(move || Ok(ages));
        MirrorAuthority::new(
            DedupMode::Auto,
            Arc::new(facts),
            INTERVAL,
            Logger::root(slog::Discard, slog::o!()),
        )
    }

    /// Every way the mirror falls short of authoritative.
    pub(crate) fn lacking_one_fact() -> Vec<FactAges> {
        let stale = Some(2 * INTERVAL.as_secs() as i64 + 1);
        vec![
            FactAges {
                full_import: None,
                ..all_facts()
            },
            FactAges {
                webhook_active: None,
                ..all_facts()
            },
            FactAges {
                webhook_active: stale,
                ..all_facts()
            },
            FactAges {
                reconciled: None,
                ..all_facts()
            },
            FactAges {
                reconciled: stale,
                ..all_facts()
            },
        ]
    }

    #[tokio::test]
    async fn auto_skips_the_search_only_while_all_three_facts_hold() {
        assert!(!auto_with(all_facts()).search_amocrm().await);
        for ages in lacking_one_fact() {
            assert!(auto_with(ages).search_amocrm().await, "{ages:?}");
        }
    }

    #[tokio::test]
    async fn remote_always_searches_and_mirror_never_does_whatever_the_facts() {
        let facts = || {
            let mut facts = MockMirrorFactRepository::new();
            facts.expect_ages().never();
            Arc::new(facts)
        };
        let logger = || Logger::root(slog::Discard, slog::o!());
        let remote = MirrorAuthority::new(DedupMode::Remote, facts(), INTERVAL, logger());
        let mirror = MirrorAuthority::new(DedupMode::Mirror, facts(), INTERVAL, logger());
        assert!(remote.search_amocrm().await);
        assert!(!mirror.search_amocrm().await);
    }

    #[tokio::test]
    async fn unreadable_facts_or_reconciliation_switched_off_mean_searching() {
        let mut facts = MockMirrorFactRepository::new();
        facts
            .expect_ages()
            .returning(|| Err(crate::repositories::RepoError::Unavailable("down".into())));
        let logger = Logger::root(slog::Discard, slog::o!());
        let broken = MirrorAuthority::new(DedupMode::Auto, Arc::new(facts), INTERVAL, logger);
        assert!(broken.search_amocrm().await);
        let mut facts = MockMirrorFactRepository::new();
        facts.expect_ages().returning(|| Ok(all_facts()));
        let logger = Logger::root(slog::Discard, slog::o!());
        let off = MirrorAuthority::new(DedupMode::Auto, Arc::new(facts), Duration::ZERO, logger);
        assert!(off.search_amocrm().await);
    }

    #[tokio::test]
    async fn a_verdict_is_reused_for_a_moment_instead_of_asking_the_database_each_time() {
        let mut facts = MockMirrorFactRepository::new();
        facts.expect_ages().times(1).returning(|| Ok(all_facts()));
        let logger = Logger::root(slog::Discard, slog::o!());
        let authority = MirrorAuthority::new(DedupMode::Auto, Arc::new(facts), INTERVAL, logger);
        for _ in 0..3 {
            assert!(!authority.search_amocrm().await);
        }
    }
}
