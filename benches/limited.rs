//! `#[limited]` against the strongest peer, a raw `tokio::sync::Semaphore`,
//! and against no limit at all, in one process.
//!
//! `cargo bench --bench limited` runs the criterion groups, then prints a
//! summary table of ratios (interleaved rounds, medians) and the memory
//! cost of a parked caller (each variant measured in a fresh child process).

use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use limit_runtime::limited;
use limit_suite::bench::{interleaved, resident_bytes};
use tokio::runtime::{Builder, Runtime};
use tokio::sync::{Notify, Semaphore};

const MAX: usize = 8;
const TASKS: usize = 4096;
const PARKED: usize = 500_000;

#[inline(always)]
fn work(x: u64) -> u64 {
    black_box(x)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(7)
}

// -- uncontended: one task, calls in a loop --------------------------------

async fn plain(x: u64) -> u64 {
    work(x)
}

static SEM_UNCONTENDED: Semaphore = Semaphore::const_new(MAX);

async fn semaphore(x: u64) -> u64 {
    let _permit = SEM_UNCONTENDED.acquire().await.expect("never closed");
    work(x)
}

#[limited(name = "bench-uncontended", max = 8)]
async fn attribute(x: u64) -> u64 {
    work(x)
}

/// The waiting options cost nothing until a call must wait.
#[limited(name = "bench-uncontended-options", max = 8, wait = "1s", queue = 100)]
async fn attribute_options(x: u64) -> Result<u64, limit_runtime::Error> {
    Ok(work(x))
}

/// An adaptive limit times every call and takes the controller's lock to
/// record it: what that costs when nothing waits.
#[limited(name = "bench-uncontended-adaptive", adaptive, max = 8)]
async fn attribute_adaptive(x: u64) -> u64 {
    work(x)
}

// -- a rate far above the call rate: never throttled -----------------------

/// governor, the way its README shows: a direct limiter and `until_ready`.
/// Same quota as the attribute below: 10⁹ per second, burst 1,000.
static GOVERNOR: std::sync::LazyLock<governor::DefaultDirectRateLimiter> =
    std::sync::LazyLock::new(|| {
        let quota = governor::Quota::per_second(std::num::NonZeroU32::new(1_000_000_000).unwrap())
            .allow_burst(std::num::NonZeroU32::new(1000).unwrap());
        governor::RateLimiter::direct(quota)
    });

async fn governed(x: u64) -> u64 {
    GOVERNOR.until_ready().await;
    work(x)
}

#[limited(name = "bench-rate", rate = "1000000000/s", burst = 1000)]
async fn rated(x: u64) -> u64 {
    work(x)
}

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

fn two_workers() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Plain,
    Semaphore,
    Attribute,
    /// `#[limited(max = 8, wait = "1s", queue = 100)]`
    Options,
    /// governor's `until_ready`
    Governor,
    /// `#[limited(rate = ...)]`
    Rate,
    /// `#[limited(adaptive, max = 8)]`
    Adaptive,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "no limit",
            Variant::Semaphore => "tokio Semaphore",
            Variant::Attribute => "#[limited]",
            Variant::Options => "#[limited] wait+queue",
            Variant::Governor => "governor until_ready",
            Variant::Rate => "#[limited] rate",
            Variant::Adaptive => "#[limited] adaptive",
        }
    }
}

fn uncontended(rt: &Runtime, v: Variant, iters: u64) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        for i in 0..iters {
            let out = match v {
                Variant::Plain => plain(i).await,
                Variant::Semaphore => semaphore(i).await,
                Variant::Attribute => attribute(i).await,
                Variant::Options => attribute_options(i).await.unwrap(),
                Variant::Governor => governed(i).await,
                Variant::Rate => rated(i).await,
                Variant::Adaptive => attribute_adaptive(i).await,
            };
            black_box(out);
        }
        start.elapsed()
    })
}

// -- contended: thousands of tasks on 2 workers, max = 8 -------------------

static SEM_CONTENDED: Semaphore = Semaphore::const_new(MAX);

async fn semaphore_yielding(x: u64) -> u64 {
    let _permit = SEM_CONTENDED.acquire().await.expect("never closed");
    tokio::task::yield_now().await;
    work(x)
}

