//! `#[limited]` with `rate`, `burst`, `wait`, `queue` and `reserve`, and
//! the errors they produce. Paused clock: every time below is exact.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use limit_runtime::{batch, limited, retry, ErrorKind, Limiter, Rate};
use tokio::time::{sleep, Instant};

type Starts = Arc<Mutex<Vec<(usize, Duration)>>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The most starts in any window of length `t`, over `starts` (sorted).
fn max_in_window(starts: &[Duration], t: Duration) -> usize {
    let mut best = 0;
    for (i, a) in starts.iter().enumerate() {
        let n = starts[i..].iter().take_while(|b| **b - *a <= t).count();
        best = best.max(n);
    }
    best
}

#[limited(name = "t-rate", rate = "10/s", burst = 3)]
async fn rated(id: usize, t0: Instant, starts: Starts) {
    starts.lock().unwrap().push((id, t0.elapsed()));
}

#[tokio::test(start_paused = true)]
async fn rate_bounds_starts_in_every_window_and_keeps_arrival_order() {
    let starts: Starts = Arc::default();
    let t0 = Instant::now();
    let calls: Vec<_> = (0..53)
        .map(|id| {
            let starts = starts.clone();
            // Spawned in order on a current-thread runtime: they arrive
            // in order.
            tokio::spawn(rated(id, t0, starts))
        })
        .collect();
    for c in calls {
        c.await.unwrap();
    }
    let starts = starts.lock().unwrap().clone();
    let ids: Vec<usize> = starts.iter().map(|s| s.0).collect();
    assert_eq!(ids, (0..53).collect::<Vec<_>>(), "FIFO");
    let times: Vec<Duration> = starts.iter().map(|s| s.1).collect();
    // burst + ⌊t × rate⌋ in every window.
    for t_ms in [0, 1, 99, 100, 150, 250, 999, 1000, 2500] {
        let bound = 3 + (t_ms as usize) / 100;
        assert!(max_in_window(&times, ms(t_ms)) <= bound, "window {t_ms} ms");
    }
    // And the rate is used, not just respected: 3 at once, then one per 100 ms.
    assert_eq!(&times[..3], &[Duration::ZERO; 3]);
    assert_eq!(times[3], ms(100));
    assert_eq!(times[52], ms(5000));
    let l = limit_runtime::limiter("t-rate").unwrap();
    assert_eq!(l.rate(), Some(Rate::per_second(10).with_burst(3)));
    assert_eq!(l.max(), usize::MAX, "a rate alone does not cap concurrency");
}

#[limited(name = "t-rate-burst", rate = "2/s", burst = 4)]
async fn bursty(t0: Instant) -> Duration {
    t0.elapsed()
}

#[tokio::test(start_paused = true)]
async fn burst_comes_back_after_a_quiet_period_and_no_more() {
    let t0 = Instant::now();
    let first: Vec<Duration> = futures::future::join_all((0..6).map(|_| bursty(t0))).await;
    assert_eq!(first, [0, 0, 0, 0, 500, 1000].map(ms));
    sleep(Duration::from_secs(60)).await;
    let t1 = Instant::now();
    let again: Vec<Duration> = futures::future::join_all((0..5).map(|_| bursty(t1))).await;
    assert_eq!(again, [0, 0, 0, 0, 500].map(ms));
}

#[limited(name = "t-rate-default-burst", rate = "4/s")]
async fn even(t0: Instant) -> Duration {
    t0.elapsed()
}

#[tokio::test(start_paused = true)]
async fn default_burst_is_one_so_starts_are_evenly_spaced_from_the_start() {
    let t0 = Instant::now();
    let times = futures::future::join_all((0..4).map(|_| even(t0))).await;
    assert_eq!(times, [0, 250, 500, 750].map(ms));
}

#[limited(name = "t-rate-and-max", max = 2, rate = "100/s", burst = 10)]
async fn both(id: usize, hold: Duration, starts: Starts, t0: Instant) {
    starts.lock().unwrap().push((id, t0.elapsed()));
    sleep(hold).await;
}

