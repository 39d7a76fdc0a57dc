//! Retry with exponential backoff and jitter: the runtime behind
//! [`#[retry]`](macro@crate::retry).
//!
//! A [`RetryPolicy`] is a plain value, built in `const` context, so it can
//! live in a `static`. One call of a retried function walks it with a
//! [`Retrying`] state:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! use std::time::Duration;
//! use limit_runtime::retry::{self, RetryPolicy, Step};
//!
//! static POLICY: RetryPolicy = RetryPolicy::new()
//!     .attempts(4)
//!     .initial(Duration::from_millis(200));
//!
//! let mut calls = 0;
//! let mut state = POLICY.begin();
//! let out: Result<u32, String> = loop {
//!     calls += 1;
//!     let outcome = if calls < 3 { Err("busy".to_string()) } else { Ok(7) };
//!     match state.check(outcome, retry::any_error, retry::no_hint, retry::no_hook) {
//!         Step::Done(out) => break out,
//!         Step::Retry(delay) => retry::sleep(delay).await,
//!     }
//! };
//! assert_eq!(out, Ok(7));
//! assert_eq!(calls, 3);
//! # }
//! ```
//!
//! Or, for a closure that makes a fresh future per attempt,
//! [`RetryPolicy::run`].
//!
//! Nothing on the success path allocates, reads the clock (unless
//! `max_elapsed` is set, which needs the start time) or draws a random
//! number.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::shard::Sharded;

/// Sleeps `delay` before the next attempt: tokio's [`sleep`](tokio::time::sleep),
/// kept out of the way of calls that never sleep.
///
/// The timer is boxed, so it does not add to the size of every call's
/// future, and it is dropped out of line, so that the drop of a call that
/// ended without sleeping stays a test of its state that the compiler can
/// inline and fold away.
pub fn sleep(delay: Duration) -> Sleep {
    Sleep(Some(Box::pin(tokio::time::sleep(delay))))
}

/// The future of [`sleep`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Sleep(Option<Pin<Box<tokio::time::Sleep>>>);

impl Future for Sleep {
    type Output = ();

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self.0.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => std::task::Poll::Ready(()),
        }
    }
}

impl Drop for Sleep {
    #[inline(never)]
    fn drop(&mut self) {
        self.0 = None;
    }
}

/// How the delay before a retry is randomised around the base delay.
///
/// Random delays are drawn in whole milliseconds whenever their range holds
/// one (tokio's timer sleeps in whole milliseconds), so the delay
/// `on_retry` is given is the delay slept, also under a paused clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Jitter {
    /// The base delay, exactly.
    None,
    /// Uniform in `[0, base]` (the default).
    #[default]
    Full,
    /// `base / 2` plus uniform in `[0, base / 2]`.
    Equal,
    /// Uniform in `[initial, 3 × previous delay]`, capped at `max_delay`.
    Decorrelated,
}

/// A retry schedule: how many attempts, and how long to wait between them.
///
/// The base delay before retry `n` (1-based) is
/// `min(max_delay, initial × multiplier^(n−1))`, then [`Jitter`] applies.
/// The arithmetic saturates: no option values overflow or panic.
///
/// ```
/// use std::time::Duration;
/// use limit_runtime::retry::{Jitter, RetryPolicy};
///
/// let p = RetryPolicy::new()
///     .attempts(5)
///     .initial(Duration::from_millis(100))
///     .multiplier(3.0)
///     .max_delay(Duration::from_secs(1))
///     .jitter(Jitter::None);
/// let delays: Vec<_> = p.delays().collect();
/// assert_eq!(
///     delays,
///     [100, 300, 900, 1000].map(Duration::from_millis),
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    attempts: u32,
    initial: Duration,
    multiplier: f64,
    max_delay: Duration,
    jitter: Jitter,
    max_elapsed: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new()
    }
}

impl RetryPolicy {
    /// The defaults of `#[retry]`: 3 attempts, 100 ms initial delay,
    /// multiplier 2, at most 10 s between attempts, full jitter, no overall
    /// deadline.
    pub const fn new() -> Self {
        RetryPolicy {
            attempts: 3,
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            jitter: Jitter::Full,
            max_elapsed: None,
        }
    }

