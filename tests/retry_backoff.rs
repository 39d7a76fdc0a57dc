//! `#[retry(policy = ...)]` with a `backoff` policy (cargo feature
//! `backoff`: `cargo test --features backoff --test retry_backoff`).
#![cfg(feature = "backoff")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backoff::backoff::Constant;
use backoff::ExponentialBackoffBuilder;
use limit_runtime::retry;
use tokio::time::Instant;

static CONSTANT_CALLS: AtomicU32 = AtomicU32::new(0);

#[retry(attempts = 4, policy = Constant::new(Duration::from_millis(250)))]
async fn constant_policy() -> Result<u32, String> {
    CONSTANT_CALLS.fetch_add(1, Ordering::SeqCst);
    Err("down".into())
}

#[tokio::test(start_paused = true)]
async fn a_backoff_policy_replaces_the_schedule_and_attempts_still_apply() {
    let start = Instant::now();
    assert!(constant_policy().await.is_err());
    assert_eq!(CONSTANT_CALLS.load(Ordering::SeqCst), 4);
    assert_eq!(start.elapsed(), Duration::from_millis(750));
}

static STOPPING_CALLS: AtomicU32 = AtomicU32::new(0);

// Without `attempts`, the policy alone decides when to stop: `Stop` never
// offers a delay, so the first error is final.
#[retry(policy = backoff::backoff::Stop {})]
async fn stopping_policy() -> Result<u32, String> {
    STOPPING_CALLS.fetch_add(1, Ordering::SeqCst);
    Err("down".into())
}

#[tokio::test(start_paused = true)]
async fn without_attempts_the_policy_decides_when_to_stop() {
    assert!(stopping_policy().await.is_err());
    assert_eq!(STOPPING_CALLS.load(Ordering::SeqCst), 1);
}

static EXPONENTIAL_CALLS: AtomicU32 = AtomicU32::new(0);

#[retry(attempts = 4, policy = ExponentialBackoffBuilder::new()
    .with_initial_interval(Duration::from_millis(100))
    .with_randomization_factor(0.0)
    .with_multiplier(2.0)
    .build())]
async fn exponential_policy() -> Result<u32, String> {
    if EXPONENTIAL_CALLS.fetch_add(1, Ordering::SeqCst) < 3 {
        return Err("down".into());
    }
    Ok(7)
}

#[tokio::test(start_paused = true)]
async fn an_exponential_backoff_policy_sets_the_delays() {
    let start = Instant::now();
    assert_eq!(exponential_policy().await, Ok(7));
    assert_eq!(start.elapsed(), Duration::from_millis(100 + 200 + 400));
}
