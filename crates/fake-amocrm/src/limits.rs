//! The per-account rate limit of `/api/v4`: a sliding one-second window.
//!
//! More than N calls within any second get 429 with a plain-text body, as AmoCRM's edge
//! answers. After a configured number of 429s the account is blocked: every later call gets
//! the nginx 403 page until an operator lifts the block. Arrivals are counted separately, refused
//! ones included, so a test can tell how fast a client really called.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Limited,
    Blocked,
}

#[derive(Default)]
pub(crate) struct Limiter {
    /// Calls let through within the last second.
    admitted: VecDeque<Instant>,
    /// Every call within the last second, refused ones too.
    arrivals: VecDeque<Instant>,
    max_arrivals: usize,
    limited: usize,
    blocked: bool,
}

fn prune(window: &mut VecDeque<Instant>, now: Instant) {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= WINDOW)
    {
        window.pop_front();
    }
}

impl Limiter {
    pub fn check(&mut self, now: Instant, limit: Option<u32>, block_after: Option<u32>) -> Verdict {
        prune(&mut self.arrivals, now);
        self.arrivals.push_back(now);
        self.max_arrivals = self.max_arrivals.max(self.arrivals.len());
        if self.blocked {
            return Verdict::Blocked;
        }
        prune(&mut self.admitted, now);
        match limit {
            Some(limit) if self.admitted.len() >= limit as usize => {
                self.limited += 1;
                if block_after.is_some_and(|n| self.limited >= n as usize) {
                    self.blocked = true;
                }
                Verdict::Limited
            }
            _ => {
                self.admitted.push_back(now);
                Verdict::Pass
            }
        }
    }

    /// The most calls seen within any one second, refused ones included.
    pub fn max_in_one_second(&self) -> usize {
        self.max_arrivals
    }

    pub fn rate_limited(&self) -> usize {
        self.limited
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// What AmoCRM support does on request: the block goes, the 429 count starts over.
    pub fn unblock(&mut self) {
        self.blocked = false;
        self.limited = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides_and_refused_calls_still_count_as_arrivals() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(limiter.check(at(0), Some(2), None), Verdict::Pass);
        assert_eq!(limiter.check(at(500), Some(2), None), Verdict::Pass);
        assert_eq!(limiter.check(at(900), Some(2), None), Verdict::Limited);
        // The first call left the window at 1000 ms.
        assert_eq!(limiter.check(at(1000), Some(2), None), Verdict::Pass);
        assert_eq!(limiter.check(at(1100), Some(2), None), Verdict::Limited);
        assert_eq!(limiter.rate_limited(), 2);
        assert_eq!(
            limiter.max_in_one_second(),
            4,
            "500..1100 ms holds four arrivals"
        );
    }

    #[test]
    fn the_block_is_sticky_until_lifted() {
        let mut limiter = Limiter::default();
        let now = Instant::now();
        assert_eq!(limiter.check(now, Some(1), Some(2)), Verdict::Pass);
        assert_eq!(limiter.check(now, Some(1), Some(2)), Verdict::Limited);
        assert_eq!(limiter.check(now, Some(1), Some(2)), Verdict::Limited);
        let later = now + Duration::from_secs(5);
        assert_eq!(limiter.check(later, Some(1), Some(2)), Verdict::Blocked);
        limiter.unblock();
        assert_eq!(limiter.check(later, Some(1), Some(2)), Verdict::Pass);
    }
}
