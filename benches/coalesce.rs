//! `limit_runtime::coalesce::Group` against `async_singleflight::Group` 0.6.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-coalesce cargo bench --bench coalesce
//! ```
//!
//! 1. leader path: N distinct keys in flight at once, every call a leader;
//! 2. fan-in: one key, 10,000 callers piled up behind one leader (CPU time
//!    of all threads: the leader's body sleeps until everybody has joined);
//! 3. memory: resident bytes per in-flight key, 200,000 keys parked on a
//!    `Notify` (each measured in a fresh child process, so freed memory of
//!    one run cannot be reused by the next).
//!
//! Everything runs on a hand-built multi-thread runtime with 2 workers. The
//! table at the end gives our mean time (or bytes) over the other crate's.

use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use futures::future::join_all;
use limit_runtime::coalesce::Group;
use limit_suite::bench::{median, resident_bytes};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

type Theirs = async_singleflight::Group<u64, u64, ()>;

const MEMORY_CHILD: &str = "LIMIT_COALESCE_BENCH_MEMORY";
const MEMORY_KEYS: u64 = 200_000;
const FAN_IN: usize = 10_000;
const WORKERS: usize = 2;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Mean time per operation of each measured case, in ns: (total, operations).
static MEANS: Mutex<BTreeMap<String, (f64, f64)>> = Mutex::new(BTreeMap::new());

fn record(case: String, elapsed: Duration, ops: u64) {
    let mut means = MEANS.lock().unwrap();
    let e = means.entry(case).or_default();
    e.0 += elapsed.as_nanos() as f64;
    e.1 += ops as f64;
}

fn mean(case: &str) -> Option<f64> {
    MEANS.lock().unwrap().get(case).map(|(t, n)| t / n)
}

/// Runs `calls(half)` in `WORKERS` tasks at once and waits for all.
async fn on_all_workers<F, Fut>(calls: F)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = (0..WORKERS).map(|w| tokio::spawn(calls(w))).collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Every call a leader: `n` distinct keys in flight at once, each body
/// yielding once so that all of them are in the map together.
fn leader_path(c: &mut Criterion, rt: &Runtime) {
    let mut bench = c.benchmark_group("leader path");
    for n in [1_000_u64, 10_000] {
        let per_task = n / WORKERS as u64;
        let next_key = Arc::new(AtomicU64::new(0));

        let ours = Arc::new(Group::<u64, u64>::new());
        bench.bench_with_input(BenchmarkId::new("limit", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let base = next_key.fetch_add(n, Relaxed);
                    rt.block_on(on_all_workers(|w| {
                        let group = ours.clone();
                        let from = base + w as u64 * per_task;
                        async move {
                            join_all((from..from + per_task).map(|k| {
                                group.run(k, async move {
                                    tokio::task::yield_now().await;
                                    k
                                })
                            }))
                            .await;
                        }
                    }));
                }
                let elapsed = start.elapsed();
                record(format!("leader/{n}/limit"), elapsed, iters * n);
                elapsed
            })
        });
        assert!(ours.is_empty());

        let theirs = Arc::new(Theirs::new());
        bench.bench_with_input(BenchmarkId::new("async_singleflight", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let base = next_key.fetch_add(n, Relaxed);
                    rt.block_on(on_all_workers(|w| {
                        let group = theirs.clone();
                        let from = base + w as u64 * per_task;
                        async move {
                            join_all((from..from + per_task).map(|k| {
                                let group = &group;
                                async move {
                                    group
                                        .work(&k, async move {
                                            tokio::task::yield_now().await;
                                            Ok::<u64, ()>(k)
                                        })
                                        .await
                                }
                            }))
                            .await;
                        }
                    }));
                }
                let elapsed = start.elapsed();
                record(format!("leader/{n}/async_singleflight"), elapsed, iters * n);
                elapsed
            })
        });

        // The same calls without any group: the cost of the harness itself.
        bench.bench_with_input(BenchmarkId::new("no group", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let base = next_key.fetch_add(n, Relaxed);
                    rt.block_on(on_all_workers(|w| {
                        let from = base + w as u64 * per_task;
                        async move {
                            join_all((from..from + per_task).map(|k| async move {
                                tokio::task::yield_now().await;
                                black_box(k)
                            }))
                            .await;
                        }
                    }));
                }
                let elapsed = start.elapsed();
                record(format!("leader/{n}/baseline"), elapsed, iters * n);
                elapsed
            })
        });
    }
    bench.finish();
}

