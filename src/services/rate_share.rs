//! Several instances share one AmoCRM integration's limit: each heartbeats into
//! `amo_senders` every 2 s and takes `AMO_MAX_RPS / live instances` (whole calls per
//! second, or one call every few seconds when there are more instances than calls),
//! so together they stay under the limit. An instance that joins counts itself at
//! once; one that stops leaves the circle at shutdown (or ages out after 6 s).
//!
//! Shares shrink at once but grow only slowly: an instance takes the most instances
//! it has seen within `REMEMBER`, so a sibling whose heartbeat is late (a busy
//! database) is still counted, and the two never add up to more than the limit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use slog::Logger;

use crate::amo::RateLimiter;
use crate::lifecycle::Lifecycle;
use crate::repositories::SenderRepository;

const BEAT: Duration = Duration::from_secs(2);
const ALIVE: Duration = Duration::from_secs(6);
const REMEMBER: Duration = Duration::from_secs(30);

pub struct RateShare {
    senders: Arc<dyn SenderRepository>,
    limiter: Arc<RateLimiter>,
    max_rps: u32,
    instance_id: String,
    /// Instance counts seen lately, newest last.
    seen: Mutex<VecDeque<(Instant, u32)>>,
    logger: Logger,
}

impl RateShare {
    pub fn new(
        senders: Arc<dyn SenderRepository>,
        limiter: Arc<RateLimiter>,
        max_rps: u32,
        logger: Logger,
    ) -> Self {
        let instance_id = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        RateShare {
            senders,
            limiter,
            max_rps,
            instance_id,
            seen: Mutex::new(VecDeque::new()),
            logger,
        }
    }

    /// One heartbeat; the limiter takes the share that follows from it. Returns the
    /// instances counted: the most seen within `REMEMBER`.
    pub async fn beat(&self) -> u32 {
        match self.senders.heartbeat(&self.instance_id, ALIVE).await {
            Ok(live) => {
                let counted = self.remember(live);
                self.limiter.share(self.max_rps, counted);
                counted
            }
            Err(err) => {
                slog::warn!(self.logger, "rate-limit heartbeat failed; keeping the last share"; "error" => err.to_string());
                0
            }
        }
    }

    fn remember(&self, live: u32) -> u32 {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.push_back((now, live));
        while seen.front().is_some_and(|(at, _)| now - *at > REMEMBER) {
            seen.pop_front();
        }
        seen.iter().map(|(_, n)| *n).max().unwrap_or(live)
    }

    pub async fn run(self, lifecycle: Arc<Lifecycle>) {
        let mut last = 0;
        while !lifecycle.is_draining() {
            let live = self.beat().await;
            if live != 0 && live != last {
                slog::info!(self.logger, "AmoCRM rate limit shared"; "instances" => live, "amo.max_rps" => self.max_rps);
                last = live;
            }
            lifecycle.pause(BEAT).await;
        }
        let _ = self.senders.leave(&self.instance_id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repositories::MockSenderRepository;

    #[tokio::test(start_paused = true)]
    async fn the_share_follows_the_number_of_live_instances() {
        let mut senders = MockSenderRepository::new();
        senders.expect_heartbeat().returning(|_, _| Ok(3));
        let limiter = Arc::new(RateLimiter::per_second(7));
        let share = RateShare::new(
            Arc::new(senders),
            Arc::clone(&limiter),
            7,
            Logger::root(slog::Discard, slog::o!()),
        );
        assert_eq!(share.beat().await, 3);
        // 7 / 3 = 2 calls per second for this instance: the third call waits a second.
        let started = tokio::time::Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert!(tokio::time::Instant::now() - started >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sibling_missing_one_heartbeat_is_still_counted_for_a_while() {
        let mut senders = MockSenderRepository::new();
        let mut beats = vec![2u32, 1, 1].into_iter();
        senders
            .expect_heartbeat()
            .returning(move |_, _| Ok(beats.next().unwrap_or(1)));
        let share = RateShare::new(
            Arc::new(senders),
            Arc::new(RateLimiter::per_second(7)),
            7,
            Logger::root(slog::Discard, slog::o!()),
        );
        assert_eq!(share.beat().await, 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(share.beat().await, 2, "a late sibling keeps its part");
        tokio::time::advance(REMEMBER + Duration::from_secs(1)).await;
        assert_eq!(share.beat().await, 1, "a sibling gone for long is dropped");
    }
}
