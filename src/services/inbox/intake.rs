//! What the webhook receiver tells the webhook worker: a delivery was stored (wake
//! up), and how many acknowledgements are under way right now. AmoCRM disables a
//! hook whose deliveries keep timing out, while the mirror can catch up seconds
//! later; so when acknowledgements queue up, the worker leaves them the database.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Intake {
    stored: Notify,
    acking: AtomicUsize,
}

impl Intake {
    /// Marks one acknowledgement as under way until the guard is dropped.
    pub fn acking(self: &Arc<Self>) -> Acking {
        self.acking.fetch_add(1, Ordering::Relaxed);
        Acking(Arc::clone(self))
    }

    /// Acknowledgements under way right now.
    pub fn in_flight(&self) -> usize {
        self.acking.load(Ordering::Relaxed)
    }

    /// A delivery is durable in the inbox: wake one idle applier.
    pub fn stored(&self) {
        self.stored.notify_one();
    }

    /// Resolves at the next `stored` (or at once, if one came while nobody waited).
    pub async fn next_stored(&self) {
        self.stored.notified().await;
    }
}

/// One acknowledgement under way (see [`Intake::acking`]).
pub struct Acking(Arc<Intake>);

impl Drop for Acking {
    fn drop(&mut self) {
        self.0.acking.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_count_while_their_guards_live() {
        let intake = Arc::new(Intake::default());
        let first = intake.acking();
        let second = intake.acking();
        assert_eq!(intake.in_flight(), 2);
        drop(first);
        assert_eq!(intake.in_flight(), 1);
        drop(second);
        assert_eq!(intake.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_store_before_anyone_waits_still_wakes_the_next_waiter() {
        let intake = Intake::default();
        intake.stored();
        tokio::time::timeout(std::time::Duration::from_secs(1), intake.next_stored())
            .await
            .expect("the earlier store wakes the waiter");
    }
}
