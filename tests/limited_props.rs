//! Property tests: under random arrivals, hold times, cancellations of
//! waiting and running callers, and live resizes, no permit is ever lost or
//! duplicated.

use std::sync::Arc;
use std::time::Duration;

use limit_runtime::Limiter;
use limit_suite::Gauge;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Caller {
    arrive_ms: u64,
    hold_ms: u64,
    /// Dropped this long after it arrives (while waiting or running).
    cancel_after_ms: Option<u64>,
    /// Panics in its body instead of finishing.
    panics: bool,
}

fn caller() -> impl Strategy<Value = Caller> {
    (
        0..20u64,
        0..10u64,
        prop::option::weighted(0.4, 0..15u64),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(arrive_ms, hold_ms, cancel_after_ms, panics)| Caller {
            arrive_ms,
            hold_ms,
            cancel_after_ms,
            panics,
        })
}

fn runtime() -> tokio::runtime::Runtime {
    // Keep the expected panics of bodies out of the test output.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"body panicked") {
                default(info);
            }
        }));
    });
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

async fn call(l: Limiter, gauge: Arc<Gauge>, c: Caller) {
    tokio::time::sleep(Duration::from_millis(c.arrive_ms)).await;
    l.run(async {
        let _g = gauge.enter();
        tokio::time::sleep(Duration::from_millis(c.hold_ms)).await;
        if c.panics {
            panic!("body panicked");
        }
    })
    .await
}

/// Spawns the caller, and a canceller that aborts it from outside at its
/// time: possibly after a permit was handed to it but before it ran again.
fn spawn_caller(l: &Limiter, gauge: &Arc<Gauge>, c: &Caller) -> tokio::task::JoinHandle<()> {
    let task = tokio::spawn(call(l.clone(), gauge.clone(), c.clone()));
    if let Some(ms) = c.cancel_after_ms {
        let abort = task.abort_handle();
        let at = Duration::from_millis(c.arrive_ms + ms);
        tokio::spawn(async move {
            tokio::time::sleep(at).await;
            abort.abort();
        });
    }
    task
}

fn check_quiet(l: &Limiter, max: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(l.active(), 0);
    prop_assert_eq!(l.waiting(), 0);
    prop_assert_eq!(l.available(), max);
    // Every permit can still be taken, and no more.
    let permits: Vec<_> = (0..max).map(|_| l.try_acquire()).collect();
    prop_assert!(permits.iter().all(Option::is_some));
    prop_assert!(l.try_acquire().is_none());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn no_permit_lost_under_random_cancellation(
        max in 1..5usize,
        callers in prop::collection::vec(caller(), 1..40),
    ) {
        let l = Limiter::private("props", max);
        let gauge = Arc::new(Gauge::new());
        runtime().block_on(async {
            let tasks: Vec<_> = callers.iter().map(|c| spawn_caller(&l, &gauge, c)).collect();
            for (t, c) in tasks.into_iter().zip(&callers) {
                if let Err(e) = t.await {
                    // A task fails only by its body's panic or its abort.
                    prop_assert!(c.panics || (e.is_cancelled() && c.cancel_after_ms.is_some()));
                }
            }
            Ok(())
        })?;
        prop_assert!(gauge.peak() <= max, "peak {} > max {}", gauge.peak(), max);
        prop_assert_eq!(gauge.now(), 0);
        check_quiet(&l, max)?;
    }

    #[test]
    fn no_permit_lost_under_random_resizes(
        max in 1..5usize,
        callers in prop::collection::vec(caller(), 1..40),
        resizes in prop::collection::vec((0..25u64, 0..7usize), 0..6),
    ) {
        let l = Limiter::private("props-resize", max);
        let gauge = Arc::new(Gauge::new());
        let final_max = resizes.iter().max_by_key(|(at, _)| *at).map_or(max, |(_, m)| *m);
        runtime().block_on(async {
            let mut resizer = {
                let l = l.clone();
                let mut resizes = resizes.clone();
                resizes.sort_by_key(|(at, _)| *at);
                tokio::spawn(async move {
                    let mut now = 0;
                    for (at, m) in resizes {
                        tokio::time::sleep(Duration::from_millis(at - now)).await;
                        now = at;
                        l.set_max(m);
                    }
                })
            };
            let tasks: Vec<_> = callers.iter().map(|c| spawn_caller(&l, &gauge, c)).collect();
            (&mut resizer).await.unwrap();
            // A final max of 0 pauses the limiter: open it so queued callers
            // can finish, then restore it.
            if final_max == 0 {
                l.set_max(1);
            }
            for t in tasks {
                let _ = t.await;
            }
            if final_max == 0 {
                l.set_max(0);
            }
        });
        prop_assert_eq!(l.max(), final_max);
        prop_assert_eq!(gauge.now(), 0);
        check_quiet(&l, final_max)?;
    }
}

/// Real threads racing the lock-free paths against the queue: two workers,
/// thousands of short calls, a third of them aborted at random moments,
/// the limit resized meanwhile. Only the final state is checked.
#[test]
fn no_permit_lost_with_two_threads_racing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let l = Limiter::private("props-threads", 3);
    let gauge = Arc::new(Gauge::new());
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    rt.block_on(async {
        for round in 0..20 {
            let mut tasks = Vec::new();
            for _ in 0..500 {
                let (l, gauge) = (l.clone(), gauge.clone());
                let yields = next() % 4;
                tasks.push(tokio::spawn(async move {
                    l.run(async {
                        let _g = gauge.enter();
                        for _ in 0..yields {
                            tokio::task::yield_now().await;
                        }
                    })
                    .await
                }));
            }
            for (i, t) in tasks.iter().enumerate() {
                if next() % 3 == 0 {
                    t.abort();
                }
                if i % 100 == 0 {
                    l.set_max(1 + (next() % 5) as usize);
                    tokio::task::yield_now().await;
                }
            }
            for t in tasks {
                let _ = t.await;
            }
            assert_eq!(gauge.now(), 0, "round {round}");
            assert_eq!((l.active(), l.waiting()), (0, 0), "round {round}");
            assert_eq!(l.available(), l.max(), "round {round}");
        }
    });
    l.set_max(3);
    check_quiet(&l, 3).unwrap();
}