#[limited(name = "bench-contended", max = 8)]
async fn attribute_yielding(x: u64) -> u64 {
    tokio::task::yield_now().await;
    work(x)
}

async fn plain_yielding(x: u64) -> u64 {
    tokio::task::yield_now().await;
    work(x)
}

fn contended(rt: &Runtime, v: Variant, rounds: u64) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        for _ in 0..rounds {
            let mut tasks = Vec::with_capacity(TASKS);
            for i in 0..TASKS as u64 {
                tasks.push(tokio::spawn(async move {
                    match v {
                        Variant::Plain => plain_yielding(i).await,
                        Variant::Semaphore => semaphore_yielding(i).await,
                        _ => attribute_yielding(i).await,
                    }
                }));
            }
            for t in tasks {
                black_box(t.await.unwrap());
            }
        }
        start.elapsed()
    })
}

// -- contended, in a loop: 64 tasks each calling 5,000 times -----------------

const LOOP_TASKS: u64 = 64;
const LOOP_CALLS: u64 = 5_000;

static SEM_LOOP: Semaphore = Semaphore::const_new(MAX);

async fn semaphore_loop(x: u64) -> u64 {
    let _permit = SEM_LOOP.acquire().await.expect("never closed");
    tokio::task::yield_now().await;
    work(x)
}

#[limited(name = "bench-loop", max = 8)]
async fn attribute_loop(x: u64) -> u64 {
    tokio::task::yield_now().await;
    work(x)
}

fn contended_loop(rt: &Runtime, v: Variant) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..LOOP_TASKS)
            .map(|t| {
                tokio::spawn(async move {
                    let mut acc = 0u64;
                    for i in 0..LOOP_CALLS {
                        acc ^= match v {
                            Variant::Semaphore => semaphore_loop(t * LOOP_CALLS + i).await,
                            _ => attribute_loop(t * LOOP_CALLS + i).await,
                        };
                    }
                    acc
                })
            })
            .collect();
        for t in tasks {
            black_box(t.await.unwrap());
        }
        start.elapsed()
    })
}

fn criterion_groups(c: &mut Criterion) {
    let rt = current_thread();
    let mut g = c.benchmark_group("uncontended");
    g.throughput(Throughput::Elements(1));
    for v in [
        Variant::Plain,
        Variant::Semaphore,
        Variant::Attribute,
        Variant::Options,
        Variant::Governor,
        Variant::Rate,
    ] {
        g.bench_function(v.name(), |b| b.iter_custom(|n| uncontended(&rt, v, n)));
    }
    g.finish();

    let rt = two_workers();
    let mut g = c.benchmark_group("contended_4096_tasks_max_8");
    g.throughput(Throughput::Elements(TASKS as u64));
    g.sample_size(20);
    for v in [Variant::Plain, Variant::Semaphore, Variant::Attribute] {
        g.bench_function(v.name(), |b| b.iter_custom(|n| contended(&rt, v, n)));
    }
    g.finish();
}

// -- memory: resident bytes per parked caller ------------------------------

static SEM_PARKED: Semaphore = Semaphore::const_new(1);
/// Tasks that have run up to their first wait (the count is bumped in the
/// same poll that then parks the task).
static ARRIVED: AtomicUsize = AtomicUsize::new(0);

async fn semaphore_parked(gate: Arc<Notify>) {
    let _permit = SEM_PARKED.acquire().await.expect("never closed");
    gate.notified().await;
}

#[limited(name = "bench-parked", max = 1)]
async fn attribute_parked(gate: Arc<Notify>) {
    gate.notified().await;
}

#[limited(name = "bench-parked-wait", max = 1, wait = "1h")]
async fn attribute_parked_wait(gate: Arc<Notify>) -> Result<(), limit_runtime::Error> {
    gate.notified().await;
    Ok(())
}

static SEM_PARKED_TIMEOUT: Semaphore = Semaphore::const_new(1);

