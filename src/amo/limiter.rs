//! `RateLimiter`: at most N AmoCRM calls in any sliding one-second window.
//!
//! AmoCRM allows about 7 requests per second per integration and blocks accounts
//! that keep going over. A token bucket with a burst of N would let ~2N through in
//! one second. Here every call goes at the earliest instant that is
//! - a window after the call N places before it, as booked (the strict window
//!   itself: `Schedule::booked`), whatever happened in between;
//! - a window / N after the slot the previous call was due at (the cadence): calls
//!   come spaced, not N at once and then a pause, since calls sent together reach
//!   AmoCRM one after another and the last of one group could land within a second of
//!   the first of the next. A wake-up that was late does not shift the cadence: the
//!   next call makes up for it;
//! - half a window / N after the previous call, so making up never sends a group.
//!
//! Only the first rule keeps the limit; the others shape the flow. Every call is
//! booked at the instant it actually goes (within the timer's millisecond), so
//! lateness does not eat into the margin; it costs only the late call's own chain
//! (the calls N, 2N, … places later).
//!
//! The window is a second plus a margin for the calls' way to AmoCRM (20 ms). Each
//! 429 doubles the margin, which halves again after each minute without one
//! (`Widened`): a link with more jitter pays for it while it lasts, not for good.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    /// Calls per window; 0 means unlimited. Changes when instances share the limit.
    budget: Mutex<Budget>,
    /// The calls booked so far, as far as the next slot depends on them.
    schedule: Mutex<Schedule>,
    /// Set from a 429's `Retry-After`: nobody sends before then.
    paused_until: Mutex<Option<Instant>>,
    /// Added to the window after 429s: this link's jitter is larger than assumed.
    widened: Mutex<Widened>,
    /// Callers inside `acquire` right now.
    waiting: AtomicUsize,
    /// Callers inside `acquire_first`: the others hold back until they have booked.
    first: AtomicUsize,
    /// Wakes the others when a caller of `acquire_first` has booked.
    first_booked: Notify,
}

/// Counts a caller of `acquire_first` until it leaves, also when it is cancelled.
struct First<'a>(&'a RateLimiter);

impl Drop for First<'_> {
    fn drop(&mut self) {
        self.0.first.fetch_sub(1, Ordering::SeqCst);
        self.0.first_booked.notify_waiters();
    }
}

/// Counts a caller as waiting until it leaves `acquire`, also when it is cancelled.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Calls leave a little later than they are booked (a new connection, a busy core), and
/// AmoCRM counts arrivals: windows a little longer than a second keep arrivals under the
/// limit too, not just departures. Only a call that is late by more than this against
/// the call N places later can break the limit; every millisecond of it costs 0.1 % of
/// the rate (100 ms cost 9 %), so it starts small and grows after each 429.
const JITTER_MARGIN: Duration = Duration::from_millis(20);
/// How late a timer may fire and the call still count as going at its slot (tokio's
/// timers have millisecond granularity); the margin covers it.
const TIMER_GRANULARITY: Duration = Duration::from_millis(1);
/// The most a run of 429s widens the margin to.
const MAX_JITTER_MARGIN: Duration = Duration::from_millis(200);
/// After this long without a 429 a widened margin halves (once per such spell).
const WIDENING_HALF_LIFE: Duration = Duration::from_secs(60);

/// The margin 429s added, narrowing again while none comes.
#[derive(Debug, Default)]
struct Widened {
    by: Duration,
    last_429: Option<Instant>,
}

impl Widened {
    fn at(&self, now: Instant) -> Duration {
        let Some(last) = self.last_429 else {
            return Duration::ZERO;
        };
        let spells = (now - last).as_secs() / WIDENING_HALF_LIFE.as_secs();
        self.by / 2u32.saturating_pow(u32::try_from(spells).unwrap_or(u32::MAX))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    max: usize,
    window: Duration,
}

impl Budget {
    /// The cadence: one call per this while callers keep coming.
    fn spacing(self) -> Duration {
        self.window / self.max.max(1) as u32
    }
}

/// The calls booked so far, as far as the next slot depends on them.
#[derive(Debug, Default)]
struct Schedule {
    /// When the latest calls actually went, oldest first (the latest N are kept).
    booked: VecDeque<Instant>,
    /// The slot the latest call was due at: the cadence goes on from here.
    due: Option<Instant>,
}

impl Schedule {
    /// The earliest instant the next call may go (see the module's rules); `now` for
    /// the first call. In the past when the limiter has been waiting for callers: a
    /// caller that finds its slot passed is late by that much.
    fn next_slot(&self, budget: Budget, now: Instant) -> Instant {
        let spacing = budget.spacing();
        let (Some(due), Some(last)) = (self.due, self.booked.back()) else {
            return now;
        };
        let mut slot = (due + spacing).max(*last + spacing / 2);
        if let Some(nth) = self
            .booked
            .len()
            .checked_sub(budget.max)
            .and_then(|i| self.booked.get(i))
        {
            slot = slot.max(*nth + budget.window);
        }
        slot
    }

