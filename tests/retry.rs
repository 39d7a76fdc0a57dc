//! Behaviour of `#[retry]`, under tokio's paused clock: delays are exact and
//! the tests take no real time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use limit_runtime::retry::{Jitter, RetryPolicy};
use limit_runtime::{limited, retry};
use tokio::time::Instant;

#[derive(Clone, Debug, PartialEq)]
enum ApiError {
    Transient,
    Fatal,
    Busy(Duration),
}

impl ApiError {
    fn is_transient(&self) -> bool {
        !matches!(self, ApiError::Fatal)
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Busy(d) => Some(*d),
            _ => None,
        }
    }
}

/// A body that fails `fails` times with `err`, then succeeds; it records
/// the paused-clock instant of each attempt.
#[derive(Default)]
struct Script {
    calls: AtomicU32,
    at: Mutex<Vec<Instant>>,
}

impl Script {
    fn attempt(&self, fails: u32, err: ApiError) -> Result<u32, ApiError> {
        self.at.lock().unwrap().push(Instant::now());
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= fails {
            Err(err)
        } else {
            Ok(n)
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Gaps between consecutive attempts.
    fn gaps(&self) -> Vec<Duration> {
        let at = self.at.lock().unwrap();
        at.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

#[retry]
async fn defaults(s: &Script, fails: u32) -> Result<u32, ApiError> {
    s.attempt(fails, ApiError::Transient)
}

#[tokio::test(start_paused = true)]
async fn default_is_three_attempts_with_full_jitter_below_the_base() {
    let s = Script::default();
    assert_eq!(defaults(&s, 2).await, Ok(3));
    assert_eq!(s.calls(), 3);
    let gaps = s.gaps();
    assert!(gaps[0] <= Duration::from_millis(100), "{gaps:?}");
    assert!(gaps[1] <= Duration::from_millis(200), "{gaps:?}");

    let s = Script::default();
    assert_eq!(defaults(&s, 10).await, Err(ApiError::Transient));
    assert_eq!(s.calls(), 3, "gives up after 3 attempts");
}

#[retry(
    attempts = 5,
    initial = "200ms",
    multiplier = 3,
    max_delay = "1s",
    jitter = "none"
)]
async fn exact(s: &Script, fails: u32) -> Result<u32, ApiError> {
    s.attempt(fails, ApiError::Transient)
}

#[tokio::test(start_paused = true)]
async fn jitter_none_sleeps_the_exact_capped_schedule() {
    let s = Script::default();
    let start = Instant::now();
    assert_eq!(exact(&s, 4).await, Ok(5));
    assert_eq!(
        s.gaps(),
        [200, 600, 1000, 1000].map(Duration::from_millis),
        "initial × 3^(n−1), capped at max_delay"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(2800));
}

#[retry(attempts = 6, initial = "100ms", multiplier = 2, jitter = "equal")]
async fn equal(s: &Script) -> Result<u32, ApiError> {
    s.attempt(100, ApiError::Transient)
}

#[retry(attempts = 6, initial = "100ms", multiplier = 2, jitter = "full")]
async fn full(s: &Script) -> Result<u32, ApiError> {
    s.attempt(100, ApiError::Transient)
}

#[retry(
    attempts = 6,
    initial = "100ms",
    max_delay = "1s",
    jitter = "decorrelated"
)]
async fn decorrelated(s: &Script) -> Result<u32, ApiError> {
    s.attempt(100, ApiError::Transient)
}

#[tokio::test(start_paused = true)]
async fn every_jitter_kind_stays_within_its_bounds_for_every_retry() {
    for _ in 0..50 {
        let s = Script::default();
        let _ = equal(&s).await;
        for (i, gap) in s.gaps().into_iter().enumerate() {
            let base = Duration::from_millis(100 * (1 << i));
            assert!(
                gap >= base / 2 && gap <= base,
                "equal, retry {}: {gap:?}",
                i + 1
            );
        }
        let s = Script::default();
        let _ = full(&s).await;
        for (i, gap) in s.gaps().into_iter().enumerate() {
            let base = Duration::from_millis(100 * (1 << i));
            assert!(gap <= base, "full, retry {}: {gap:?}", i + 1);
        }
        let s = Script::default();
        let _ = decorrelated(&s).await;
        let mut previous = Duration::from_millis(100);
        for (i, gap) in s.gaps().into_iter().enumerate() {
            let hi = (previous * 3).min(Duration::from_secs(1));
            assert!(
                gap >= Duration::from_millis(100) && gap <= hi,
                "decorrelated, retry {}: {gap:?} not in [100ms, {hi:?}]",
                i + 1
            );
            previous = gap;
        }
    }
}