#[tokio::test(start_paused = true)]
async fn a_body_starts_only_with_both_a_permit_and_a_rate_slot() {
    let starts: Starts = Arc::default();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|id| {
            let starts = starts.clone();
            tokio::spawn(both(id, ms(1), starts, t0))
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let starts = starts.lock().unwrap().clone();
    let ids: Vec<usize> = starts.iter().map(|s| s.0).collect();
    assert_eq!(
        ids,
        (0..20).collect::<Vec<_>>(),
        "FIFO across rate and concurrency"
    );
    let l = limit_runtime::limiter("t-rate-and-max").unwrap();
    assert_eq!(l.stats().peak_active, 2);
    // Concurrency is the bottleneck (2 per ms) while the burst lasts, then
    // the rate (1 per 10 ms).
    let times: Vec<Duration> = starts.iter().map(|s| s.1).collect();
    assert!(max_in_window(&times, ms(100)) <= 10 + 10);
    assert_eq!(times[19], ms(100), "{times:?}");
}

#[tokio::test(start_paused = true)]
async fn set_rate_changes_a_live_limiter_and_wakes_its_waiters() {
    let l = Limiter::named("t-set-rate", usize::MAX);
    l.set_rate(Some("1/h".parse().unwrap()));
    let t0 = Instant::now();
    let first = l.acquire().await;
    drop(first);
    let waiter = {
        let l = l.clone();
        tokio::spawn(async move {
            let _p = l.acquire().await;
            t0.elapsed()
        })
    };
    sleep(ms(10)).await;
    assert_eq!(l.waiting(), 1);
    // A faster rate lets the waiter in at its next slot; no rate at all
    // lets it in at once.
    l.set_rate(None);
    assert_eq!(waiter.await.unwrap(), ms(10));
    assert_eq!(l.rate(), None);
    l.set_rate(Some(Rate::per_second(50)));
    assert_eq!(l.rate().map(|r| r.to_string()).as_deref(), Some("50/s"));
}

#[derive(Debug)]
enum ApiError {
    Limit(limit_runtime::Error),
}

impl From<limit_runtime::Error> for ApiError {
    fn from(e: limit_runtime::Error) -> Self {
        ApiError::Limit(e)
    }
}

impl ApiError {
    fn limit(&self) -> &limit_runtime::Error {
        match self {
            ApiError::Limit(e) => e,
        }
    }
}

#[limited(name = "t-users", max = 1, wait = "200ms")]
async fn impatient() -> Result<(), ApiError> {
    Ok(())
}

#[limited(name = "t-users", max = 1)]
async fn patient(hold: Duration) -> Result<(), ApiError> {
    sleep(hold).await;
    Ok(())
}

#[limited(name = "t-users", max = 1, queue = 1)]
async fn short_queue() -> Result<(), ApiError> {
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn wait_and_queue_are_per_declaration_on_one_limiter() {
    let holder = tokio::spawn(patient(Duration::from_secs(1)));
    sleep(ms(1)).await;
    let t0 = Instant::now();
    let err = impatient().await.unwrap_err();
    assert_eq!(t0.elapsed(), ms(200), "gave up at exactly `wait`");
    let e = err.limit();
    assert_eq!(e.kind(), ErrorKind::WaitTimeout);
    assert_eq!(e.name(), "t-users");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "limiter \"t-users\": gave up after waiting 200ms for a permit (wait = \"200ms\" at {}:",
            file!()
        )),
        "{text}"
    );
    // The patient function on the same limiter waits as long as it takes.
    let waiter = tokio::spawn(patient(ms(1)));
    sleep(ms(1)).await;
    // One call waits already: queue = 1 refuses at once.
    let t1 = Instant::now();
    let err = short_queue().await.unwrap_err();
    assert_eq!(t1.elapsed(), Duration::ZERO);
    assert_eq!(err.limit().kind(), ErrorKind::QueueFull);
    assert!(
        err.limit()
            .to_string()
            .contains("1 call was already waiting for a permit (queue = 1 at "),
        "{}",
        err.limit()
    );
    holder.await.unwrap().unwrap();
    waiter.await.unwrap().unwrap();
    // Quiet again: the short queue admits.
    short_queue().await.unwrap();
    let s = limit_runtime::limiter("t-users").unwrap().stats();
    assert_eq!((s.rejected_wait, s.rejected_full), (1, 1));
    assert_eq!((s.active, s.waiting), (0, 0));
}

#[limited(max = 1, queue = 0)]
async fn never_waits(hold: Duration) -> std::io::Result<u32> {
    sleep(hold).await;
    Ok(7)
}

