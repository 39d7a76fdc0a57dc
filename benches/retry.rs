//! `#[retry]` on the success path against a plain call and against
//! `backon`'s retry of the same function, in one process; then a run with
//! failures under tokio's paused clock, checking that the time slept
//! matches the schedule and the call count is exact.
//!
//! `cargo bench --bench retry`

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use criterion::Criterion;
use limit_runtime::retry;
use limit_suite::bench::interleaved;
use tokio::runtime::{Builder, Runtime};

#[derive(Debug)]
struct Transient;

#[inline(always)]
fn work(x: u64) -> Result<u64, Transient> {
    let v = black_box(x)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(7);
    if black_box(v == 1) {
        Err(Transient)
    } else {
        Ok(v)
    }
}

async fn plain(x: u64) -> Result<u64, Transient> {
    work(x)
}

#[retry(attempts = 3, initial = "100ms")]
async fn attribute(x: u64) -> Result<u64, Transient> {
    work(x)
}

/// backon with the same number of attempts as `#[retry]` above (3).
async fn backon_call(x: u64) -> Result<u64, Transient> {
    (|| async { work(x) })
        .retry(ExponentialBuilder::default().with_max_times(2))
        .await
}

/// backon exactly as its README shows: `(|| f(i)).retry(ExponentialBuilder::default())`.
async fn backon_readme(x: u64) -> Result<u64, Transient> {
    (|| plain(x)).retry(ExponentialBuilder::default()).await
}

#[derive(Clone, Copy)]
enum Variant {
    Plain,
    Attribute,
    Backon,
    BackonReadme,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Plain,
        Variant::Attribute,
        Variant::Backon,
        Variant::BackonReadme,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain call",
            Variant::Attribute => "#[retry]",
            Variant::Backon => "backon, 3 attempts",
            Variant::BackonReadme => "backon, README form",
        }
    }
}

fn rt() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

/// `iters` calls of `f` in a loop of their own: each variant gets its own
/// copy of the loop, so neither a dispatch on the variant inside the loop
/// nor where the compiler places one variant's code beside another's
/// weighs on the figures.
async fn calls<F, Fut>(f: F, iters: u64)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<u64, Transient>>,
{
    for i in 0..iters {
        let _ = black_box(f(i).await);
    }
}

fn success_path(rt: &Runtime, v: Variant, iters: u64) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        match v {
            Variant::Plain => calls(plain, iters).await,
            Variant::Attribute => calls(attribute, iters).await,
            Variant::Backon => calls(backon_call, iters).await,
            Variant::BackonReadme => calls(backon_readme, iters).await,
        }
        start.elapsed()
    })
}

static FAILING_CALLS: AtomicU32 = AtomicU32::new(0);

#[retry(
    attempts = 6,
    initial = "100ms",
    multiplier = 2,
    max_delay = "1s",
    jitter = "none"
)]
async fn always_failing() -> Result<(), Transient> {
    FAILING_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(Transient)
}

/// Under the paused clock: 6 attempts, 5 sleeps of 100, 200, 400, 800,
/// 1000 ms (capped) = 2.5 s of virtual time.
fn failure_schedule() -> (u32, Duration) {
    let rt = Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        FAILING_CALLS.store(0, Ordering::SeqCst);
        let start = tokio::time::Instant::now();
        let _ = always_failing().await;
        (FAILING_CALLS.load(Ordering::SeqCst), start.elapsed())
    })
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let rt = rt();
    let mut g = c.benchmark_group("retry_success_path");
    for v in Variant::ALL {
        g.bench_function(v.name(), |b| b.iter_custom(|n| success_path(&rt, v, n)));
    }
    g.finish();
    c.final_summary();

    // Summary: medians over interleaved rounds.
    const CALLS: u64 = 200_000;
    let med = interleaved(&Variant::ALL, 31, |v| {
        success_path(&rt, v, CALLS).as_nanos() as f64 / CALLS as f64
    });
    println!();
    println!("retry benchmark summary (success path, ns per call, medians)");
    println!(
        "{:<22} {:>10} {:>14}",
        "variant", "ns/call", "vs plain call"
    );
    for (i, v) in Variant::ALL.iter().enumerate() {
        println!(
            "{:<22} {:>10.2} {:>14.2}",
            v.name(),
            med[i],
            med[i] / med[0]
        );
    }
    println!(
        "#[retry] / backon: {:.2} (3 attempts), {:.2} (README form)",
        med[1] / med[2],
        med[1] / med[3]
    );

    let (calls, slept) = failure_schedule();
    println!();
    println!("failure run (paused clock): {calls} calls, {slept:?} slept; expected 6 calls, 2.5s");
    assert_eq!(calls, 6);
    assert_eq!(slept, Duration::from_millis(2500));
}
