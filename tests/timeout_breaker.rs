//! `#[timeout]` and `#[circuit_breaker]`, alone and in the pipeline.
//! Paused clock: every time below is exact.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use limit_runtime::{circuit_breaker, limited, retry, timeout, BreakerState, ErrorKind};
use tokio::time::{sleep, Instant};

#[derive(Debug, Clone)]
enum ApiError {
    Down,
    NotFound,
    Limit(limit_runtime::Error),
}

impl From<limit_runtime::Error> for ApiError {
    fn from(e: limit_runtime::Error) -> Self {
        ApiError::Limit(e)
    }
}

impl ApiError {
    fn limit(&self) -> Option<&limit_runtime::Error> {
        match self {
            ApiError::Limit(e) => Some(e),
            _ => None,
        }
    }
    fn is_outage(&self) -> bool {
        !matches!(self, ApiError::NotFound)
    }
}

/// Sets its flag when dropped: shows a cut body was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[timeout("2s")]
async fn slow(hold: Duration, dropped: Arc<AtomicBool>) -> Result<u32, ApiError> {
    let _flag = DropFlag(dropped);
    sleep(hold).await;
    Ok(7)
}

#[tokio::test(start_paused = true)]
async fn a_slow_body_is_cut_at_exactly_the_bound_and_dropped() {
    let dropped = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let err = slow(Duration::from_secs(5), dropped.clone())
        .await
        .unwrap_err();
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
    assert!(dropped.load(Ordering::SeqCst), "the body was dropped");
    let e = err.limit().unwrap();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.name().ends_with("::slow"), "{}", e.name());
    assert!(
        e.to_string().contains(
            ": timed out after 2s (timeout attempt = \"2s\" at tests/timeout_breaker.rs:"
        ),
        "{e}"
    );
    // A fast body is untouched.
    assert_eq!(
        slow(Duration::from_millis(1999), Arc::default())
            .await
            .unwrap(),
        7
    );
}

static TIMED_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[retry(attempts = 3, initial = "100ms", jitter = "none")]
#[timeout(attempt = "1s")]
async fn times_out_twice() -> Result<u32, ApiError> {
    let n = TIMED_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    if n < 2 {
        sleep(Duration::from_secs(60)).await;
    }
    Ok(n)
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_are_retried_with_the_exact_schedule() {
    let t0 = Instant::now();
    assert_eq!(times_out_twice().await.unwrap(), 2);
    // 1 s + 100 ms + 1 s + 200 ms, then the third attempt succeeds at once.
    assert_eq!(t0.elapsed(), Duration::from_millis(2300));
    assert_eq!(TIMED_ATTEMPTS.load(Ordering::SeqCst), 3);
}

static TOTAL_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[timeout(total = "1500ms")]
#[retry(attempts = 10, initial = "1s", jitter = "none")]
async fn always_down() -> Result<(), ApiError> {
    TOTAL_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    Err(ApiError::Down)
}

#[tokio::test(start_paused = true)]
async fn total_ends_a_call_mid_sleep() {
    let t0 = Instant::now();
    let err = always_down().await.unwrap_err();
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(1500),
        "ended during the 2nd sleep"
    );
    assert_eq!(TOTAL_ATTEMPTS.load(Ordering::SeqCst), 2);
    let e = err.limit().unwrap();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(
        e.to_string().contains("(timeout total = \"1500ms\" at "),
        "{e}"
    );
}

#[limited(name = "t-timeout-queue", max = 1)]
async fn holder(hold: Duration) {
    sleep(hold).await;
}

#[timeout(attempt = "100ms")]
#[limited(name = "t-timeout-queue", max = 1)]
async fn queued_then_quick() -> Result<u32, ApiError> {
    sleep(Duration::from_millis(50)).await;
    Ok(1)
}

#[tokio::test(start_paused = true)]
async fn the_attempt_bound_excludes_time_spent_queueing() {
    let h = tokio::spawn(holder(Duration::from_secs(3)));
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    assert_eq!(
        queued_then_quick().await.unwrap(),
        1,
        "queued 3 s, ran 50 ms: no timeout"
    );
    assert_eq!(t0.elapsed(), Duration::from_millis(3050));
    h.await.unwrap();
}

static BREAKER_BODIES: AtomicU32 = AtomicU32::new(0);

#[circuit_breaker(
    name = "t-cycle",
    min_calls = 4,
    failure_rate = 0.5,
    open_for = "10s",
    half_open = 2
)]
async fn flaky(up: bool) -> Result<u32, ApiError> {
    BREAKER_BODIES.fetch_add(1, Ordering::SeqCst);
    if up {
        Ok(1)
    } else {
        Err(ApiError::Down)
    }
}

