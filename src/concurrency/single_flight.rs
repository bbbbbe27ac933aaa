//! Single-flight: concurrent callers asking for the same key share one execution.
//!
//! The work runs in its own task, so a client that hangs up cannot cancel an
//! AmoCRM create halfway; every caller waiting on the key gets the same result.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::{BoxFuture, FutureExt, Shared};

type Flight<T> = Shared<BoxFuture<'static, T>>;

pub struct SingleFlight<T: Clone> {
    inflight: Arc<Mutex<HashMap<String, Flight<T>>>>,
}

impl<T: Clone> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            inflight: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Whether a flight for `key` is under way now.
    pub fn is_running(&self, key: &str) -> bool {
        let map = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        map.contains_key(key)
    }

    /// Runs `work` unless a flight for `key` is already under way, in which case its
    /// result is awaited instead. Returns the result and whether this caller started it.
    /// `on_panic` stands in for the result if the work panics.
    pub async fn run<F>(&self, key: String, work: F, on_panic: fn() -> T) -> (T, bool)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (flight, leader) = {
            let mut map = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            match map.get(&key) {
                Some(flight) => (flight.clone(), false),
                None => {
                    let registry = Arc::clone(&self.inflight);
                    let task_key = key.clone();
                    // The task removes its own entry, so later callers start afresh even
                    // when every waiter went away before the work finished.
                    let handle = tokio::spawn(async move {
                        let out = work.await;
                        registry
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&task_key);
                        out
                    });
                    let flight = async move { handle.await.unwrap_or_else(|_| on_panic()) }
                        .boxed()
                        .shared();
                    map.insert(key, flight.clone());
                    (flight, true)
                }
            }
        };
        (flight.await, leader)
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_execution_and_one_leader() {
        let flights = Arc::new(SingleFlight::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let flights = Arc::clone(&flights);
            let runs = Arc::clone(&runs);
            tasks.push(tokio::spawn(async move {
                let work = async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    7
                };
                flights.run("k".into(), work, || 0).await
            }));
        }
        let mut leaders = 0;
        for task in tasks {
            let (value, leader) = task.await.expect("task");
            assert_eq!(value, 7);
            leaders += usize::from(leader);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn different_keys_run_separately_and_panics_become_the_fallback() {
        let flights = SingleFlight::<u32>::default();
        let (a, _) = flights.run("a".into(), async { 1 }, || 0).await;
        let (b, _) = flights.run("b".into(), async { 2 }, || 0).await;
        assert_eq!((a, b), (1, 2));
        let (p, leader) = flights
            .run("p".into(), async { panic!("boom") }, || 99)
            .await;
        assert_eq!((p, leader), (99, true));
    }
}