    /// Total calls of the body, the first included.
    ///
    /// # Panics
    ///
    /// If `attempts` is 0 (at compile time when built in a `static`).
    pub const fn attempts(mut self, attempts: u32) -> Self {
        assert!(attempts >= 1, "`attempts` must be at least 1");
        self.attempts = attempts;
        self
    }

    /// Base delay before the first retry.
    pub const fn initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// Growth of the base delay per retry. Values below 1, and NaN, count
    /// as 1 (a constant delay).
    pub const fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier >= 1.0 { multiplier } else { 1.0 };
        self
    }

    /// Cap on any single delay of the schedule.
    pub const fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// How delays are randomised.
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// No attempt starts after this much time since the first began, and a
    /// delay that would end past that deadline is not slept.
    pub const fn max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.max_elapsed = Some(max_elapsed);
        self
    }

    /// The configured number of attempts.
    pub const fn max_attempts(&self) -> u32 {
        self.attempts
    }

    /// The base delay before retry `n` (1-based), before jitter.
    pub fn base_delay(&self, n: u32) -> Duration {
        let exp = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        if secs.is_finite() && secs < self.max_delay.as_secs_f64() {
            Duration::try_from_secs_f64(secs)
                .unwrap_or(self.max_delay)
                .min(self.max_delay)
        } else {
            self.max_delay
        }
    }

    /// The delays this policy would sleep if every attempt failed, jitter
    /// included (one value per retry, `attempts − 1` in all).
    pub fn delays(&self) -> Delays {
        Delays {
            policy: *self,
            schedule: Builtin::default(),
            retry: 0,
            retries: self.attempts.saturating_sub(1),
        }
    }

    /// Starts one call's walk through the schedule.
    #[inline]
    pub fn begin(&self) -> Retrying<'_, Builtin> {
        self.begin_with(Builtin::default())
    }

    /// Starts one call's walk with a schedule of its own (see
    /// [`Schedule`]); the attempt limit and `max_elapsed` still apply.
    #[inline]
    pub fn begin_with<S: Schedule>(&self, schedule: S) -> Retrying<'_, S> {
        Retrying {
            policy: self,
            function: None,
            started: self.start_time(),
            walk: Walk::new(schedule),
        }
    }

    /// The start of a call, when `max_elapsed` needs it.
    #[inline]
    fn start_time(&self) -> Option<Instant> {
        self.max_elapsed.map(|_| Instant::now())
    }

    /// Calls `make` and awaits its future until it succeeds, the attempts
    /// are spent or `max_elapsed` has passed; every error is retried.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use limit_runtime::retry::RetryPolicy;
    ///
    /// let mut tries = 0;
    /// let out: Result<&str, &str> = RetryPolicy::new()
    ///     .run(|| {
    ///         tries += 1;
    ///         let n = tries;
    ///         async move { if n < 2 { Err("flaky") } else { Ok("ok") } }
    ///     })
    ///     .await;
    /// assert_eq!(out, Ok("ok"));
    /// # }
    /// ```
    pub async fn run<F, Fut, T, E>(&self, mut make: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut state = self.begin();
        loop {
            let outcome = make().await;
            match state.check(outcome, any_error, no_hint, no_hook) {
                Step::Done(out) => return out,
                Step::Retry(delay) => sleep(delay).await,
            }
        }
    }
}

/// The delays of a [`RetryPolicy`], from [`RetryPolicy::delays`].
#[derive(Debug)]
pub struct Delays {
    policy: RetryPolicy,
    schedule: Builtin,
    retry: u32,
    retries: u32,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.retry >= self.retries {
            return None;
        }
        self.retry += 1;
        self.schedule.next_delay(&self.policy, self.retry)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.retries - self.retry) as usize;
        (n, Some(n))
    }
}

/// A source of delays between attempts.
pub trait Schedule {
    /// The delay before retry `n` (1-based), or `None` to stop retrying.
    /// `policy` is the policy of the call, for schedules that use it.
    fn next_delay(&mut self, policy: &RetryPolicy, n: u32) -> Option<Duration>;
}