#[tokio::test(start_paused = true)]
async fn the_full_cycle_closed_open_half_open_closed_and_open_again() {
    let b = || limit_runtime::breaker("t-cycle").unwrap();
    for up in [true, false, false, true] {
        let _ = flaky(up).await; // 2 of 4 failed: 50 %
    }
    assert_eq!(b().state(), BreakerState::Open);
    let before = BREAKER_BODIES.load(Ordering::SeqCst);
    let err = flaky(true).await.unwrap_err();
    let e = err.limit().unwrap();
    assert_eq!(e.kind(), ErrorKind::CircuitOpen);
    assert_eq!(e.name(), "t-cycle");
    assert!(
        e.to_string().contains("circuit open; trying again in 10s"),
        "{e}"
    );
    assert_eq!(
        BREAKER_BODIES.load(Ordering::SeqCst),
        before,
        "the body did not run"
    );

    sleep(Duration::from_secs(10)).await;
    assert_eq!(b().state(), BreakerState::HalfOpen);
    // Exactly two trials run at once; a third is refused.
    let gate = Arc::new(tokio::sync::Notify::new());
    let trials: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let r = flaky_slow(true).await;
                r.map(|_| ())
            })
        })
        .collect();
    tokio::task::yield_now().await;
    let third = flaky_slow(true).await.unwrap_err();
    assert_eq!(third.limit().unwrap().kind(), ErrorKind::CircuitOpen);
    assert!(third.limit().unwrap().to_string().contains("half-open"));
    for t in trials {
        t.await.unwrap().unwrap();
    }
    drop(gate);
    assert_eq!(b().state(), BreakerState::Closed);

    // Open again, then a failed trial opens it again.
    for _ in 0..4 {
        let _ = flaky(false).await;
    }
    assert_eq!(b().state(), BreakerState::Open);
    sleep(Duration::from_secs(10)).await;
    assert!(flaky(false).await.is_err());
    assert_eq!(b().state(), BreakerState::Open);
    let s = b().stats();
    let states: Vec<BreakerState> = s.transitions.iter().map(|t| t.to).collect();
    assert_eq!(
        states,
        [
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Open
        ]
    );
    assert_eq!(s.refused, 2);
}

#[circuit_breaker(
    name = "t-cycle",
    min_calls = 4,
    failure_rate = 0.5,
    open_for = "10s",
    half_open = 2
)]
async fn flaky_slow(up: bool) -> Result<u32, ApiError> {
    sleep(Duration::from_millis(100)).await;
    if up {
        Ok(1)
    } else {
        Err(ApiError::Down)
    }
}

#[circuit_breaker(name = "t-predicate", min_calls = 3, failure = ApiError::is_outage)]
async fn lookup(found: bool) -> Result<u32, ApiError> {
    if found {
        Ok(1)
    } else {
        Err(ApiError::NotFound)
    }
}

#[tokio::test(start_paused = true)]
async fn min_calls_and_the_failure_predicate() {
    for _ in 0..10 {
        assert!(matches!(lookup(false).await, Err(ApiError::NotFound)));
    }
    let b = limit_runtime::breaker("t-predicate").unwrap();
    assert_eq!(b.state(), BreakerState::Closed, "NotFound is not an outage");
    assert_eq!(b.stats().failures, 0);
}

static RETRIED_INTO_OPEN: AtomicU32 = AtomicU32::new(0);

#[retry(attempts = 10, initial = "10ms", jitter = "none")]
#[circuit_breaker(name = "t-retry-stops", min_calls = 3, failure_rate = 1.0)]
async fn keeps_failing() -> Result<(), ApiError> {
    RETRIED_INTO_OPEN.fetch_add(1, Ordering::SeqCst);
    Err(ApiError::Down)
}

#[tokio::test(start_paused = true)]
async fn retry_stops_at_an_open_breaker() {
    let err = keeps_failing().await.unwrap_err();
    assert_eq!(err.limit().unwrap().kind(), ErrorKind::CircuitOpen);
    // Every attempt is a call for the breaker: it opened after the third,
    // and the fourth attempt was refused, not retried.
    assert_eq!(RETRIED_INTO_OPEN.load(Ordering::SeqCst), 3);
}