#[retry(attempts = 5, initial = "10ms", when = ApiError::is_transient)]
async fn only_transient(s: &Script, err: ApiError) -> Result<u32, ApiError> {
    s.attempt(100, err)
}

#[retry(attempts = 5, initial = "10ms", when = |e: &ApiError| matches!(e, ApiError::Transient))]
async fn closure_when(s: &Script, err: ApiError) -> Result<u32, ApiError> {
    s.attempt(100, err)
}

#[tokio::test(start_paused = true)]
async fn when_false_returns_the_error_at_once() {
    let s = Script::default();
    assert_eq!(
        only_transient(&s, ApiError::Fatal).await,
        Err(ApiError::Fatal)
    );
    assert_eq!(s.calls(), 1);
    let s = Script::default();
    assert_eq!(
        only_transient(&s, ApiError::Transient).await,
        Err(ApiError::Transient)
    );
    assert_eq!(s.calls(), 5);
    let s = Script::default();
    assert_eq!(
        closure_when(&s, ApiError::Fatal).await,
        Err(ApiError::Fatal)
    );
    assert_eq!(s.calls(), 1);
}

#[retry(attempts = 3, initial = "10ms", jitter = "none", delay_hint = ApiError::retry_after)]
async fn hinted(s: &Script, err: ApiError) -> Result<u32, ApiError> {
    s.attempt(2, err)
}

#[tokio::test(start_paused = true)]
async fn delay_hint_overrides_the_schedule() {
    let s = Script::default();
    assert_eq!(
        hinted(&s, ApiError::Busy(Duration::from_secs(7))).await,
        Ok(3)
    );
    assert_eq!(s.gaps(), [Duration::from_secs(7); 2]);
    let s = Script::default();
    assert_eq!(hinted(&s, ApiError::Transient).await, Ok(3));
    assert_eq!(s.gaps(), [10, 20].map(Duration::from_millis));
}

#[retry(
    attempts = 100,
    initial = "1s",
    multiplier = 1,
    jitter = "none",
    max_elapsed = "3.5s"
)]
async fn deadline(s: &Script) -> Result<u32, ApiError> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.attempt(1000, ApiError::Transient)
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_stops_further_attempts_and_skips_a_sleep_past_it() {
    let s = Script::default();
    let start = Instant::now();
    assert_eq!(deadline(&s).await, Err(ApiError::Transient));
    // Attempts start at 0, 1.1, 2.2 and 3.3 s (each takes 0.1 s); after the
    // fourth, a 1 s sleep from 3.4 s would end past 3.5 s: no fifth attempt,
    // and the error comes back at once, without that sleep.
    assert_eq!(s.calls(), 4);
    assert_eq!(start.elapsed(), Duration::from_millis(3400));
}

static SEEN: Mutex<Vec<(ApiError, u32, Duration)>> = Mutex::new(Vec::new());

fn log_retry(e: &ApiError, attempt: u32, delay: Duration) {
    SEEN.lock().unwrap().push((e.clone(), attempt, delay));
}

#[retry(attempts = 4, initial = "50ms", jitter = "none", on_retry = log_retry)]
async fn hooked(s: &Script) -> Result<u32, ApiError> {
    s.attempt(10, ApiError::Transient)
}

#[tokio::test(start_paused = true)]
async fn on_retry_receives_error_attempt_and_delay_before_each_sleep() {
    let s = Script::default();
    assert!(hooked(&s).await.is_err());
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (ApiError::Transient, 1, Duration::from_millis(50)),
            (ApiError::Transient, 2, Duration::from_millis(100)),
            (ApiError::Transient, 3, Duration::from_millis(200)),
        ]
    );
}