/// The schedule a [`RetryPolicy`] describes (its state: the previous
/// delay, for decorrelated jitter).
#[derive(Debug, Default)]
pub struct Builtin {
    previous: Option<Duration>,
}

/// A delay drawn uniformly in `[lo, hi]`: in whole milliseconds when the
/// range holds one, since tokio's timer sleeps in whole milliseconds (a
/// drawn 1.3243 s would be slept as 1.325 s, and the delay `on_retry` was
/// told would not be the one slept, even under a paused clock).
fn uniform(lo: Duration, hi: Duration) -> Duration {
    const MS: u64 = 1_000_000;
    let lo_ns = u64::try_from(lo.as_nanos()).unwrap_or(u64::MAX);
    let hi_ns = u64::try_from(hi.as_nanos()).unwrap_or(u64::MAX);
    if hi_ns <= lo_ns {
        return lo;
    }
    let (lo_ms, hi_ms) = (lo_ns.div_ceil(MS), hi_ns / MS);
    if lo_ms <= hi_ms {
        return Duration::from_millis(fastrand::u64(lo_ms..=hi_ms));
    }
    Duration::from_nanos(fastrand::u64(lo_ns..=hi_ns))
}

impl Schedule for Builtin {
    fn next_delay(&mut self, p: &RetryPolicy, n: u32) -> Option<Duration> {
        let base = p.base_delay(n);
        let delay = match p.jitter {
            Jitter::None => base,
            Jitter::Full => uniform(Duration::ZERO, base),
            Jitter::Equal => uniform(base / 2, base),
            Jitter::Decorrelated => {
                let lo = p.initial.min(p.max_delay);
                let previous = self.previous.unwrap_or(p.initial);
                let hi = previous.saturating_mul(3).min(p.max_delay).max(lo);
                uniform(lo, hi)
            }
        };
        self.previous = Some(delay);
        Some(delay)
    }
}

/// One call's progress through a policy: counts attempts and decides, after
/// each outcome, whether to stop or how long to sleep.
#[derive(Debug)]
pub struct Retrying<'a, S> {
    policy: &'a RetryPolicy,
    /// The function's static, whose counters this call updates.
    function: Option<&'static StaticRetry>,
    started: Option<Instant>,
    walk: Walk<S>,
}

/// What to do after an attempt, from [`Retrying::check`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step<R> {
    /// Return this outcome to the caller.
    Done(R),
    /// Sleep this long, then attempt again.
    Retry(Duration),
}

impl<S: Schedule> Retrying<'_, S> {
    /// Failed attempts checked so far. A success is not counted here: it
    /// ends the call, and leaving this alone keeps the success path free of
    /// writes.
    pub fn failures(&self) -> u32 {
        self.walk.failures
    }

    /// Takes the outcome of an attempt.
    ///
    /// * `when(&err)` returning `false` ends the call with that error.
    /// * `delay_hint(&err)` returning `Some(d)` replaces the scheduled delay.
    /// * `on_retry(&err, attempt, delay)` is called before a retry's sleep,
    ///   with the 1-based number of the attempt that just failed.
    #[inline]
    pub fn check<R, W, H, O>(&mut self, outcome: R, when: W, delay_hint: H, on_retry: O) -> Step<R>
    where
        R: RetryResult,
        W: FnOnce(&R::Err) -> bool,
        H: FnOnce(&R::Err) -> Option<Duration>,
        O: FnOnce(&R::Err, u32, Duration),
    {
        if outcome.error().is_none() {
            return Step::Done(outcome);
        }
        let call = Call {
            policy: self.policy,
            function: self.function,
            started: self.started,
        };
        self.walk.failed(call, outcome, when, delay_hint, on_retry)
    }
}