#[circuit_breaker(name = "t-no-permit", min_calls = 1)]
#[limited(name = "t-no-permit", max = 1)]
async fn guarded(up: bool) -> Result<(), ApiError> {
    if up {
        Ok(())
    } else {
        Err(ApiError::Down)
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_takes_no_permit_and_force_open_and_reset_work() {
    assert!(guarded(false).await.is_err());
    let l = limit_runtime::limiter("t-no-permit").unwrap();
    let acquired = l.stats().acquired;
    assert_eq!(
        guarded(true).await.unwrap_err().limit().unwrap().kind(),
        ErrorKind::CircuitOpen
    );
    assert_eq!(l.stats().acquired, acquired, "no permit taken while open");
    let b = limit_runtime::breaker("t-no-permit").unwrap();
    b.reset();
    guarded(true).await.unwrap();
    b.force_open();
    sleep(Duration::from_secs(3600)).await;
    let e = guarded(true).await.unwrap_err();
    assert!(e.limit().unwrap().to_string().contains("forced open"));
    b.reset();
    guarded(true).await.unwrap();
    assert!(limit_runtime::breakers()
        .iter()
        .any(|b| b.name() == "t-no-permit"));
}

#[circuit_breaker(name = "t-limiter-refusal", min_calls = 1)]
#[limited(name = "t-limiter-refusal", max = 1, queue = 0)]
async fn refused_by_limiter(hold: Duration) -> Result<(), ApiError> {
    sleep(hold).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn limiter_refusals_never_count_as_breaker_failures() {
    let h = tokio::spawn(refused_by_limiter(Duration::from_secs(1)));
    tokio::task::yield_now().await;
    for _ in 0..5 {
        let e = refused_by_limiter(Duration::ZERO).await.unwrap_err();
        assert_eq!(e.limit().unwrap().kind(), ErrorKind::QueueFull);
    }
    h.await.unwrap().unwrap();
    let b = limit_runtime::breaker("t-limiter-refusal").unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.stats().failures, 0);
}

#[timeout("1s")]
#[circuit_breaker(name = "t-timeouts-count", min_calls = 2, failure_rate = 1.0, failure = |_e: &std::io::Error| false)]
async fn hangs() -> std::io::Result<()> {
    sleep(Duration::from_secs(60)).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_always_count_and_io_errors_carry_them() {
    for _ in 0..2 {
        let e = hangs().await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }
    let b = limit_runtime::breaker("t-timeouts-count").unwrap();
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "timeouts counted despite `failure`"
    );
    let e = hangs().await.unwrap_err();
    let inner = e
        .get_ref()
        .unwrap()
        .downcast_ref::<limit_runtime::Error>()
        .unwrap();
    assert_eq!(inner.kind(), ErrorKind::CircuitOpen);
}

#[timeout(attempt = "1s")]
async fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    sleep(Duration::from_secs(2)).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn boxed_errors_carry_a_timeout() {
    let e = boxed().await.unwrap_err();
    assert_eq!(
        e.downcast_ref::<limit_runtime::Error>().unwrap().kind(),
        ErrorKind::Timeout
    );
}

#[circuit_breaker(name = "t-breaker-conflict", min_calls = 5)]
async fn conflict_a() -> Result<(), ApiError> {
    Ok(())
}

#[circuit_breaker(name = "t-breaker-conflict", min_calls = 6)]
async fn conflict_b() -> Result<(), ApiError> {
    Ok(())
}

#[tokio::test]
async fn breaker_declarations_that_disagree_panic_in_debug_builds() {
    conflict_a().await.unwrap();
    let err = tokio::spawn(conflict_b()).await.unwrap_err();
    let panic = err.into_panic();
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("breaker \"t-breaker-conflict\" is declared twice with different options"),
        "{msg}"
    );
    assert!(msg.contains(&format!("at {}:", file!())), "{msg}");
}

// Errors and conflict panics name the line each attribute is written on,
// also when another attribute of the function expands it (here every one
// below `#[retry]`).
const APART: u32 = line!() + 1;
#[retry(attempts = 1)]
#[timeout("10ms")]
#[circuit_breaker(name = "t-lines", min_calls = 2)]
#[limited(name = "t-lines", max = 1, queue = 0)]
async fn declared_apart(hold: Duration) -> Result<(), ApiError> {
    sleep(hold).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn each_refusal_names_the_line_of_its_own_attribute() {
    let at = |line: u32| format!(" at {}:{line})", file!());
    let holder = tokio::spawn(declared_apart(Duration::from_millis(5)));
    sleep(Duration::from_millis(1)).await;
    let full = declared_apart(Duration::ZERO).await.unwrap_err();
    let full = full.limit().expect("refused by the limiter").to_string();
    assert!(full.ends_with(&at(APART + 3)), "{full}");
    holder.await.unwrap().unwrap();
    let late = declared_apart(Duration::from_millis(20)).await.unwrap_err();
    let late = late.limit().expect("timed out").to_string();
    assert!(late.ends_with(&at(APART + 1)), "{late}");
    // One success and one timeout: half of two calls failed, so it opened.
    let open = declared_apart(Duration::ZERO).await.unwrap_err();
    let open = open.limit().expect("refused by the breaker");
    assert_eq!(open.kind(), ErrorKind::CircuitOpen);
    assert!(open.to_string().ends_with(&at(APART + 2)), "{open}");
}

#[limited(name = "t-lines-conflict", max = 1)]
async fn declared_first() {}

const SECOND: u32 = line!() + 2;
#[retry(attempts = 1)]
#[limited(name = "t-lines-conflict", max = 2)]
async fn declared_second() -> Result<(), ApiError> {
    Ok(())
}

#[tokio::test]
async fn a_conflict_names_the_line_of_an_expanded_attribute() {
    declared_first().await;
    let err = tokio::spawn(declared_second()).await.unwrap_err();
    let msg = err.into_panic();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains(&format!("max = 2 at {}:{SECOND}", file!())),
        "{msg}"
    );
}
