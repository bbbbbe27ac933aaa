//! Several instances share one AmoCRM integration's limit: each heartbeats into
//! `amo_senders` every 2 s and takes `AMO_MAX_RPS / live instances` (whole calls per
//! second, or one call every few seconds when there are more instances than calls),
//! so together they stay under the limit. An instance that joins counts itself at
//! once; one that stops leaves the circle at shutdown (or ages out after 6 s).

use std::sync::Arc;
use std::time::Duration;

use slog::Logger;

use crate::amo::RateLimiter;
use crate::lifecycle::Lifecycle;
use crate::repositories::SenderRepository;

const BEAT: Duration = Duration::from_secs(2);
const ALIVE: Duration = Duration::from_secs(6);

pub struct RateShare {
    senders: Arc<dyn SenderRepository>,
    limiter: Arc<RateLimiter>,
    max_rps: u32,
    instance_id: String,
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
            logger,
        }
    }

    /// One heartbeat; the limiter takes the share that follows from it.
    pub async fn beat(&self) -> u32 {
        match self.senders.heartbeat(&self.instance_id, ALIVE).await {
            Ok(live) => {
                self.limiter.share(self.max_rps, live);
                live
            }
            Err(err) => {
                slog::warn!(self.logger, "rate-limit heartbeat failed; keeping the last share"; "error" => err.to_string());
                0
            }
        }
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
}
