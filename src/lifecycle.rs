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
impl Lifecycle {
    /// Runs `work` for `window`, then starts draining and waits until `work` returns:
    /// how tests watch a background loop for a while.
    pub(crate) async fn run_for<F>(
        window: std::time::Duration,
        work: impl FnOnce(std::sync::Arc<Lifecycle>) -> F,
    ) where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let lifecycle = std::sync::Arc::new(Lifecycle::default());
        let running = tokio::spawn(work(std::sync::Arc::clone(&lifecycle)));
        tokio::time::sleep(window).await;
        lifecycle.start_draining();
        running.await.expect("the loop stops when draining");
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
