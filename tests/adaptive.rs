//! Adaptive limits against a simulated service (tests/support/sim.rs),
//! under tokio's paused clock: every scenario is compared with the best
//! fixed limit found by a sweep in the same test, and asserts directions and
//! bounds, never wall-clock speed.

#[path = "support/sim.rs"]
mod sim;

use std::time::Duration;

use limit_runtime::{limited, timeout, AdaptiveOptions, Limiter, Outcome};
use sim::{Scenario, Service, Shape, SimError};

const L: Duration = Duration::from_millis(100);
const C: usize = 20;
const WORKERS: usize = 150;
const LENGTH: Duration = Duration::from_secs(30);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn adaptive(label: &str, min: usize) -> Limiter {
    Limiter::adaptive(label, 1000, AdaptiveOptions::new().min(min))
}

/// The limit the run settled on: the median over its last 10 s (a probe
/// may be running at the very end).
fn settled(run: &sim::Run) -> usize {
    let mut tail = run.limit[run.limit.len() - 101..run.limit.len() - 1].to_vec();
    tail.sort_unstable();
    tail[tail.len() / 2]
}

fn scenario(shape: Shape) -> Scenario {
    Scenario::new(shape, WORKERS, LENGTH)
}

#[tokio::test(start_paused = true)]
async fn unknown_capacity_steady() {
    let sc = scenario(Shape::new(C, L));
    let (best_n, best) = sc
        .best_fixed(&[10, 15, 20, 25, 30, 40], secs(0), LENGTH)
        .await;
    let limiter = adaptive("sim-steady", 1);
    let run = sc.run(&limiter).await;
    let ratio = run.throughput(secs(0), LENGTH) / best.throughput(secs(0), LENGTH);
    let stats = limiter.stats();
    eprintln!(
        "steady: best fixed {best_n}; adaptive/best {ratio:.3}; overloads {:.4}; median {:?}; limit {} (seen {}..{}); baseline {:?}",
        run.overload_fraction(),
        run.median_latency(),
        stats.limit,
        stats.limit_min_seen,
        stats.limit_max_seen,
        stats.baseline,
    );
    assert!(
        ratio >= 0.95,
        "throughput {ratio:.3} of the best fixed limit"
    );
    assert!(run.overload_fraction() <= 0.005);
    let median = run.median_latency();
    assert!(median <= L.mul_f64(1.2), "{median:?}");
    // It found the capacity: neither below it nor far above it.
    let limit = settled(&run);
    assert!((C..=C * 3 / 2).contains(&limit), "limit {limit}");
    assert_eq!(stats.baseline, Some(L));
    assert!(stats.adaptive && stats.samples > 1000);
}

#[tokio::test(start_paused = true)]
async fn capacity_scaled_up_mid_run() {
    let sc = scenario(Shape::new(C, L)).capacity_at(secs(10), C * 5 / 2);
    let (best_n, best) = sc
        .best_fixed(&[20, 40, 50, 60, 75, 100], secs(13), LENGTH)
        .await;
    let limiter = adaptive("sim-scaled", 1);
    let run = sc.run(&limiter).await;
    let best_rate = best.throughput(secs(13), LENGTH);
    let within_3s = run.throughput(secs(13), secs(16)) / best_rate;
    let after = run.throughput(secs(13), LENGTH) / best_rate;
    eprintln!(
        "scaled: best fixed {best_n}; adaptive/best 3-6 s after {within_3s:.3}, 3-20 s after {after:.3}; limit {}",
        limiter.limit()
    );
    assert!(within_3s >= 0.9, "{within_3s:.3}");
    assert!(after >= 0.9, "{after:.3}");
    assert!(settled(&run) >= C * 5 / 2, "limit {}", settled(&run));
}

#[tokio::test(start_paused = true)]
async fn capacity_halved_mid_run() {
    let sc = scenario(Shape::new(C * 2, L)).capacity_at(secs(10), C);
    let limiter = adaptive("sim-halved", 1);
    let run = sc.run(&limiter).await;
    let last = run.last_overload();
    eprintln!(
        "halved: last overload answer {last:?}; limit {}",
        limiter.limit()
    );
    // Overload answers stop within 1 s of the incident.
    assert!(last.is_none_or(|t| t < secs(11)), "{last:?}");
    // And the limit followed the service down, without collapsing.
    assert!(settled(&run) <= C * 3 / 2, "limit {}", settled(&run));
    let best = C as f64 / L.as_secs_f64();
    assert!(run.throughput(secs(12), LENGTH) >= 0.9 * best);
}

