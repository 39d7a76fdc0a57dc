//! The counters behind `limiters()`, `retry::stats()` and
//! `coalesce::stats()`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use limit_runtime::{coalesce, limited, retry};

#[derive(Debug, Clone, PartialEq)]
enum E {
    Busy,
    Gone,
}

static CALLS: AtomicU32 = AtomicU32::new(0);

#[retry(attempts = 3, initial = "10ms", when = |e: &E| *e == E::Busy)]
async fn counted(fail: u32, err: E) -> Result<u32, E> {
    let n = CALLS.fetch_add(1, Ordering::SeqCst);
    if n < fail {
        Err(err)
    } else {
        Ok(n)
    }
}

fn retry_stats() -> retry::RetryStats {
    retry::stats()
        .into_iter()
        .find(|s| s.name == "stats::counted")
        .expect("listed after first use")
}

#[tokio::test(start_paused = true)]
async fn retry_counters_count_calls_attempts_retries_and_give_ups() {
    // 1 retry, then success.
    CALLS.store(0, Ordering::SeqCst);
    assert!(counted(1, E::Busy).await.is_ok());
    // 3 attempts, gives up.
    CALLS.store(0, Ordering::SeqCst);
    assert!(counted(10, E::Busy).await.is_err());
    // Not retryable: 1 attempt.
    CALLS.store(0, Ordering::SeqCst);
    assert!(counted(10, E::Gone).await.is_err());
    let s = retry_stats();
    assert_eq!(s.calls, 3);
    assert_eq!(s.retries, 1 + 2);
    assert_eq!(s.attempts, 3 + 3);
    assert_eq!(s.gave_up, 1);
    assert_eq!(s.not_retryable, 1);
}

#[coalesce]
async fn shared(id: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(5)).await;
    id
}

#[tokio::test(start_paused = true)]
async fn coalesce_counters_count_runs_and_shared_results() {
    let tasks: Vec<_> = (0..10).map(|i| tokio::spawn(shared(i % 2))).collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = coalesce::stats()
        .into_iter()
        .find(|s| s.name == "stats::shared")
        .expect("listed after first use");
    assert_eq!((s.runs, s.shared, s.in_flight), (2, 8, 0));
}

#[limited(name = "stats-limited", max = 2)]
async fn slow(gate: Arc<tokio::sync::Notify>) {
    gate.notified().await;
}

#[tokio::test(start_paused = true)]
async fn limiter_counters_count_acquisitions_peaks_and_waits() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let tasks: Vec<_> = (0..5).map(|_| tokio::spawn(slow(gate.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let l = limit_runtime::limiter("stats-limited").unwrap();
    let s = l.stats();
    assert_eq!(
        (s.active, s.waiting, s.acquired, s.peak_active),
        (2, 3, 2, 2)
    );
    for _ in 0..5 {
        gate.notify_one();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = l.stats();
    assert_eq!(
        (s.active, s.waiting, s.acquired, s.peak_active),
        (0, 0, 5, 2)
    );
    assert_eq!(s.waited, 3);
    // Paused clock: the three waiters waited 100, 200 and 300 ms.
    assert_eq!(s.wait_max, Duration::from_millis(300));
    assert_eq!(s.wait_total, Duration::from_millis(600));
    assert!(limit_runtime::limiters()
        .iter()
        .any(|l| l.name() == "stats-limited"));
}

#[limited(name = "stats-handoff", max = 1)]
async fn ten_ms() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Callers that call again as soon as they finish: each release hands the
/// permit on and the releaser queues again at once, so most waits end at
/// the releaser's clock reading rather than the waiter's own. Under a
/// paused clock the figures are still exact.
#[tokio::test(start_paused = true)]
async fn waits_are_exact_when_callers_hand_off_in_a_loop() {
    const CALLS: u32 = 20;
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async {
                for _ in 0..CALLS {
                    ten_ms().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = limit_runtime::limiter("stats-handoff").unwrap().stats();
    assert_eq!(s.acquired, 3 * u64::from(CALLS));
    // The first caller starts at once; the other two wait 10 and 20 ms;
    // from then on, FIFO, every call waits for the other two's bodies.
    assert_eq!(s.waited, 3 * u64::from(CALLS) - 1);
    assert_eq!(s.wait_max, Duration::from_millis(20));
    let later = u64::from(3 * CALLS - 3);
    assert_eq!(
        s.wait_total,
        Duration::from_millis(10 + 20 + 20 * later),
        "{s:?}"
    );
}

#[limited(name = "stats-two-clocks", max = 1)]
async fn ten_ms_shared() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Two tests side by side, each on its own runtime with a paused clock, one
/// of them an hour ahead, share a named limiter. A wait is timed on the
/// waiter's own clock only: none can come out near an hour.
#[test]
fn waits_on_runtimes_with_different_paused_clocks_stay_apart() {
    let run = |ahead: Duration| {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async move {
                tokio::time::advance(ahead).await;
                let tasks: Vec<_> = (0..3)
                    .map(|_| {
                        tokio::spawn(async {
                            for _ in 0..1000 {
                                ten_ms_shared().await;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
        })
    };
    let a = run(Duration::from_secs(3600));
    let b = run(Duration::ZERO);
    a.join().unwrap();
    b.join().unwrap();
    let s = limit_runtime::limiter("stats-two-clocks").unwrap().stats();
    assert_eq!(s.acquired, 6000);
    assert!(s.wait_max < Duration::from_secs(60), "{s:?}");
}
