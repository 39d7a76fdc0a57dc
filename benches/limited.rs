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
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "no limit",
            Variant::Semaphore => "tokio Semaphore",
            Variant::Attribute => "#[limited]",
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
                        Variant::Attribute => attribute_yielding(i).await,
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

fn criterion_groups(c: &mut Criterion) {
    let rt = current_thread();
    let mut g = c.benchmark_group("uncontended");
    g.throughput(Throughput::Elements(1));
    for v in [Variant::Plain, Variant::Semaphore, Variant::Attribute] {
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
        if which == "attribute" {
            let l = limit_runtime::limiter("bench-parked").unwrap();
            assert_eq!(l.waiting(), PARKED, "all callers are parked");
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

fn summary() {
    let variants = [Variant::Plain, Variant::Semaphore, Variant::Attribute];
    let rt = current_thread();
    const CALLS: u64 = 200_000;
    let un = interleaved(&variants, 31, |v| {
        uncontended(&rt, v, CALLS).as_nanos() as f64 / CALLS as f64
    });
    let rt = two_workers();
    let co = interleaved(&variants, 15, |v| {
        let t = contended(&rt, v, 1);
        TASKS as f64 / t.as_secs_f64()
    });
    let mem: Vec<Option<f64>> = ["plain", "semaphore", "attribute"]
        .iter()
        .map(|w| memory_of(w))
        .collect();

    println!();
    println!("limit benchmark summary (medians; ratio = #[limited] / tokio Semaphore)");
    println!(
        "{:<44} {:>12} {:>16} {:>12} {:>8}",
        "measure", "no limit", "tokio Semaphore", "#[limited]", "ratio"
    );
    println!(
        "{:<44} {:>12.2} {:>16.2} {:>12.2} {:>8.2}",
        "uncontended, ns per call (lower is better)",
        un[0],
        un[1],
        un[2],
        un[2] / un[1]
    );
    println!(
        "{:<44} {:>12.0} {:>16.0} {:>12.0} {:>8.2}",
        format!("contended {TASKS} tasks max {MAX}, calls/s (higher)"),
        co[0],
        co[1],
        co[2],
        co[2] / co[1]
    );
    let fmt = |m: Option<f64>| m.map_or("n/a".to_owned(), |m| format!("{m:.0}"));
    let ratio = match (mem[1], mem[2]) {
        (Some(s), Some(a)) => format!("{:.2}", a / s),
        _ => "n/a".to_owned(),
    };
    println!(
        "{:<44} {:>12} {:>16} {:>12} {:>8}",
        format!("bytes per parked caller ({PARKED}, lower)"),
        fmt(mem[0]),
        fmt(mem[1]),
        fmt(mem[2]),
        ratio
    );
}

fn main() {
    if let Ok(which) = std::env::var("LIMIT_BENCH_MEMORY") {
        memory_probe(&which);
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