/// The start of one call of a [`StaticRetry`]'s function, as `#[retry]`
/// expands it: [`Retrying`] without the references (the static supplies
/// them), and with the schedule's state made at the first failure. A call
/// whose first attempt succeeds stores nothing but this in its future.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use limit_runtime::retry::{self, RetryCounters, RetryPolicy, StaticRetry, Step};
///
/// static COUNTERS: RetryCounters = RetryCounters::new();
/// static POLICY: StaticRetry =
///     StaticRetry::new("doc::put", RetryPolicy::new().attempts(3), &COUNTERS);
///
/// let mut call = POLICY.start();
/// let mut tries = 0;
/// let out: Result<u32, &str> = loop {
///     tries += 1;
///     let outcome = if tries < 2 { Err("busy") } else { Ok(tries) };
///     let delay = match POLICY.check(&mut call, outcome, retry::any_error, retry::no_hint, retry::no_hook) {
///         Step::Done(out) => break out,
///         Step::Retry(delay) => delay,
///     };
///     retry::sleep(delay).await;
/// };
/// assert_eq!(out, Ok(2));
/// assert_eq!(call.failures(), 1);
/// # }
/// ```
#[derive(Debug)]
pub struct Attempts<S = Builtin>(Stage<S>);

/// Where an [`Attempts`] stands. Before the first failure it is one tag
/// (and the start time only when `max_elapsed` needs it), so that starting
/// a call stores a single word in its future.
#[derive(Debug)]
enum Stage<S> {
    First,
    FirstTimed(Instant),
    Failing(Option<Instant>, Walk<S>),
}

impl<S: Schedule> Attempts<S> {
    /// The start time and the walk, made at the first failure.
    fn failing(&mut self, schedule: impl FnOnce() -> S) -> (Option<Instant>, &mut Walk<S>) {
        let started = match self.0 {
            Stage::First => None,
            Stage::FirstTimed(started) => Some(started),
            Stage::Failing(..) => return self.walk(),
        };
        self.0 = Stage::Failing(started, Walk::new(schedule()));
        self.walk()
    }

    fn walk(&mut self) -> (Option<Instant>, &mut Walk<S>) {
        match &mut self.0 {
            Stage::Failing(started, walk) => (*started, walk),
            // `failing` has just made it.
            Stage::First | Stage::FirstTimed(_) => unreachable!("an attempt failed"),
        }
    }
}

impl<S> Attempts<S> {
    /// Failed attempts checked so far.
    pub fn failures(&self) -> u32 {
        match &self.0 {
            Stage::Failing(_, walk) => walk.failures,
            Stage::First | Stage::FirstTimed(_) => 0,
        }
    }
}

/// What judging a failed attempt needs from the call.
#[derive(Clone, Copy)]
struct Call<'a> {
    policy: &'a RetryPolicy,
    function: Option<&'static StaticRetry>,
    started: Option<Instant>,
}

impl Call<'_> {
    #[inline]
    fn count(self, which: impl FnOnce(&RetryCounters) -> &AtomicU64) {
        if let Some(f) = self.function {
            which(f.counters).fetch_add(1, Ordering::Relaxed);
        }
    }

    #[cfg(feature = "tracing")]
    fn name(self) -> &'static str {
        self.function.map_or("", |f| f.name)
    }

    fn give_up<R>(self, outcome: R, attempts: u32) -> Step<R> {
        self.count(|c| &c.gave_up);
        #[cfg(feature = "tracing")]
        tracing::warn!(
            target: "limit_runtime::retry",
            function = self.name(),
            attempts,
            "giving up"
        );
        #[cfg(not(feature = "tracing"))]
        let _ = attempts;
        Step::Done(outcome)
    }
}

/// The part of a call's progress that only failures touch: how many there
/// were, and the schedule's state.
#[derive(Debug)]
struct Walk<S> {
    schedule: S,
    failures: u32,
}

impl<S: Schedule> Walk<S> {
    fn new(schedule: S) -> Self {
        Walk {
            schedule,
            failures: 0,
        }
    }

