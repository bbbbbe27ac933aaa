//! `Lifecycle`: the service's "we are stopping" switch. On SIGTERM `/ready` turns
//! 503 (load balancers stop sending), in-flight requests finish, and the background
//! workers stop claiming work after their current batch.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    changed: Notify,
}

impl Lifecycle {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Sleeps for `pause`, or less if draining starts meanwhile.
    pub async fn pause(&self, pause: std::time::Duration) {
        if self.is_draining() {
            return;
        }
        let _ = tokio::time::timeout(pause, self.changed.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn draining_cuts_a_pause_short() {
        let lifecycle = Arc::new(Lifecycle::default());
        let waiter = Arc::clone(&lifecycle);
        let started = Instant::now();
        let task = tokio::spawn(async move { waiter.pause(Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        lifecycle.start_draining();
        task.await.expect("task");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(lifecycle.is_draining());
    }
}