/// Time the leader's body keeps running after the last caller arrived, so
/// that every caller has joined (async_singleflight's callers queue on an
/// async mutex first) before the output is published.
const SETTLE: Duration = Duration::from_millis(20);

/// One fan-in round: callers count themselves in on their first poll; the
/// one that completes the count releases the leader's body.
#[derive(Default)]
struct Round {
    arrived: AtomicUsize,
    all_in: Notify,
}

impl Round {
    fn arrive(&self) {
        if self.arrived.fetch_add(1, Relaxed) + 1 == FAN_IN {
            self.all_in.notify_one();
        }
    }

    /// The body: waits for every caller, then `SETTLE`. Counts its runs.
    fn body(
        self: &Arc<Self>,
        runs: &Arc<AtomicUsize>,
    ) -> impl Future<Output = u64> + Send + 'static {
        let (round, runs) = (self.clone(), runs.clone());
        async move {
            runs.fetch_add(1, Relaxed);
            if round.arrived.load(Relaxed) < FAN_IN {
                round.all_in.notified().await;
            }
            tokio::time::sleep(SETTLE).await;
            42
        }
    }
}

/// CPU time used by all threads of this process so far (Linux schedstat).
fn cpu_time() -> Duration {
    let mut ns = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task (Linux only)") {
        let path = task.unwrap().path().join("schedstat");
        if let Ok(stat) = std::fs::read_to_string(path) {
            ns += stat
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    Duration::from_nanos(ns)
}

/// One key, `FAN_IN` callers (half on each worker). The leader's body sleeps
/// while the others pile up, so the time measured is the CPU time of all
/// threads (joining, waking, handing out clones), not wall time.
fn fan_in(c: &mut Criterion, rt: &Runtime) {
    let mut bench = c.benchmark_group("fan-in (CPU time)");
    let per_task = FAN_IN / WORKERS;
    let n = FAN_IN as u64;
    let runs = Arc::new(AtomicUsize::new(0));

    let ours = Arc::new(Group::<u64, u64>::new());
    let mut rounds = 0;
    bench.bench_with_input(BenchmarkId::new("limit", n), &n, |b, _| {
        b.iter_custom(|iters| {
            let start = cpu_time();
            for _ in 0..iters {
                let round = Arc::new(Round::default());
                rt.block_on(on_all_workers(|_| {
                    let (group, round, runs) = (ours.clone(), round.clone(), runs.clone());
                    async move {
                        join_all((0..per_task).map(|_| {
                            let body = round.body(&runs);
                            let (group, round) = (&group, &round);
                            async move {
                                round.arrive(); // on the first poll, which joins the key
                                group.run(7, body).await
                            }
                        }))
                        .await;
                    }
                }));
            }
            rounds += iters;
            let elapsed = cpu_time() - start;
            record("fan-in/limit".into(), elapsed, iters * n);
            elapsed
        })
    });
    let ours_runs = runs.swap(0, Relaxed) as f64 / rounds as f64;

    let theirs = Arc::new(Theirs::new());
    let mut rounds = 0;
    bench.bench_with_input(BenchmarkId::new("async_singleflight", n), &n, |b, _| {
        b.iter_custom(|iters| {
            let start = cpu_time();
            for _ in 0..iters {
                let round = Arc::new(Round::default());
                rt.block_on(on_all_workers(|_| {
                    let (group, round, runs) = (theirs.clone(), round.clone(), runs.clone());
                    async move {
                        join_all((0..per_task).map(|_| {
                            let body = round.body(&runs);
                            let (group, round) = (&group, &round);
                            async move {
                                round.arrive();
                                group
                                    .work(&7_u64, async { Ok::<u64, ()>(body.await) })
                                    .await
                            }
                        }))
                        .await;
                    }
                }));
            }
            rounds += iters;
            let elapsed = cpu_time() - start;
            record("fan-in/async_singleflight".into(), elapsed, iters * n);
            elapsed
        })
    });
    let theirs_runs = runs.swap(0, Relaxed) as f64 / rounds as f64;
    bench.finish();
    eprintln!(
        "fan-in: bodies run per round of {FAN_IN} callers: limit {ours_runs:.2}, async_singleflight {theirs_runs:.2}"
    );
}

/// In a child process: parks `MEMORY_KEYS` leader tasks (distinct keys) on a
/// `Notify` and prints the growth of the resident set per key.
fn memory_child(which: &str) {
    let rt = runtime();
    let notify = Arc::new(Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    let ours = Arc::new(Group::<u64, u64>::new());
    let theirs = Arc::new(Theirs::new());
    // Warm the runtime and the allocator up before the first reading.
    rt.block_on(async { tokio::spawn(async {}).await.unwrap() });
    let mut handles = Vec::with_capacity(MEMORY_KEYS as usize);
    let before = resident_bytes();
    rt.block_on(async {
        for k in 0..MEMORY_KEYS {
            let (notify, started) = (notify.clone(), started.clone());
            let body = async move {
                let parked = notify.notified();
                started.fetch_add(1, Relaxed);
                parked.await;
                k
            };
            handles.push(match which {
                "limit" => {
                    let group = ours.clone();
                    tokio::spawn(async move { group.run(k, body).await })
                }
                "async_singleflight" => {
                    let group = theirs.clone();
                    tokio::spawn(async move {
                        group
                            .work(&k, async { Ok::<u64, ()>(body.await) })
                            .await
                            .unwrap()
                    })
                }
                _ => tokio::spawn(body),
            });
        }
        while started.load(Relaxed) < MEMORY_KEYS as usize {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let after = resident_bytes();
    if which == "limit" {
        assert_eq!(ours.len(), MEMORY_KEYS as usize);
    }
    println!("{}", (after - before) as f64 / MEMORY_KEYS as f64);
    // Release everybody and check that they finish.
    rt.block_on(async {
        notify.notify_waiters();
        for h in handles {
            h.await.unwrap();
        }
    });
}

fn memory_per_key(which: &str) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(MEMORY_CHILD, which)
        .output()
        .expect("run the memory child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn main() {
    if let Ok(which) = std::env::var(MEMORY_CHILD) {
        memory_child(&which);
        return;
    }
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let rt = runtime();
    leader_path(&mut c, &rt);
    fan_in(&mut c, &rt);
    c.final_summary();

    // Three rounds each, median, to smooth out allocator noise.
    let median = |which: &str| median((0..3).map(|_| memory_per_key(which)).collect());
    let (mem_ours, mem_theirs, mem_base) = (
        median("limit"),
        median("async_singleflight"),
        median("baseline"),
    );

    let row = |name: &str, ours: f64, theirs: f64, unit: &str| {
        eprintln!(
            "{name:<40} {ours:>10.1} {theirs:>20.1}   {:>6.2}   {unit}",
            ours / theirs
        );
    };
    eprintln!();
    eprintln!("limit::coalesce::Group vs async_singleflight 0.6 ({WORKERS} worker threads; ratio = ours / theirs)");
    eprintln!(
        "{:<40} {:>10} {:>20}   {:>6}",
        "case", "limit", "async_singleflight", "ratio"
    );
    for n in [1_000, 10_000] {
        let (ours, theirs) = (
            mean(&format!("leader/{n}/limit")),
            mean(&format!("leader/{n}/async_singleflight")),
        );
        let base = mean(&format!("leader/{n}/baseline"));
        if let (Some(ours), Some(theirs), Some(base)) = (ours, theirs, base) {
            row(&format!("leader path, {n} keys"), ours, theirs, "ns/call");
            row(
                &format!("leader path, {n} keys, net of harness"),
                ours - base,
                theirs - base,
                "ns/call",
            );
        }
    }
    if let (Some(ours), Some(theirs)) = (mean("fan-in/limit"), mean("fan-in/async_singleflight")) {
        row(
            &format!("fan-in, 1 key, {FAN_IN} callers"),
            ours,
            theirs,
            "ns CPU/caller",
        );
    }
    row(
        &format!("memory, {MEMORY_KEYS} keys in flight"),
        mem_ours,
        mem_theirs,
        "bytes/key (RSS)",
    );
    row(
        "memory, net of the parked task",
        mem_ours - mem_base,
        mem_theirs - mem_base,
        "bytes/key (RSS)",
    );
}