#[retry(attempts = 3, initial = "1ms")]
async fn mutates_owned(mut buf: Vec<u32>, log: &Mutex<Vec<Vec<u32>>>) -> Result<(), ApiError> {
    buf.push(99);
    log.lock().unwrap().push(buf.clone());
    Err(ApiError::Transient)
}

#[tokio::test(start_paused = true)]
async fn each_attempt_gets_fresh_clones_of_owned_arguments() {
    let log = Mutex::new(Vec::new());
    assert!(mutates_owned(vec![1], &log).await.is_err());
    assert_eq!(*log.lock().unwrap(), vec![vec![1, 99]; 3]);
}

#[retry(attempts = 10, initial = "1s", jitter = "none")]
async fn slow_failure(counter: Arc<AtomicU32>) -> Result<(), ApiError> {
    counter.fetch_add(1, Ordering::SeqCst);
    Err(ApiError::Transient)
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_during_a_sleep_stops_everything() {
    let counter = Arc::new(AtomicU32::new(0));
    let t = tokio::spawn(slow_failure(counter.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(counter.load(Ordering::SeqCst), 2);
    t.abort();
    assert!(t.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        counter.load(Ordering::SeqCst),
        2,
        "no attempt after the drop"
    );
}

#[retry(
    attempts = 4294967295,
    initial = "5124095576030431h",
    multiplier = 1e300,
    max_delay = "5124095576030431h",
    max_elapsed = "1h"
)]
async fn extreme(s: &Script) -> Result<u32, ApiError> {
    s.attempt(u32::MAX, ApiError::Transient)
}

#[tokio::test(start_paused = true)]
async fn extreme_option_values_do_not_panic() {
    let s = Script::default();
    assert!(extreme(&s).await.is_err());
    assert_eq!(
        s.calls(),
        1,
        "the first delay already ends past max_elapsed"
    );
    let p = RetryPolicy::new()
        .attempts(u32::MAX)
        .initial(Duration::MAX)
        .multiplier(f64::INFINITY)
        .max_delay(Duration::MAX)
        .jitter(Jitter::Decorrelated);
    for d in p.delays().take(5) {
        assert!(d <= Duration::MAX);
    }
    assert_eq!(p.base_delay(u32::MAX), Duration::MAX);
    let p = RetryPolicy::new().multiplier(f64::NAN).jitter(Jitter::None);
    assert_eq!(p.base_delay(9), Duration::from_millis(100));
    let p = RetryPolicy::new()
        .initial(Duration::ZERO)
        .jitter(Jitter::Decorrelated);
    assert!(p.delays().all(|d| d == Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn works_with_io_result_aliases() {
    #[retry(attempts = 2, initial = "1ms")]
    async fn io(n: &AtomicU32) -> std::io::Result<u32> {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(std::io::Error::other("flaky"))
        } else {
            Ok(1)
        }
    }
    let n = AtomicU32::new(0);
    assert_eq!(io(&n).await.unwrap(), 1);
}

#[retry(attempts = 3, initial = "1s", jitter = "none")]
#[limited(name = "retry-compose", max = 1)]
async fn limited_retry(s: &Script) -> Result<u32, ApiError> {
    s.attempt(1, ApiError::Transient)
}

#[limited(name = "retry-compose", max = 1)]
#[retry(attempts = 3, initial = "1s", jitter = "none")]
async fn retry_limited(s: &Script) -> Result<u32, ApiError> {
    s.attempt(1, ApiError::Transient)
}

#[tokio::test(start_paused = true)]
async fn a_call_sleeping_between_attempts_holds_no_permit_whatever_the_order() {
    let limiter = || limit_runtime::limiter("retry-compose").unwrap();
    for written_retry_first in [true, false] {
        let a = Arc::new(Script::default());
        let b = Arc::new(Script::default());
        let (a2, b2) = (a.clone(), b.clone());
        let first = tokio::spawn(async move {
            if written_retry_first {
                limited_retry(&a2).await
            } else {
                retry_limited(&a2).await
            }
        });
        // `first` fails its first attempt and sleeps 1 s.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(a.calls(), 1);
        assert_eq!(limiter().active(), 0, "no permit held while sleeping");
        // Another call runs meanwhile, through the same max = 1 limiter.
        let second = tokio::spawn(async move {
            if written_retry_first {
                limited_retry(&b2).await
            } else {
                retry_limited(&b2).await
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(b.calls(), 1, "ran while the first call slept");
        assert_eq!(first.await.unwrap(), Ok(2));
        assert_eq!(second.await.unwrap(), Ok(2));
        assert_eq!(limiter().active(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn policy_run_by_hand() {
    let tries = AtomicU32::new(0);
    let out: Result<u32, &str> = RetryPolicy::new()
        .attempts(4)
        .jitter(Jitter::None)
        .run(|| async {
            let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
            if n < 4 {
                Err("no")
            } else {
                Ok(n)
            }
        })
        .await;
    assert_eq!(out, Ok(4));
}

#[retry(attempts = 2, initial = "1ms")]
async fn opaque_output(n: &AtomicU32) -> Result<impl std::fmt::Display, String> {
    if n.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err("first".to_owned());
    }
    Ok(42)
}

#[tokio::test(start_paused = true)]
async fn impl_trait_in_the_return_type_works() {
    let n = AtomicU32::new(0);
    assert_eq!(opaque_output(&n).await.unwrap().to_string(), "42");
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

static REPORTED: Mutex<Vec<Duration>> = Mutex::new(Vec::new());

fn report(_: &ApiError, _: u32, delay: Duration) {
    REPORTED.lock().unwrap().push(delay);
}

#[retry(attempts = 6, initial = "75ms", multiplier = 3, jitter = "full", on_retry = report)]
async fn reported_full(s: &Script) -> Result<u32, ApiError> {
    s.attempt(100, ApiError::Transient)
}

#[retry(attempts = 6, initial = "75ms", multiplier = 3, jitter = "equal", on_retry = report)]
async fn reported_equal(s: &Script) -> Result<u32, ApiError> {
    s.attempt(100, ApiError::Transient)
}

#[retry(attempts = 6, initial = "75ms", jitter = "decorrelated", on_retry = report)]
async fn reported_decorrelated(s: &Script) -> Result<u32, ApiError> {
    s.attempt(100, ApiError::Transient)
}

/// Random delays are drawn in tokio's timer resolution: what `on_retry`
/// is told is exactly what is slept (a delay drawn in nanoseconds would be
/// slept rounded up to the next millisecond).
#[tokio::test(start_paused = true)]
async fn a_jittered_delay_is_slept_exactly_as_on_retry_reports_it() {
    for round in 0..30 {
        for kind in 0..3 {
            REPORTED.lock().unwrap().clear();
            let s = Script::default();
            let _ = match kind {
                0 => reported_full(&s).await,
                1 => reported_equal(&s).await,
                _ => reported_decorrelated(&s).await,
            };
            let reported = REPORTED.lock().unwrap().clone();
            assert_eq!(reported.len(), 5);
            assert_eq!(s.gaps(), reported, "round {round}, kind {kind}");
        }
    }
}

static LENGTHS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// The attempt changes its copy of the argument: the next one must not
/// see it.
#[retry(attempts = 3, initial = "1ms", jitter = "none")]
async fn destructured(
    (mut items, limit): (Vec<u32>, usize),
    &(x, _): &(u32, u32),
) -> Result<usize, ApiError> {
    items.push(x);
    LENGTHS.lock().unwrap().push(items.len());
    if items.len() > limit {
        Ok(items.len())
    } else {
        Err(ApiError::Transient)
    }
}

#[tokio::test(start_paused = true)]
async fn every_attempt_gets_a_fresh_copy_of_a_destructured_argument() {
    assert_eq!(
        destructured((vec![1], 5), &(7, 8)).await,
        Err(ApiError::Transient)
    );
    assert_eq!(*LENGTHS.lock().unwrap(), [2, 2, 2]);
}
