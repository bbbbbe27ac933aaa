//! Coalescing of concurrent calls into one database round trip. Callers that
//! arrive while a batch is being executed wait for the next one, which takes all
//! of them at once; each caller still gets only its own answer. With nobody
//! waiting a call runs at once, on the caller's own runtime, so a quiet service
//! pays no extra latency; under load one commit or one query serves a whole batch.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio::sync::oneshot;

/// What the batcher itself can go wrong with; each caller's error type says what
/// it means for it (`From<BatchFailure>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchFailure {
    /// The runner holding the call went away before answering (runtime shutting down).
    #[error("the batcher dropped a call")]
    Dropped,
    /// The batch's execution panicked.
    #[error("a batch panicked")]
    Panicked,
    /// The execution answered with a different number of outputs than it got items.
    #[error("a batch of {expected} gave {got} answers")]
    Miscounted { expected: usize, got: usize },
}

/// Bounds of one batch and how many run at the same time.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_items: usize,
    /// Bound on the sum of the items' weights (e.g. bytes of a multi-row INSERT).
    pub max_weight: usize,
    /// Batches executing at once: while one waits for the database, the next collects.
    pub runners: usize,
    /// When fewer items than this wait, a batch takes the largest power of two of
    /// them (the rest go in the next): its statement then comes in a few shapes a
    /// connection can keep prepared. 0: batches take what waits.
    pub power_of_two_below: usize,
}

type Execute<I, O, E> = dyn Fn(Vec<I>) -> BoxFuture<'static, Result<Vec<O>, E>> + Send + Sync;

struct Waiting<I, O, E> {
    item: I,
    answer: oneshot::Sender<Result<O, E>>,
}

struct Queue<I, O, E> {
    waiting: VecDeque<Waiting<I, O, E>>,
    /// Batches executing right now (at most `limits.runners`).
    running: usize,
}

struct Shared<I, O, E> {
    queue: Mutex<Queue<I, O, E>>,
    execute: Box<Execute<I, O, E>>,
    limits: BatchLimits,
    weight: fn(&I) -> usize,
}

/// The handle callers submit items through; clones share the batches.
pub struct Batcher<I, O, E> {
    shared: Arc<Shared<I, O, E>>,
}

impl<I, O, E> Clone for Batcher<I, O, E> {
    fn clone(&self) -> Self {
        Batcher {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<I, O, E> Batcher<I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: From<BatchFailure> + Clone + Send + 'static,
{
    /// `execute` gets the items of one batch and returns one output per item, in
    /// the same order.
    pub fn new<F, Fut>(limits: BatchLimits, weight: fn(&I) -> usize, execute: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send + 'static,
    {
        Batcher {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    waiting: VecDeque::new(),
                    running: 0,
                }),
                execute: Box::new(move |items| Box::pin(execute(items))),
                limits,
                weight,
            }),
        }
    }

    /// Submits one item; returns its output once the batch holding it has run.
    /// When fewer than `runners` batches are executing, this call starts one on
    /// the caller's runtime (a task of its own, so a caller that goes away cannot
    /// strand the others in its batch); otherwise the item waits for the next.
    pub async fn submit(&self, item: I) -> Result<O, E> {
        let (answer, outcome) = oneshot::channel();
        let lead = {
            let mut queue = self.shared.lock();
            queue.waiting.push_back(Waiting { item, answer });
            let lead = queue.running < self.shared.limits.runners.max(1);
            if lead {
                queue.running += 1;
            }
            lead
        };
        if lead {
            tokio::spawn(run_batches(Arc::clone(&self.shared)));
        }
        outcome.await.map_err(|_| E::from(BatchFailure::Dropped))?
    }
}

impl<I, O, E> Shared<I, O, E> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<I, O, E>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch, up to the limits; `None` (and one runner fewer) when
    /// nothing waits.
    fn next_batch(&self) -> Option<Vec<Waiting<I, O, E>>> {
        let mut queue = self.lock();
        let waiting = queue.waiting.len();
        let Some(first) = queue.waiting.pop_front() else {
            queue.running -= 1;
            return None;
        };
        let max_items = if waiting < self.limits.power_of_two_below {
            self.limits.max_items.min(1 << waiting.ilog2())
        } else {
            self.limits.max_items
        };
        let mut total = (self.weight)(&first.item);
        let mut batch = vec![first];
        while batch.len() < max_items && total < self.limits.max_weight {
            let Some(next) = queue.waiting.pop_front() else {
                break;
            };
            total += (self.weight)(&next.item);
            batch.push(next);
        }
        Some(batch)
    }
}