/// What a tokio user writes for the same bounded wait.
async fn semaphore_timeout_parked(gate: Arc<Notify>) {
    let wait = tokio::time::timeout(Duration::from_secs(3600), SEM_PARKED_TIMEOUT.acquire());
    let _permit = wait.await.expect("no timeout").expect("never closed");
    gate.notified().await;
}

/// Runs in a child process: parks `PARKED` callers behind a full limit and
/// prints resident bytes per parked caller.
fn memory_probe(which: &str) {
    let rt = current_thread();
    let per_task = rt.block_on(async move {
        let gate = Arc::new(Notify::new());
        let spawn = |gate: Arc<Notify>| match which {
            "semaphore" => tokio::spawn(async move {
                ARRIVED.fetch_add(1, Ordering::SeqCst);
                semaphore_parked(gate).await
            }),
            "attribute" => tokio::spawn(async move {
                ARRIVED.fetch_add(1, Ordering::SeqCst);
                attribute_parked(gate).await
            }),
            "attribute-wait" => tokio::spawn(async move {
                ARRIVED.fetch_add(1, Ordering::SeqCst);
                let _ = attribute_parked_wait(gate).await;
            }),
            "semaphore-timeout" => tokio::spawn(async move {
                ARRIVED.fetch_add(1, Ordering::SeqCst);
                semaphore_timeout_parked(gate).await
            }),
            _ => tokio::spawn(async move {
                ARRIVED.fetch_add(1, Ordering::SeqCst);
                gate.notified().await
            }),
        };
        // The holder takes the only permit; warm the allocator up.
        let holder = spawn(gate.clone());
        tokio::task::yield_now().await;
        let before = resident_bytes();
        let mut parked = Vec::with_capacity(PARKED);
        for _ in 0..PARKED {
            parked.push(spawn(gate.clone()));
        }
        // Let every task run up to its wait.
        while ARRIVED.load(Ordering::SeqCst) < PARKED + 1 {
            tokio::task::yield_now().await;
        }
        let after = resident_bytes();
        for (w, name) in [
            ("attribute", "bench-parked"),
            ("attribute-wait", "bench-parked-wait"),
        ] {
            if which == w {
                let l = limit_runtime::limiter(name).unwrap();
                assert_eq!(l.waiting(), PARKED, "all callers are parked");
            }
        }
        let per_task = (after - before) as f64 / PARKED as f64;
        for t in parked {
            t.abort();
        }
        holder.abort();
        per_task
    });
    println!("{per_task:.1}");
}

fn memory_of(which: &str) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .env("LIMIT_BENCH_MEMORY", which)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Rate accuracy under the paused clock: 1,000/s over 10 simulated seconds
/// with 10,000 callers waiting from the start. Returns the starts in the
/// first 10 s and the most starts seen in any 1 s window (bound: 1 + 1000).
fn rate_accuracy() -> (usize, usize) {
    let rt = Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let l = limit_runtime::Limiter::private("bench-accuracy", usize::MAX);
        l.set_rate(Some(limit_runtime::Rate::per_second(1000)));
        let t0 = tokio::time::Instant::now();
        let starts = Arc::new(std::sync::Mutex::new(Vec::with_capacity(10_001)));
        let tasks: Vec<_> = (0..10_000)
            .map(|_| {
                let (l, starts) = (l.clone(), starts.clone());
                tokio::spawn(async move {
                    let _p = l.acquire().await;
                    starts.lock().unwrap().push(t0.elapsed());
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let in_ten = starts.lock().unwrap().len();
        for t in tasks {
            t.await.unwrap();
        }
        let mut times = starts.lock().unwrap().clone();
        times.sort();
        let second = Duration::from_secs(1);
        let worst = (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t - times[i] <= second)
                    .count()
            })
            .max()
            .unwrap_or(0);
        (in_ten, worst)
    })
}