#[tokio::test(start_paused = true)]
async fn queue_zero_never_waits_and_io_errors_carry_the_kind() {
    let first = tokio::spawn(never_waits(ms(50)));
    sleep(ms(1)).await;
    let err = never_waits(ms(0)).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Other);
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<limit_runtime::Error>())
        .expect("the limit error is the source");
    assert_eq!(inner.kind(), ErrorKind::QueueFull);
    assert!(
        inner
            .to_string()
            .contains("allows no waiting (queue = 0 at "),
        "{inner}"
    );
    assert_eq!(first.await.unwrap().unwrap(), 7);
    assert_eq!(never_waits(ms(0)).await.unwrap(), 7);
}

#[limited(name = "t-boxed", max = 1, wait = "10ms")]
async fn boxed(hold: Duration) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    sleep(hold).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn boxed_errors_work_and_timed_out_waits_map_to_timed_out() {
    let holder = tokio::spawn(boxed(ms(100)));
    sleep(ms(1)).await;
    let err = boxed(ms(0)).await.unwrap_err();
    let e = err.downcast_ref::<limit_runtime::Error>().unwrap();
    assert_eq!(e.kind(), ErrorKind::WaitTimeout);
    let io: std::io::Error = e.clone().into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    holder.await.unwrap().unwrap();
}

static REFUSED_BODIES: AtomicU32 = AtomicU32::new(0);

#[retry(attempts = 5, initial = "10ms", jitter = "none")]
#[limited(name = "t-refusal-retry", max = 1, queue = 0)]
async fn refused_not_retried(hold: Duration) -> Result<(), ApiError> {
    REFUSED_BODIES.fetch_add(1, Ordering::SeqCst);
    sleep(hold).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn refusals_are_never_retried() {
    let holder = tokio::spawn(refused_not_retried(Duration::from_secs(1)));
    sleep(ms(1)).await;
    let t0 = Instant::now();
    let err = refused_not_retried(ms(0)).await.unwrap_err();
    assert_eq!(err.limit().kind(), ErrorKind::QueueFull);
    assert_eq!(t0.elapsed(), Duration::ZERO, "no backoff sleep");
    assert_eq!(
        REFUSED_BODIES.load(Ordering::SeqCst),
        1,
        "only the holder ran"
    );
    let stats = limit_runtime::retry::stats();
    let mine = stats
        .iter()
        .find(|s| s.name.ends_with("::refused_not_retried"))
        .unwrap();
    assert_eq!((mine.calls, mine.retries), (2, 0));
    holder.await.unwrap().unwrap();
}

static FLAKY: AtomicU32 = AtomicU32::new(0);

#[retry(attempts = 3, initial = "1s", jitter = "none")]
#[limited(name = "t-retry-rate", rate = "1/100ms")]
async fn flaky_rated(starts: Starts, t0: Instant) -> Result<(), String> {
    starts.lock().unwrap().push((0, t0.elapsed()));
    if FLAKY.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err("first attempt fails".into());
    }
    Ok(())
}

#[limited(name = "t-retry-rate", rate = "1/100ms")]
async fn other_rated(starts: Starts, t0: Instant) {
    starts.lock().unwrap().push((1, t0.elapsed()));
}

#[tokio::test(start_paused = true)]
async fn a_retry_sleep_holds_no_rate_slot() {
    let starts: Starts = Arc::default();
    let t0 = Instant::now();
    let retried = tokio::spawn(flaky_rated(starts.clone(), t0));
    sleep(ms(1)).await;
    // While the first call sleeps 1 s before its retry, another call of
    // the same limiter starts at its own slot.
    other_rated(starts.clone(), t0).await;
    retried.await.unwrap().unwrap();
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts, [(0, ms(0)), (1, ms(100)), (0, ms(1000))]);
}