/// Executes batches until the queue is empty.
async fn run_batches<I, O, E>(shared: Arc<Shared<I, O, E>>)
where
    E: From<BatchFailure> + Clone,
{
    while let Some(batch) = shared.next_batch() {
        let (items, answers): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|w| (w.item, w.answer)).unzip();
        let expected = answers.len();
        // A panic must not leave the batch's callers waiting, nor the runner counted.
        let outcome = AssertUnwindSafe((shared.execute)(items))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(E::from(BatchFailure::Panicked)));
        match outcome {
            Ok(outputs) if outputs.len() == expected => {
                for (answer, output) in answers.into_iter().zip(outputs) {
                    // A caller that went away (client hung up) needs no answer.
                    let _ = answer.send(Ok(output));
                }
            }
            Ok(outputs) => {
                let error = E::from(BatchFailure::Miscounted {
                    expected,
                    got: outputs.len(),
                });
                answers
                    .into_iter()
                    .for_each(|a| drop(a.send(Err(error.clone()))));
            }
            Err(error) => answers
                .into_iter()
                .for_each(|a| drop(a.send(Err(error.clone())))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A caller's error: its own failures and the batcher's.
    #[derive(Debug, Clone, PartialEq)]
    enum TestError {
        GoneAway,
        Batch(BatchFailure),
    }

    impl From<BatchFailure> for TestError {
        fn from(failure: BatchFailure) -> Self {
            TestError::Batch(failure)
        }
    }

    type TestBatcher<I, O> = Batcher<I, O, TestError>;

    fn limits(max_items: usize, max_weight: usize) -> BatchLimits {
        BatchLimits {
            max_items,
            max_weight,
            runners: 1,
            power_of_two_below: 0,
        }
    }

    #[tokio::test]
    async fn queued_calls_share_a_batch_and_each_gets_its_own_answer() {
        let batches = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&batches);
        let doubler: TestBatcher<u32, u32> = Batcher::new(
            limits(100, usize::MAX),
            |_| 1,
            move |items: Vec<u32>| {
                seen.fetch_add(1, Ordering::SeqCst);
                async move { Ok(items.into_iter().map(|n| n * 2).collect()) }
            },
        );
        let calls: Vec<_> = (0..50u32)
            .map(|n| {
                let doubler = doubler.clone();
                tokio::spawn(async move { (n, doubler.submit(n).await) })
            })
            .collect();
        for call in calls {
            let (n, answer) = call.await.expect("task");
            assert_eq!(answer.expect("answer"), n * 2);
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!(batches < 10, "50 calls took {batches} batches");
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_item_and_weight_bounds() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let echo: TestBatcher<usize, usize> = Batcher::new(
            limits(4, 30),
            |n: &usize| *n,
            move |items: Vec<usize>| {
                seen.lock().expect("sizes").push(items.clone());
                async move { Ok(items) }
            },
        );
        let all = futures::future::join_all((0..12).map(|_| echo.submit(10))).await;
        assert!(all.iter().all(Result::is_ok));
        let sizes = sizes.lock().expect("sizes").clone();
        assert_eq!(sizes.iter().map(Vec::len).sum::<usize>(), 12);
        assert!(
            sizes.iter().all(|b| b.len() <= 3),
            "weight 30 = three items: {sizes:?}"
        );
    }

    #[tokio::test]
    async fn below_the_bound_batches_hold_a_power_of_two_of_the_waiting_items() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let echo: TestBatcher<usize, usize> = Batcher::new(
            BatchLimits {
                power_of_two_below: 16,
                ..limits(100, usize::MAX)
            },
            |_| 1,
            move |items: Vec<usize>| {
                seen.lock().expect("sizes").push(items.len());
                async move { Ok(items) }
            },
        );
        // However the 13 calls happen to queue, no batch holds 3, 5, 6, 7 or 9-15.
        let all = futures::future::join_all((0..13).map(|n| echo.submit(n))).await;
        assert!(all.iter().all(Result::is_ok));
        let sizes = sizes.lock().expect("sizes").clone();
        assert_eq!(sizes.iter().sum::<usize>(), 13);
        assert!(
            sizes.iter().all(|n| n.is_power_of_two()),
            "batches of {sizes:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_or_short_batch_is_an_error_for_every_caller_in_it() {
        let failing: TestBatcher<u8, u8> = Batcher::new(
            limits(10, usize::MAX),
            |_| 1,
            |_| async { Err(TestError::GoneAway) },
        );
        let (a, b) = tokio::join!(failing.submit(1), failing.submit(2));
        assert_eq!(a, Err(TestError::GoneAway));
        assert_eq!(b, Err(TestError::GoneAway));

        let short: TestBatcher<u8, u8> =
            Batcher::new(limits(10, usize::MAX), |_| 1, |_| async { Ok(vec![]) });
        assert_eq!(
            short.submit(1).await,
            Err(TestError::Batch(BatchFailure::Miscounted {
                expected: 1,
                got: 0
            }))
        );
    }
}