    /// Books a call that goes `now` for `slot`. A wake-up late by less than a spacing
    /// keeps the cadence; a call after a quiet spell starts a new one.
    fn book(&mut self, budget: Budget, slot: Instant, now: Instant) {
        // Timers fire on whole milliseconds: that much lateness is the clock's, not
        // the call's, and would otherwise stretch every chain by it.
        let on_time = now - slot <= TIMER_GRANULARITY;
        self.booked.push_back(if on_time { slot } else { now });
        while self.booked.len() > budget.max {
            self.booked.pop_front();
        }
        self.due = Some(if now - slot < budget.spacing() {
            slot
        } else {
            now
        });
    }
}

impl RateLimiter {
    /// `max_per_second` of 0 means unlimited.
    pub fn per_second(max_per_second: u32) -> Self {
        RateLimiter {
            budget: Mutex::new(Budget {
                max: max_per_second as usize,
                window: Duration::from_secs(1) + JITTER_MARGIN,
            }),
            schedule: Mutex::new(Schedule::default()),
            paused_until: Mutex::new(None),
            widened: Mutex::new(Widened::default()),
            waiting: AtomicUsize::new(0),
            first: AtomicUsize::new(0),
            first_booked: Notify::new(),
        }
    }

    /// This instance's part of `total_per_second` when `instances` share it: whole
    /// calls per second while they go round, else one call per a few seconds, so the
    /// instances together never exceed the total.
    pub fn share(&self, total_per_second: u32, instances: u32) {
        if total_per_second == 0 {
            return;
        }
        let instances = instances.max(1);
        let per_second = total_per_second / instances;
        // Several senders' jitters add up at AmoCRM: each keeps twice the margin.
        let margin = if instances > 1 {
            JITTER_MARGIN * 2
        } else {
            JITTER_MARGIN
        };
        let budget = if per_second >= 1 {
            Budget {
                max: per_second as usize,
                window: Duration::from_secs(1) + margin,
            }
        } else {
            Budget {
                max: 1,
                window: Duration::from_secs(u64::from(instances.div_ceil(total_per_second)))
                    + margin,
            }
        };
        *self.budget.lock().unwrap_or_else(PoisonError::into_inner) = budget;
    }

    /// Whether more callers wait than one window lets through: a new call would
    /// wait longer than a window (or a 429 pause is running).
    pub fn is_congested(&self) -> bool {
        let budget = *self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        if budget.max == 0 {
            return false;
        }
        let paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| until > Instant::now());
        paused || self.waiting.load(Ordering::Relaxed) >= budget.max
    }

    /// Waits for the next free slot, and books it.
    pub async fn acquire(&self) {
        let _waiting = Waiting::enter(&self.waiting);
        loop {
            let booked = self.first_booked.notified();
            tokio::pin!(booked);
            booked.as_mut().enable();
            if self.first.load(Ordering::SeqCst) > 0 {
                booked.await;
                continue;
            }
            if self.try_book().await {
                return;
            }
        }
    }

    /// Like `acquire`, ahead of every caller already waiting: for a call all the
    /// others wait for (a token refresh), which must not queue behind them.
    pub async fn acquire_first(&self) {
        self.first.fetch_add(1, Ordering::SeqCst);
        let _first = First(self);
        while !self.try_book().await {}
    }

    /// Books a call if one fits now; otherwise waits until one may and says `false`.
    async fn try_book(&self) -> bool {
        {
            let mut budget = *self.budget.lock().unwrap_or_else(PoisonError::into_inner);
            if budget.max == 0 {
                return true;
            }
            let now = Instant::now();
            budget.window += self
                .widened
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .at(now);
            let pause = *self
                .paused_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(until) = pause.filter(|until| *until > Instant::now()) {
                tokio::time::sleep_until(until).await;
                return false;
            }
            let slot = {
                let mut schedule = self.schedule.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let slot = schedule.next_slot(budget, now);
                if slot <= now {
                    schedule.book(budget, slot, now);
                    return true;
                }
                slot
            };
            tokio::time::sleep_until(slot).await;
            false
        }
    }