    /// Judges an outcome that is an error: out of the success path's way.
    #[inline(never)]
    fn failed<R, W, H, O>(
        &mut self,
        call: Call<'_>,
        outcome: R,
        when: W,
        delay_hint: H,
        on_retry: O,
    ) -> Step<R>
    where
        R: RetryResult,
        W: FnOnce(&R::Err) -> bool,
        H: FnOnce(&R::Err) -> Option<Duration>,
        O: FnOnce(&R::Err, u32, Duration),
    {
        let Some(err) = outcome.error() else {
            return Step::Done(outcome);
        };
        // The 1-based number of this attempt.
        self.failures = self.failures.saturating_add(1);
        let attempt = self.failures;
        if !when(err) {
            call.count(|c| &c.not_retryable);
            return Step::Done(outcome);
        }
        if attempt >= call.policy.attempts {
            return call.give_up(outcome, attempt);
        }
        let scheduled = self.schedule.next_delay(call.policy, attempt);
        let delay = match delay_hint(err) {
            Some(hinted) => hinted,
            None => match scheduled {
                Some(d) => d,
                None => return call.give_up(outcome, attempt),
            },
        };
        if let (Some(limit), Some(started)) = (call.policy.max_elapsed, call.started) {
            let ends = started.elapsed().saturating_add(delay);
            if ends > limit {
                return call.give_up(outcome, attempt);
            }
        }
        call.count(|c| &c.retries);
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "limit_runtime::retry",
            function = call.name(),
            attempt,
            delay_ms = delay.as_secs_f64() * 1e3,
            "attempt failed; retrying"
        );
        on_retry(err, attempt, delay);
        Step::Retry(delay)
    }
}

/// The counters of one [`StaticRetry`], in a `static` of their own: see
/// [`StaticRetry::new`].
#[derive(Debug)]
pub struct RetryCounters {
    /// Calls started: the one counter every call bumps, so it is sharded
    /// per thread (see [`Sharded`]).
    calls: Sharded<1>,
    retries: AtomicU64,
    gave_up: AtomicU64,
    not_retryable: AtomicU64,
    /// Its function is listed in [`USED`] (on the first call).
    listed: AtomicBool,
}

impl RetryCounters {
    /// Zeroed counters.
    pub const fn new() -> Self {
        RetryCounters {
            calls: Sharded::new(),
            retries: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            not_retryable: AtomicU64::new(0),
            listed: AtomicBool::new(false),
        }
    }
}

impl Default for RetryCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// A [`RetryPolicy`] declared in a `static`, with counters for the
/// function that uses it: what `#[retry]` expands to.
///
/// The counters are a `static` of their own, so that this one holds no
/// mutable state: the compiler then reads the policy as the constant it
/// is, and a call does not test at run time what the policy leaves out.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use limit_runtime::retry::{self, RetryCounters, RetryPolicy, StaticRetry, Step};
///
/// static COUNTERS: RetryCounters = RetryCounters::new();
/// static POLICY: StaticRetry =
///     StaticRetry::new("doc::fetch", RetryPolicy::new().attempts(2), &COUNTERS);
///
/// let mut state = POLICY.begin();
/// let mut outcome: Result<(), &str> = Err("first");
/// while let Step::Retry(delay) = state.check(outcome, retry::any_error, retry::no_hint, retry::no_hook) {
///     retry::sleep(delay).await;
///     outcome = Ok(());
/// }
/// let s = POLICY.stats();
/// assert_eq!((s.calls, s.attempts, s.retries, s.gave_up), (1, 2, 1, 0));
/// # }
/// ```
#[derive(Debug)]
pub struct StaticRetry {
    name: &'static str,
    policy: RetryPolicy,
    counters: &'static RetryCounters,
}

/// Every `StaticRetry` used so far, for [`stats`].
static USED: Mutex<Vec<&'static StaticRetry>> = Mutex::new(Vec::new());

/// Counters of one `#[retry]` function, from [`stats`] or
/// [`StaticRetry::stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
    /// The function's path (`module::path::function`).
    pub name: String,
    /// Calls started.
    pub calls: u64,
    /// Attempts made: first attempts plus retries.
    pub attempts: u64,
    /// Retries: attempts after the first.
    pub retries: u64,
    /// Calls that returned an error because attempts, `max_elapsed` or the
    /// schedule ran out.
    pub gave_up: u64,
    /// Calls that returned an error that `when` said not to retry.
    pub not_retryable: u64,
}

