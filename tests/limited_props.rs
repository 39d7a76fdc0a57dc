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

/// A caller with the options that change how it waits.
#[derive(Clone, Debug)]
struct Patient {
    arrive_ms: u64,
    hold_ms: u64,
    cancel_after_ms: Option<u64>,
    wait_ms: Option<u64>,
    queue: Option<usize>,
    batch: bool,
}

fn patient() -> impl Strategy<Value = Patient> {
    (
        (0..30u64, 0..10u64, prop::option::weighted(0.3, 0..20u64)),
        (
            prop::option::weighted(0.4, 0..15u64),
            prop::option::weighted(0.3, 0..6usize),
            prop::bool::weighted(0.4),
        ),
    )
        .prop_map(
            |((arrive_ms, hold_ms, cancel_after_ms), (wait_ms, queue, batch))| Patient {
                arrive_ms,
                hold_ms,
                cancel_after_ms,
                wait_ms,
                queue,
                batch,
            },
        )
}

/// What happened to one caller.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ran { started: Duration },
    Refused(limit_runtime::ErrorKind),
}

async fn patient_call(
    l: Limiter,
    gauge: Arc<Gauge>,
    c: Patient,
    t0: tokio::time::Instant,
) -> Outcome {
    tokio::time::sleep(Duration::from_millis(c.arrive_ms)).await;
    let mut options = limit_runtime::AcquireOptions::new();
    if let Some(ms) = c.wait_ms {
        options = options.wait(Duration::from_millis(ms));
    }
    if let Some(q) = c.queue {
        options = options.queue(q);
    }
    let attempt = async {
        match l.acquire_with(options).await {
            Ok(_permit) => {
                let started = t0.elapsed();
                let _g = gauge.enter();
                tokio::time::sleep(Duration::from_millis(c.hold_ms)).await;
                Outcome::Ran { started }
            }
            Err(e) => Outcome::Refused(e.kind()),
        }
    };
    if c.batch {
        limit_runtime::batch::scope(attempt).await
    } else {
        attempt.await
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Random arrivals, deadlines, queue bounds, classes, a reserve, a rate,
    /// aborts and resizes: the concurrency and rate bounds hold for every
    /// start, refusals match the options, and afterwards every permit and
    /// the whole burst are there again.
    #[test]
    fn no_permit_or_rate_slot_lost_with_every_option(
        max in 1..5usize,
        reserve in 0..2usize,
        per_second in prop::option::of(20..400u64),
        burst in 1..4u32,
        callers in prop::collection::vec(patient(), 1..40),
        resizes in prop::collection::vec((0..30u64, 1..6usize), 0..4),
    ) {
        // A reserve of `max` or more pauses batch work (by design): keep it
        // below every limit the run uses, as the attribute requires.
        let reserve = reserve.min(max - 1);
        let resizes: Vec<(u64, usize)> =
            resizes.into_iter().map(|(at, m)| (at, m.max(reserve + 1))).collect();
        let l = Limiter::private("props-options", max);
        let rate = per_second.map(|n| limit_runtime::Rate::per_second(n).with_burst(burst));
        l.set_rate(rate);
        l.set_reserve(reserve);
        let gauge = Arc::new(Gauge::new());
        let mut outcomes = Vec::new();
        runtime().block_on(async {
            let t0 = tokio::time::Instant::now();
            let resizer = {
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
            let tasks: Vec<_> = callers
                .iter()
                .map(|c| {
                    let task = tokio::spawn(patient_call(l.clone(), gauge.clone(), c.clone(), t0));
                    if let Some(ms) = c.cancel_after_ms {
                        let abort = task.abort_handle();
                        let at = Duration::from_millis(c.arrive_ms + ms);
                        tokio::spawn(async move {
                            tokio::time::sleep(at).await;
                            abort.abort();
                        });
                    }
                    task
                })
                .collect();
            resizer.await.unwrap();
            for (t, c) in tasks.into_iter().zip(&callers) {
                match t.await {
                    Ok(o) => outcomes.push((c.clone(), o)),
                    Err(e) => prop_assert!(e.is_cancelled() && c.cancel_after_ms.is_some()),
                }
            }
            Ok(())
        })?;
        let peak_bound = resizes.iter().map(|(_, m)| *m).chain([max]).max().unwrap();
        prop_assert!(gauge.peak() <= peak_bound, "peak {} > {}", gauge.peak(), peak_bound);
        prop_assert_eq!(gauge.now(), 0);
        for (c, o) in &outcomes {
            if let Outcome::Refused(kind) = o {
                match kind {
                    limit_runtime::ErrorKind::WaitTimeout => prop_assert!(c.wait_ms.is_some()),
                    limit_runtime::ErrorKind::QueueFull => prop_assert!(c.queue.is_some()),
                    other => prop_assert!(false, "unexpected refusal {:?}", other),
                }
            }
        }
        // The rate bound, over every window of the starts that ran (aborted
        // callers may have started too, so this checks a subset: still a
        // valid check of the bound).
        if let Some(n) = per_second {
            let mut starts: Vec<Duration> = outcomes
                .iter()
                .filter_map(|(_, o)| match o { Outcome::Ran { started } => Some(*started), _ => None })
                .collect();
            starts.sort();
            for i in 0..starts.len() {
                for j in i..starts.len() {
                    let t = (starts[j] - starts[i]).as_secs_f64();
                    let bound = f64::from(burst) + (t * n as f64 + 1e-9).floor();
                    prop_assert!((j - i + 1) as f64 <= bound, "{} starts in {:?}..{:?}", j - i + 1, starts[i], starts[j]);
                }
            }
        }
        let final_max = resizes.iter().max_by_key(|(at, _)| *at).map_or(max, |(_, m)| *m);
        prop_assert_eq!(l.batch_active(), 0);
        l.set_reserve(0);
        runtime().block_on(async {
            // After a quiet period the whole burst is back.
            tokio::time::sleep(Duration::from_secs(60)).await;
            let usable = if rate.is_some() { final_max.min(burst as usize) } else { final_max };
            prop_assert_eq!(l.active(), 0);
            prop_assert_eq!(l.waiting(), 0);
            let permits: Vec<_> = (0..usable).map(|_| l.try_acquire()).collect();
            prop_assert!(permits.iter().all(Option::is_some), "{:?}", l.stats());
            prop_assert!(l.try_acquire().is_none());
            Ok(())
        })?;
    }
}