#[tokio::test(start_paused = true)]
async fn every_call_times_out() {
    let sc = scenario(Shape::new(C, L)).hang_at(secs(10), secs(1));
    let limiter = adaptive("sim-hang", 2);
    let run = sc.run(&limiter).await;
    let before = run.limit[95];
    let reached = run.limit_reached(secs(10), 2);
    eprintln!(
        "hang: limit before {before}, min reached at {reached:?}; max seen {}",
        limiter.stats().limit_max_seen
    );
    assert!(before >= C, "limit before the hang: {before}");
    // At `min` within 10 s.
    assert!(reached.is_some_and(|t| t <= secs(20)), "{reached:?}");
    // It never climbed while every call timed out.
    let after = &run.limit[100..];
    assert!(after.windows(2).all(|w| w[1] <= w[0]), "{after:?}");
    assert_eq!(limiter.limit(), 2);
}

#[tokio::test(start_paused = true)]
async fn noise_and_a_slow_tail() {
    let sc = scenario(Shape::new(C, L).noisy(0.3, 0.05, 10.0));
    let (best_n, best) = sc.best_fixed(&[15, 20, 25, 30, 40], secs(0), LENGTH).await;
    // The probes' times are jittered by a seed taken from the process and
    // the limiter's name: eight names, eight schedules of probes per run.
    for i in 0..8 {
        let limiter = adaptive(&format!("sim-noise-{i}"), 1);
        let run = sc.run(&limiter).await;
        let ratio = run.throughput(secs(0), LENGTH) / best.throughput(secs(0), LENGTH);
        let stats = limiter.stats();
        eprintln!(
            "noise {i}: best fixed {best_n}; adaptive/best {ratio:.3}; limit {} (seen {}..{}); baseline {:?}",
            stats.limit, stats.limit_min_seen, stats.limit_max_seen, stats.baseline
        );
        assert!(
            ratio >= 0.9,
            "{i}: {ratio:.3}: {:?}",
            run.limit.iter().step_by(5).collect::<Vec<_>>()
        );
        // The tail did not collapse the limit (it saws around the capacity).
        assert!(settled(&run) >= C * 3 / 4, "limit {}", settled(&run));
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_slower_for_good_gets_a_new_baseline() {
    // The unloaded latency doubles at 10 s (a new version, a colder
    // cache): not overload. The limit must not stay cut for it.
    let sc = scenario(Shape::new(C, L)).latency_at(secs(10), L * 2);
    let limiter = adaptive("sim-slower", 1);
    let run = sc.run(&limiter).await;
    let stats = limiter.stats();
    eprintln!(
        "slower: baseline {:?}, limit {} (seen {}..{})",
        stats.baseline, stats.limit, stats.limit_min_seen, stats.limit_max_seen
    );
    assert_eq!(stats.baseline, Some(L * 2), "re-measured");
    assert!(settled(&run) >= C, "limit {}", settled(&run));
    // Full throughput at the new latency over the last 10 s.
    let best = C as f64 / (L * 2).as_secs_f64();
    assert!(run.throughput(secs(20), LENGTH) >= 0.9 * best);
}

#[tokio::test(start_paused = true)]
async fn a_limit_nobody_reaches_does_not_climb() {
    let limiter = adaptive("sim-idle", 1);
    // Five callers never use more than five permits.
    Scenario::new(Shape::new(C, L), 5, secs(20))
        .run(&limiter)
        .await;
    assert_eq!(limiter.limit(), 20, "stays at `initial`");
    assert_eq!(limiter.stats().limit_max_seen, 20);
}

#[tokio::test(start_paused = true)]
async fn lowering_the_limit_never_interrupts_running_bodies() {
    let limiter = Limiter::adaptive("sim-lower", 100, AdaptiveOptions::new().initial(8));
    assert_eq!(limiter.limit(), 8, "starts at `initial`");
    // Finish the start-up probe (at `initial`) with 32 fast samples.
    for _ in 0..32 {
        let p = limiter.acquire().await;
        tokio::time::sleep(L).await;
        p.record(Outcome::Success);
    }
    assert_eq!(limiter.limit(), 8);
    tokio::time::sleep(Duration::from_millis(1)).await; // after the change
    let held: Vec<_> = (0..8).map(|_| limiter.try_acquire().unwrap()).collect();
    // Drops from calls that started under the limit of 8 cut it...
    for p in held.into_iter().take(8) {
        p.record(Outcome::Overloaded);
    }
    let cut = limiter.limit();
    assert!(cut < 8, "{cut}");
    // ...while the bodies still running keep their permits.
    let a = limiter.acquire().await;
    let b = limiter.try_acquire();
    assert_eq!(limiter.active(), 1 + usize::from(b.is_some()));
    drop((a, b));
}

#[tokio::test(start_paused = true)]
async fn ignored_failures_and_cancelled_bodies_are_not_samples() {
    let limiter = adaptive("sim-ignored", 1);
    for _ in 0..10 {
        limiter.acquire().await.record(Outcome::Ignored);
        drop(limiter.acquire().await); // cancelled, panicked: no record
    }
    let s = limiter.stats();
    assert_eq!((s.samples, s.overloads), (0, 0));
    assert_eq!(s.baseline, None);
    limiter.run(async { tokio::time::sleep(L).await }).await;
    assert_eq!(limiter.stats().samples, 1, "`run` records a success");
}

// The attribute: latency samples from successes, drops from `overload`
// errors and attempt timeouts, nothing from other failures.

static SERVICE: std::sync::LazyLock<std::sync::Arc<Service>> =
    std::sync::LazyLock::new(|| Service::new(Shape::new(C, L)));

#[limited(name = "sim-attr", adaptive, min = 2, max = 200, overload = SimError::is_overload)]
#[timeout("1s")]
async fn call_service(fail: bool) -> Result<(), SimError> {
    if fail {
        return Err(SimError::TimedOut); // not an overload: ignored
    }
    SERVICE.call().await
}

#[tokio::test(start_paused = true)]
async fn the_attribute_takes_its_signals_from_the_outcome() {
    let l = || limit_runtime::limiter("sim-attr");
    call_service(false).await.unwrap();
    assert!(l().unwrap().is_adaptive());
    assert_eq!(l().unwrap().max(), 200);
    assert_eq!(l().unwrap().stats().samples, 1);
    call_service(true).await.unwrap_err();
    assert_eq!(l().unwrap().stats().samples, 1, "other errors are ignored");

    // A batch of callers: the limit settles near the capacity.
    let mut tasks = Vec::new();
    for _ in 0..100 {
        tasks.push(tokio::spawn(async {
            for _ in 0..100 {
                let _ = call_service(false).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = l().unwrap().stats();
    eprintln!(
        "attribute: limit {} (seen {}..{}), overloads {}",
        s.limit, s.limit_min_seen, s.limit_max_seen, s.overloads
    );
    assert!((C..=2 * C).contains(&s.limit), "limit {}", s.limit);
    assert!(SERVICE.peak() <= 2 * C + 1 || s.overloads > 0);

    // The service hangs: attempt timeouts are drops.
    SERVICE.set_hang(true);
    let before = s.overloads;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        tasks.push(tokio::spawn(async {
            for _ in 0..10 {
                assert_eq!(call_service(false).await, Err(SimError::TimedOut));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    SERVICE.set_hang(false);
    let s = l().unwrap().stats();
    assert!(s.overloads > before);
    assert_eq!(s.limit, 2, "timeouts took the limit to `min`");
}

#[test]
#[cfg(debug_assertions)]
fn declarations_must_agree_on_adaptive() {
    use limit_runtime::StaticLimiter;
    static ADAPTIVE: StaticLimiter =
        StaticLimiter::new("sim-conflict", 100).adaptive(AdaptiveOptions::new().min(2));
    static FIXED: StaticLimiter = StaticLimiter::new("sim-conflict", 100);
    assert!(ADAPTIVE.limiter().is_adaptive());
    let err = std::panic::catch_unwind(|| FIXED.limiter().max()).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("limiter \"sim-conflict\" is declared twice with different options: max = 100, adaptive, min = 2, initial = 20 at tests/adaptive.rs:"),
        "{msg}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_that_binds_keeps_the_limit_from_climbing() {
    use limit_runtime::{Rate, StaticLimiter};
    // 100 starts per second at 100 ms each: never more than ~10 in flight,
    // so a limit of 20 is never in use and must not climb.
    static RATED: StaticLimiter = StaticLimiter::new("sim-rated", 1000)
        .rate(Rate::per_second(100))
        .adaptive(AdaptiveOptions::new());
    let limiter = RATED.limiter().clone();
    let run = scenario(Shape::new(C * 5, L)).run(&limiter).await;
    assert!(run.successes > 2500, "{}", run.successes);
    assert!(run.peak_in_flight <= 11, "{}", run.peak_in_flight);
    // Never above `initial` (below it while a probe runs).
    assert_eq!(limiter.stats().limit_max_seen, 20);
    assert!(limiter.limit() <= 20);
}

#[limited(name = "sim-panics", adaptive)]
async fn panics(really: bool) -> u64 {
    tokio::time::sleep(L).await;
    assert!(!really, "the body panicked");
    1
}

#[tokio::test(start_paused = true)]
async fn a_panicking_body_gives_its_permit_back_and_is_no_sample() {
    assert_eq!(panics(false).await, 1);
    let l = limit_runtime::limiter("sim-panics").unwrap();
    let before = l.stats().samples;
    let err = tokio::spawn(panics(true)).await.unwrap_err();
    assert!(err.is_panic());
    assert_eq!(l.active(), 0, "the permit came back");
    assert_eq!(l.stats().samples, before, "a panic is no sample");
    assert_eq!(panics(false).await, 1);
    assert_eq!(l.stats().samples, before + 1);
}

#[test]
fn out_of_range_options_are_clamped_not_a_panic() {
    // min above max, initial above max, min 0: the limit stays in [1, max].
    let l = Limiter::adaptive(
        "sim-clamped",
        5,
        AdaptiveOptions::new().min(10).initial(100),
    );
    assert_eq!((l.limit(), l.max()), (5, 5));
    let l = Limiter::adaptive("sim-clamped-0", 0, AdaptiveOptions::new().min(0).initial(0));
    assert_eq!((l.limit(), l.max()), (1, 1));
    l.set_max(0); // the ceiling never falls below the floor
    assert_eq!(l.limit(), 1);
}

static RESERVE_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

#[derive(Debug)]
struct Busy;

impl From<limit_runtime::Error> for Busy {
    fn from(_: limit_runtime::Error) -> Self {
        Busy
    }
}

#[limited(name = "t-adaptive-reserve", adaptive, initial = 8, max = 100, reserve = 4, overload = |_: &Busy| true)]
async fn reserved_call(_item: u32) -> Result<(), Busy> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    if RESERVE_DOWN.load(std::sync::atomic::Ordering::SeqCst) {
        Err(Busy)
    } else {
        Ok(())
    }
}

/// A batch job alone on an adaptive limiter with a reserve, through an
/// overload: the limit never falls to the reserve (the job would then have
/// no permit, and no call to learn from, for good), and once the service
/// is back the job, which can only fill what the reserve leaves, still
/// counts as using the limit, so the limit climbs again.
#[tokio::test(start_paused = true)]
async fn an_adaptive_limit_stays_above_the_reserve_and_a_job_alone_raises_it() {
    tokio::spawn(async {
        tokio::time::sleep(secs(1)).await;
        RESERVE_DOWN.store(false, std::sync::atomic::Ordering::SeqCst);
    });
    let job = limit_runtime::batch::job(16).run(0..2000u32, reserved_call);
    let report = tokio::time::timeout(secs(600), job)
        .await
        .expect("the job finishes");
    assert_eq!(report.succeeded() + report.failures().len() as u64, 2000);
    assert!(report.succeeded() > 1000, "{}", report.succeeded());
    let s = limit_runtime::limiter("t-adaptive-reserve")
        .unwrap()
        .stats();
    assert_eq!(s.reserve, 4);
    assert_eq!(s.limit_min_seen, 5, "cut to reserve + 1, not below");
    assert!(
        s.limit_max_seen > 8,
        "grew past initial: {}",
        s.limit_max_seen
    );
}

#[tokio::test(start_paused = true)]
async fn raising_the_reserve_lifts_an_adaptive_limit_below_it() {
    let l = Limiter::adaptive("t-adaptive-lift", 100, AdaptiveOptions::new().initial(3));
    assert_eq!(l.limit(), 3);
    l.set_reserve(6);
    assert_eq!(l.limit(), 7);
    l.set_reserve(200); // above the ceiling: the limit stops at it
    assert_eq!(l.limit(), 100);
}