impl StaticRetry {
    /// A policy for the function called `name`, counted in `counters`
    /// (which no other `StaticRetry` should share).
    pub const fn new(
        name: &'static str,
        policy: RetryPolicy,
        counters: &'static RetryCounters,
    ) -> Self {
        StaticRetry {
            name,
            policy,
            counters,
        }
    }

    /// The name it was given.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Starts one call (counted) with the policy's own schedule.
    #[inline]
    pub fn begin(&'static self) -> Retrying<'static, Builtin> {
        self.begin_with(Builtin::default())
    }

    /// Starts one call (counted) with another schedule.
    #[inline]
    pub fn begin_with<S: Schedule>(&'static self, schedule: S) -> Retrying<'static, S> {
        self.count_call();
        let mut state = self.policy.begin_with(schedule);
        state.function = Some(self);
        state
    }

    /// Starts one call (counted) as `#[retry]` does: see [`Attempts`], and
    /// [`check`](Self::check) for each outcome.
    #[inline]
    pub fn start<S>(&'static self) -> Attempts<S> {
        self.count_call();
        Attempts(match self.policy.start_time() {
            Some(started) => Stage::FirstTimed(started),
            None => Stage::First,
        })
    }

    /// [`Retrying::check`] for a call begun with [`start`](Self::start),
    /// with the policy's own schedule.
    #[inline]
    pub fn check<R, W, H, O>(
        &'static self,
        call: &mut Attempts<Builtin>,
        outcome: R,
        when: W,
        delay_hint: H,
        on_retry: O,
    ) -> Step<R>
    where
        R: RetryResult,
        W: FnOnce(&R::Err) -> bool,
        H: FnOnce(&R::Err) -> Option<Duration>,
        O: FnOnce(&R::Err, u32, Duration),
    {
        self.check_with(call, Builtin::default, outcome, when, delay_hint, on_retry)
    }

    /// [`check`](Self::check) with another schedule, which `schedule`
    /// makes at the call's first failure.
    #[inline]
    pub fn check_with<S, F, R, W, H, O>(
        &'static self,
        call: &mut Attempts<S>,
        schedule: F,
        outcome: R,
        when: W,
        delay_hint: H,
        on_retry: O,
    ) -> Step<R>
    where
        S: Schedule,
        F: FnOnce() -> S,
        R: RetryResult,
        W: FnOnce(&R::Err) -> bool,
        H: FnOnce(&R::Err) -> Option<Duration>,
        O: FnOnce(&R::Err, u32, Duration),
    {
        if outcome.error().is_none() {
            return Step::Done(outcome);
        }
        self.check_failed(call, schedule, outcome, when, delay_hint, on_retry)
    }

    /// [`check_with`](Self::check_with) for a failed attempt: out of line,
    /// so that a success falls straight through to the caller.
    #[cold]
    #[inline(never)]
    fn check_failed<S, F, R, W, H, O>(
        &'static self,
        call: &mut Attempts<S>,
        schedule: F,
        outcome: R,
        when: W,
        delay_hint: H,
        on_retry: O,
    ) -> Step<R>
    where
        S: Schedule,
        F: FnOnce() -> S,
        R: RetryResult,
        W: FnOnce(&R::Err) -> bool,
        H: FnOnce(&R::Err) -> Option<Duration>,
        O: FnOnce(&R::Err, u32, Duration),
    {
        let (started, walk) = call.failing(schedule);
        let judge = Call {
            policy: &self.policy,
            function: Some(self),
            started,
        };
        walk.failed(judge, outcome, when, delay_hint, on_retry)
    }

    /// Counts a call; the first on each thread also lists the function
    /// for [`stats`].
    #[inline]
    fn count_call(&'static self) {
        // The first count in a slot lists the function: every count after
        // it, in any thread that inherits the slot, follows a listing.
        if self.counters.calls.add(0, 1) == 0 {
            self.list();
        }
    }

    /// Lists the function for `stats()`, once.
    #[cold]
    #[inline(never)]
    fn list(&'static self) {
        let listed = &self.counters.listed;
        if listed.load(Ordering::Acquire) {
            return;
        }
        let mut used = USED.lock().unwrap_or_else(PoisonError::into_inner);
        if !listed.load(Ordering::Relaxed) {
            used.push(self);
            listed.store(true, Ordering::Release);
        }
    }

    /// A copy of the counters.
    pub fn stats(&self) -> RetryStats {
        let c = self.counters;
        let calls = c.calls.sum(0);
        let retries = c.retries.load(Ordering::Relaxed);
        RetryStats {
            name: self.name.to_owned(),
            calls,
            attempts: calls + retries,
            retries,
            gave_up: c.gave_up.load(Ordering::Relaxed),
            not_retryable: c.not_retryable.load(Ordering::Relaxed),
        }
    }
}

impl Deref for StaticRetry {
    type Target = RetryPolicy;

    fn deref(&self) -> &RetryPolicy {
        &self.policy
    }
}

/// The counters of every [`StaticRetry`] (every `#[retry]` function) used
/// so far in the process, sorted by name.
pub fn stats() -> Vec<RetryStats> {
    let used: Vec<&'static StaticRetry> =
        USED.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut all: Vec<RetryStats> = used.iter().map(|r| r.stats()).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// The outcome of a retried function: a `Result`.
#[diagnostic::on_unimplemented(
    message = "#[retry] needs a function returning `Result<T, E>`, not `{Self}`",
    label = "this is not a `Result`",
    note = "return a `Result` (aliases such as `io::Result<T>` work too), or remove #[retry]"
)]
pub trait RetryResult {
    /// The error type.
    type Err;
    /// The error, if this outcome is one.
    fn error(&self) -> Option<&Self::Err>;
}

impl<T, E> RetryResult for Result<T, E> {
    type Err = E;