fn summary() {
    let rt = current_thread();
    const CALLS: u64 = 200_000;
    let per_call = |v| uncontended(&rt, v, CALLS).as_nanos() as f64 / CALLS as f64;
    let un = interleaved(
        &[
            Variant::Plain,
            Variant::Semaphore,
            Variant::Attribute,
            Variant::Options,
            Variant::Governor,
            Variant::Rate,
            Variant::Adaptive,
        ],
        31,
        per_call,
    );
    let rt = two_workers();
    // A round takes a few milliseconds and rounds vary by ±30 % on a
    // 2-core VM: many of them, so that the median holds still.
    let co = interleaved(
        &[Variant::Plain, Variant::Semaphore, Variant::Attribute],
        101,
        |v| {
            let t = contended(&rt, v, 1);
            TASKS as f64 / t.as_secs_f64()
        },
    );
    let lo = interleaved(&[Variant::Semaphore, Variant::Attribute], 15, |v| {
        contended_loop(&rt, v).as_secs_f64() * 1e3
    });
    let mem: Vec<Option<f64>> = [
        "plain",
        "semaphore",
        "attribute",
        "semaphore-timeout",
        "attribute-wait",
    ]
    .iter()
    .map(|w| memory_of(w))
    .collect();

    println!();
    println!("limit benchmark summary (medians of interleaved rounds; ratio = ours / peer)");
    println!(
        "{:<58} {:>14} {:>14} {:>8}",
        "measure", "peer", "ours", "ratio"
    );
    let row = |what: &str, peer: f64, ours: f64| {
        println!("{what:<58} {peer:>14.2} {ours:>14.2} {:>8.2}", ours / peer);
    };
    println!("  (no limit at all: {:.2} ns per call)", un[0]);
    row(
        "uncontended ns/call: tokio Semaphore vs #[limited]",
        un[1],
        un[2],
    );
    row(
        "uncontended ns/call: Semaphore vs #[limited] wait+queue",
        un[1],
        un[3],
    );
    row(
        "uncontended ns/call: Semaphore vs #[limited] adaptive",
        un[1],
        un[6],
    );
    row(
        "never throttled ns/call: governor vs #[limited] rate",
        un[4],
        un[5],
    );
    row(
        &format!("contended, {TASKS} tasks once each: calls/s (higher)"),
        co[1],
        co[2],
    );
    row(
        &format!("contended, {LOOP_TASKS} tasks x {LOOP_CALLS} calls: ms (lower)"),
        lo[0],
        lo[1],
    );
    let mem_row = |what: &str, peer: Option<f64>, ours: Option<f64>| match (peer, ours) {
        (Some(p), Some(o)) => row(what, p, o),
        _ => println!("{what:<58} {:>14} {:>14}", "n/a", "n/a"),
    };
    if let Some(plain) = mem[0] {
        println!("  (a parked task with no limit: {plain:.0} bytes)");
    }
    mem_row(
        &format!("bytes per parked caller ({PARKED}): Semaphore vs #[limited]"),
        mem[1],
        mem[2],
    );
    mem_row(
        "  with wait: Semaphore (no timeout) vs #[limited] wait",
        mem[1],
        mem[4],
    );
    mem_row(
        "  with wait: timeout(Semaphore) vs #[limited] wait",
        mem[3],
        mem[4],
    );
    let (in_ten, worst) = rate_accuracy();
    println!(
        "rate 1000/s, 10,000 waiting callers, 10 simulated s: {in_ten} starts ({:+.2} % of 10,000), \
         at most {worst} in any 1 s window (bound 1,001)",
        (in_ten as f64 - 10_000.0) / 100.0
    );
}

fn main() {
    if let Ok(which) = std::env::var("LIMIT_BENCH_MEMORY") {
        memory_probe(&which);
        return;
    }
    if let Ok(which) = std::env::var("LIMIT_BENCH_PROFILE") {
        // One contended shape, one side, for a profiler (`perf record`,
        // `valgrind --tool=callgrind`): `loop`, `once`, and each with
        // `-semaphore` for the peer.
        let v = if which.ends_with("-semaphore") {
            Variant::Semaphore
        } else {
            Variant::Attribute
        };
        let rounds: u64 = std::env::var("LIMIT_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(20);
        let rt = two_workers();
        for _ in 0..rounds {
            if which.starts_with("once") {
                black_box(contended(&rt, v, 1));
            } else {
                black_box(contended_loop(&rt, v));
            }
        }
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    criterion_groups(&mut c);
    c.final_summary();
    summary();
}