#[limited(name = "t-dropped", max = 1, wait = "5s")]
async fn dropped_waiter(hold: Duration) -> Result<(), ApiError> {
    sleep(hold).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_with_a_deadline_leaves_nothing_behind() {
    let holder = tokio::spawn(dropped_waiter(ms(100)));
    sleep(ms(1)).await;
    let waiters: Vec<_> = (0..10)
        .map(|_| tokio::spawn(dropped_waiter(ms(0))))
        .collect();
    sleep(ms(1)).await;
    let l = limit_runtime::limiter("t-dropped").unwrap();
    assert_eq!(l.waiting(), 10);
    for w in &waiters {
        w.abort();
    }
    for w in waiters {
        assert!(w.await.unwrap_err().is_cancelled());
    }
    assert_eq!(l.waiting(), 0);
    holder.await.unwrap().unwrap();
    assert_eq!((l.active(), l.available()), (0, 1));
    // Nothing fires later: a whole deadline passes quietly.
    sleep(Duration::from_secs(10)).await;
    assert_eq!(l.stats().rejected_wait, 0);
}

#[limited(name = "t-classes", max = 1)]
async fn classed(id: usize, order: Arc<Mutex<Vec<usize>>>) {
    order.lock().unwrap().push(id);
    sleep(ms(10)).await;
}

#[tokio::test(start_paused = true)]
async fn online_waiters_start_before_queued_batch_waiters_and_batch_stays_fifo() {
    let order: Arc<Mutex<Vec<usize>>> = Arc::default();
    let mut tasks = Vec::new();
    for id in 0..5 {
        let order = order.clone();
        tasks.push(tokio::spawn(batch::scope(classed(id, order))));
        tokio::task::yield_now().await;
    }
    for id in 100..103 {
        let order = order.clone();
        tasks.push(tokio::spawn(classed(id, order)));
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Batch 0 was running; the three online calls overtook batch 1..4.
    assert_eq!(*order.lock().unwrap(), [0, 100, 101, 102, 1, 2, 3, 4]);
}

#[limited(name = "t-reserve", max = 4, reserve = 1)]
async fn reserved(hold: Duration) {
    sleep(hold).await;
}

#[tokio::test(start_paused = true)]
async fn reserve_keeps_a_permit_for_online_work_while_a_batch_saturates() {
    let batch_calls: Vec<_> = (0..50)
        .map(|_| tokio::spawn(batch::scope(reserved(ms(100)))))
        .collect();
    sleep(ms(1)).await;
    let l = limit_runtime::limiter("t-reserve").unwrap();
    assert_eq!((l.active(), l.batch_active(), l.reserve()), (3, 3, 1));
    let t0 = Instant::now();
    reserved(ms(5)).await;
    assert_eq!(t0.elapsed(), ms(5), "the online call started at once");
    for c in batch_calls {
        c.await.unwrap();
    }
    assert_eq!(l.stats().peak_active, 4);
}

#[tokio::test(start_paused = true)]
async fn rate_accuracy_over_ten_simulated_seconds_with_ten_thousand_waiters() {
    let l = Limiter::named("t-accuracy", usize::MAX);
    l.set_rate(Some(Rate::per_second(1000)));
    let t0 = Instant::now();
    let starts: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let (l, starts) = (l.clone(), starts.clone());
            tokio::spawn(async move {
                let _p = l.acquire().await;
                starts.lock().unwrap().push(t0.elapsed());
            })
        })
        .collect();
    sleep(Duration::from_secs(10)).await;
    let started = starts.lock().unwrap().len();
    // 1 at t = 0, then one per ms: 10,001 by t = 10 s, or 10,000 if the
    // last is still pending. Within 0.5 % of 10,000.
    assert!((9_950..=10_050).contains(&started), "{started}");
    for t in tasks {
        t.await.unwrap();
    }
    let mut times = starts.lock().unwrap().clone();
    times.sort();
    for t_ms in [0u64, 1, 10, 100, 1000] {
        assert!(max_in_window(&times[..2000], ms(t_ms)) <= 1 + t_ms as usize);
    }
}

#[limited(name = "t-rate-conflict", rate = "10/s")]
async fn conflict_a() {}

#[limited(name = "t-rate-conflict", rate = "10/s", burst = 5)]
async fn conflict_b() {}

#[tokio::test]
async fn declarations_that_disagree_on_rate_or_burst_panic_in_debug_builds() {
    conflict_a().await;
    let err = tokio::spawn(conflict_b()).await.unwrap_err();
    let msg = err.into_panic();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    let file = file!();
    assert!(
        msg.contains("limiter \"t-rate-conflict\" is declared twice with different options"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("rate = \"10/s\" at {file}:")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("rate = \"10/s\", burst = 5 at {file}:")),
        "{msg}"
    );
}