    #[inline]
    fn error(&self) -> Option<&E> {
        self.as_ref().err()
    }
}

/// The default `when`: every error is retried.
#[inline]
pub fn any_error<E: ?Sized>(_: &E) -> bool {
    true
}

/// The default `delay_hint`: errors carry no delay of their own.
#[inline]
pub fn no_hint<E: ?Sized>(_: &E) -> Option<Duration> {
    None
}

/// The default `on_retry`: nothing.
#[inline]
pub fn no_hook<E: ?Sized>(_: &E, _attempt: u32, _delay: Duration) {}

/// A [`Schedule`] backed by any `backoff::backoff::Backoff` (cargo feature
/// `backoff`): its `next_backoff()` gives each delay, and `None` stops.
#[cfg(feature = "backoff")]
#[derive(Debug)]
pub struct BackoffSchedule<B>(pub B);

#[cfg(feature = "backoff")]
impl<B: backoff::backoff::Backoff> Schedule for BackoffSchedule<B> {
    fn next_delay(&mut self, _policy: &RetryPolicy, _n: u32) -> Option<Duration> {
        self.0.next_backoff()
    }
}

/// Wraps a `backoff` policy for [`RetryPolicy::begin_with`]; resets it
/// first, so a policy value can be reused.
#[cfg(feature = "backoff")]
pub fn backoff_policy<B: backoff::backoff::Backoff>(mut policy: B) -> BackoffSchedule<B> {
    policy.reset();
    BackoffSchedule(policy)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::shard::SLOTS;

    use super::{
        any_error, no_hint, no_hook, stats, RetryCounters, RetryPolicy, StaticRetry, Step,
    };

    fn one_call(r: &'static StaticRetry) {
        let mut state = r.begin();
        let done = state.check(Ok::<(), ()>(()), any_error, no_hint, no_hook);
        assert_eq!(done, Step::Done(Ok(())));
    }

    #[test]
    fn calls_are_exact_with_more_threads_than_slots_and_slots_passed_on() {
        static C: RetryCounters = RetryCounters::new();
        static R: StaticRetry = StaticRetry::new("tests::calls", RetryPolicy::new(), &C);
        const CALLS: u64 = 1_000;
        // More threads at once than there are slots: some count shared.
        let threads = 2 * SLOTS as u64 + 3;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| (0..CALLS).for_each(|_| one_call(&R)));
            }
        });
        // Threads one after another: each takes over a returned slot.
        for _ in 0..SLOTS + 2 {
            std::thread::spawn(|| (0..CALLS).for_each(|_| one_call(&R)))
                .join()
                .unwrap();
        }
        let expected = (threads + SLOTS as u64 + 2) * CALLS;
        let s = R.stats();
        assert_eq!((s.calls, s.attempts, s.retries), (expected, expected, 0));
    }

    /// `start`/`check`, what `#[retry]` expands to: the schedule is made at
    /// the first failure, failures are numbered from 1, and every counter
    /// agrees with what happened.
    #[tokio::test(start_paused = true)]
    async fn start_and_check_count_and_give_up() {
        static C: RetryCounters = RetryCounters::new();
        static R: StaticRetry = StaticRetry::new(
            "tests::start_and_check",
            RetryPolicy::new()
                .attempts(3)
                .initial(Duration::from_millis(10))
                .jitter(super::Jitter::None),
            &C,
        );
        let mut seen = Vec::new();
        let mut call = R.start();
        assert_eq!(call.failures(), 0);
        let out: Result<(), &str> = loop {
            let hook = |_: &&str, attempt: u32, delay: Duration| seen.push((attempt, delay));
            match R.check(&mut call, Err("down"), any_error, no_hint, hook) {
                Step::Done(out) => break out,
                Step::Retry(delay) => super::sleep(delay).await,
            }
        };
        assert_eq!(out, Err("down"));
        assert_eq!(call.failures(), 3);
        assert_eq!(
            seen,
            [
                (1, Duration::from_millis(10)),
                (2, Duration::from_millis(20))
            ]
        );
        let s = R.stats();
        assert_eq!((s.calls, s.attempts, s.retries, s.gave_up), (1, 3, 2, 1));

        // A success ends the call at once and writes nothing.
        let mut call = R.start();
        assert_eq!(
            R.check(&mut call, Ok::<u8, &str>(1), any_error, no_hint, no_hook),
            Step::Done(Ok(1))
        );
        assert_eq!(call.failures(), 0);
        assert_eq!(R.stats().calls, 2);
    }

    /// `max_elapsed` counts from `start`, not from the first failure.
    #[tokio::test(start_paused = true)]
    async fn max_elapsed_counts_from_the_start_of_the_call() {
        static C: RetryCounters = RetryCounters::new();
        static R: StaticRetry = StaticRetry::new(
            "tests::max_elapsed",
            RetryPolicy::new()
                .attempts(10)
                .initial(Duration::from_millis(100))
                .jitter(super::Jitter::None)
                .max_elapsed(Duration::from_millis(250)),
            &C,
        );
        let mut call = R.start();
        // The first attempt takes 200 ms: a retry after 100 ms would end
        // at 300 ms, past the 250 ms allowed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let step = R.check(&mut call, Err::<(), _>("slow"), any_error, no_hint, no_hook);
        assert_eq!(step, Step::Done(Err("slow")));
        assert_eq!(R.stats().gave_up, 1);
    }

    /// A function is listed for `stats()` by its first call, on whichever
    /// thread, even one that takes over a slot another thread used.
    #[test]
    fn first_calls_on_any_thread_list_the_function() {
        static C1: RetryCounters = RetryCounters::new();
        static R1: StaticRetry = StaticRetry::new("tests::listed_one", RetryPolicy::new(), &C1);
        static C2: RetryCounters = RetryCounters::new();
        static R2: StaticRetry = StaticRetry::new("tests::listed_two", RetryPolicy::new(), &C2);
        std::thread::spawn(|| one_call(&R1)).join().unwrap();
        // Likely the same slot, handed on: R2's count there starts at 0.
        std::thread::spawn(|| one_call(&R2)).join().unwrap();
        let names: Vec<String> = stats().into_iter().map(|s| s.name).collect();
        assert!(names.iter().any(|n| n == "tests::listed_one"), "{names:?}");
        assert!(names.iter().any(|n| n == "tests::listed_two"), "{names:?}");
        assert_eq!(R1.stats().calls + R2.stats().calls, 2);
    }
}