    /// After a 429: hold every caller back for `delay`, and keep a wider margin
    /// (doubled per 429, up to `MAX_JITTER_MARGIN`; halved again after each minute
    /// without one).
    pub fn pause_for(&self, delay: Duration) {
        {
            let now = Instant::now();
            let mut widened = self.widened.lock().unwrap_or_else(PoisonError::into_inner);
            let by = (widened.at(now) * 2)
                .max(JITTER_MARGIN)
                .min(MAX_JITTER_MARGIN - JITTER_MARGIN);
            *widened = Widened {
                by,
                last_429: Some(now),
            };
        }
        let until = Instant::now() + delay;
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn no_more_than_n_calls_start_in_any_one_second_window() {
        let limiter = Arc::new(RateLimiter::per_second(7));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..30 {
            let limiter = Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                limiter.acquire().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.expect("task"));
        }
        times.sort();
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(
                in_window <= 7,
                "{in_window} calls within one second from call {i}"
            );
        }
        // 30 calls at 7 per second need a little over 4 seconds, not 30 / 14.
        assert!(times[29] - started >= Duration::from_secs(4));
        assert!(times[29] - started < Duration::from_secs(5));
    }

    /// Each call's booking time, for `calls` callers queued at once.
    async fn booked(limiter: &Arc<RateLimiter>, calls: usize) -> Vec<Instant> {
        let tasks: Vec<_> = (0..calls)
            .map(|_| {
                let limiter = Arc::clone(limiter);
                tokio::spawn(async move {
                    limiter.acquire().await;
                    Instant::now()
                })
            })
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.expect("task"));
        }
        times.sort();
        times
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_burst_uses_at_least_98_percent_of_the_rate() {
        let limiter = Arc::new(RateLimiter::per_second(7));
        let times = booked(&limiter, 701).await;
        // 700 intervals at 7 per second: 100 s at the full rate.
        let span = (times[700] - times[0]).as_secs_f64();
        let used = 100.0 / span;
        assert!(used >= 0.98, "{:.1} % of the rate", used * 100.0);
    }

    const SEVEN: Budget = Budget {
        max: 7,
        window: Duration::from_millis(1020),
    };

    /// Books `calls` calls, each as soon as `next_slot` allows plus the lateness
    /// `late(i)` of its wake-up; returns when each went.
    fn book_late(calls: usize, late: impl Fn(usize) -> Duration) -> Vec<Instant> {
        let mut schedule = Schedule::default();
        let mut times = Vec::new();
        let mut now = Instant::now();
        for i in 0..calls {
            let slot = schedule.next_slot(SEVEN, now);
            now = now.max(slot) + late(i);
            schedule.book(SEVEN, slot, now);
            times.push(now);
        }
        times
    }

    /// Lateness from 0 to `max_ms` that looks random and is the same every run.
    fn jitter(max_ms: u64) -> impl Fn(usize) -> Duration {
        move |i| Duration::from_micros((i as u64 * 7_919_993) % (max_ms * 1000 + 1))
    }

    #[test]
    fn however_late_the_wake_ups_no_window_holds_more_than_n_calls() {
        for max_ms in [0, 3, 30, 200] {
            let times = book_late(2000, jitter(max_ms));
            for (i, pair) in times.windows(8).enumerate() {
                // Only the timer's own millisecond is taken from the margin.
                assert!(
                    pair[7] - pair[0] >= SEVEN.window - TIMER_GRANULARITY,
                    "calls {i} and {} {:?} apart with wake-ups up to {max_ms} ms late",
                    i + 7,
                    pair[7] - pair[0]
                );
            }
        }
    }

    #[test]
    fn late_wake_ups_cost_their_own_lateness_not_the_margin_or_a_spacing() {
        // Wake-ups up to 10 ms late (5 ms on average): the chains of calls a window
        // apart stretch by about that, 0.5 % of the rate; restarting the cadence from
        // each late call (as before) lost 5 ms per call, 3.4 %.
        let times = book_late(2001, jitter(10));
        let span = (times[2000] - times[0]).as_secs_f64();
        let used = 2000.0 / 7.0 / span;
        assert!(used >= 0.97, "{:.1} % of the rate", used * 100.0);
    }

    #[test]
    fn a_late_call_is_made_up_by_the_next_without_a_group() {
        let spacing = SEVEN.spacing();
        let mut schedule = Schedule::default();
        let start = Instant::now();
        schedule.book(SEVEN, start, start);
        let due = schedule.next_slot(SEVEN, start);
        assert_eq!(due, start + spacing);
        // The second call's wake-up is 30 ms late: the third is still due on the cadence.
        schedule.book(SEVEN, due, due + Duration::from_millis(30));
        assert_eq!(schedule.next_slot(SEVEN, due), start + spacing * 2);
        // 100 ms late: the third waits half a spacing after it, not less.
        let mut schedule = Schedule::default();
        schedule.book(SEVEN, start, start);
        let late = due + Duration::from_millis(100);
        schedule.book(SEVEN, due, late);
        assert_eq!(schedule.next_slot(SEVEN, due), late + spacing / 2);
        // After a quiet spell the next call goes at once and starts a new cadence.
        let quiet = start + Duration::from_secs(5);
        let slot = schedule.next_slot(SEVEN, quiet);
        assert!(slot < quiet);
        schedule.book(SEVEN, slot, quiet);
        assert_eq!(schedule.next_slot(SEVEN, quiet), quiet + spacing);
    }

    #[tokio::test(start_paused = true)]
    async fn each_429_widens_the_margin_up_to_a_bound() {
        let limiter = Arc::new(RateLimiter::per_second(7));
        for _ in 0..10 {
            limiter.pause_for(Duration::ZERO);
        }
        let times = booked(&limiter, 71).await;
        let span = times[70] - times[0];
        // Ten windows of a second and the widest margin.
        assert!(span >= Duration::from_secs(10) + MAX_JITTER_MARGIN * 10);
        assert!(
            span <= Duration::from_secs(10) + MAX_JITTER_MARGIN * 10 + Duration::from_millis(50)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_widened_margin_halves_after_each_minute_without_a_429() {
        let limiter = Arc::new(RateLimiter::per_second(7));
        limiter.pause_for(Duration::ZERO);
        limiter.pause_for(Duration::ZERO);
        let widened = |limiter: &RateLimiter| {
            limiter
                .widened
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .at(Instant::now())
        };
        assert_eq!(widened(&limiter), JITTER_MARGIN * 2);
        tokio::time::advance(WIDENING_HALF_LIFE).await;
        assert_eq!(widened(&limiter), JITTER_MARGIN);
        tokio::time::advance(WIDENING_HALF_LIFE * 2).await;
        assert_eq!(widened(&limiter), JITTER_MARGIN / 4);
        // A 429 now doubles what is left, not what there was.
        limiter.pause_for(Duration::ZERO);
        assert_eq!(widened(&limiter), JITTER_MARGIN);
        // Seven calls after a 71-call run: windows back to a second and the margin.
        tokio::time::advance(WIDENING_HALF_LIFE * 10).await;
        let times = booked(&limiter, 15).await;
        assert!(
            times[14] - times[0]
                < Duration::from_secs(2) + JITTER_MARGIN * 2 + Duration::from_millis(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shares_of_the_limit_add_up_to_no_more_than_the_total() {
        for (instances, calls, min_secs) in [(2u32, 9usize, 2u64), (8, 3, 4)] {
            let limiter = RateLimiter::per_second(7);
            limiter.share(7, instances);
            let started = Instant::now();
            for _ in 0..calls {
                limiter.acquire().await;
            }
            // 2 instances: 3 per second each, so 9 calls take 2 s; 8 instances: one call
            // per 2 s each, so 3 calls take 4 s.
            assert!(
                Instant::now() - started >= Duration::from_secs(min_secs),
                "{instances} instances"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everyone_back_and_zero_means_unlimited() {
        let limiter = RateLimiter::per_second(7);
        limiter.pause_for(Duration::from_secs(3));
        let started = Instant::now();
        limiter.acquire().await;
        assert!(Instant::now() - started >= Duration::from_secs(3));

        let unlimited = RateLimiter::per_second(0);
        let started = Instant::now();
        for _ in 0..100 {
            unlimited.acquire().await;
        }
        assert_eq!(Instant::now(), started);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_call_goes_before_every_caller_already_waiting() {
        let limiter = Arc::new(RateLimiter::per_second(2));
        let started = Instant::now();
        // Ten callers: two windows' worth booked at once, the rest queued for four more.
        let queued: Vec<_> = (0..10)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move { limiter.acquire().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        limiter.acquire_first().await;
        // The next free slot, one window after the first two calls.
        assert!(Instant::now() - started <= Duration::from_millis(1200));
        for caller in queued {
            caller.await.expect("queued caller");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn congestion_means_more_callers_waiting_than_one_window_serves() {
        let limiter = Arc::new(RateLimiter::per_second(2));
        assert!(!limiter.is_congested());
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move { limiter.acquire().await })
            })
            .collect();
        tokio::task::yield_now().await;
        // One got its slot at once; three wait for theirs: more than a window serves.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(limiter.is_congested());
        for waiter in waiters {
            waiter.await.expect("waiter");
        }
        assert!(!limiter.is_congested());

        limiter.pause_for(Duration::from_secs(5));
        assert!(limiter.is_congested(), "a 429 pause is congestion too");
    }
}
