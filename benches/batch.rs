//! Online and batch work, and the job driver.
//!
//! `cargo bench --bench batch` prints three tables:
//!
//! 1. Online latency under batch load (paused clock, so the figures are
//!    exact and the same on every machine): a batch of 10,000 calls
//!    saturates a `max = 16` limiter whose bodies take 10 ms, while an
//!    online call arrives every 50 ms. Online wait p50/p99, unloaded, with
//!    the batch in the same FIFO, with classes, with classes and a reserve.
//! 2. Driver memory: peak resident memory of `batch::job(256)` over
//!    10,000,000 items, against `join_all` over 1,000,000 (each in a child
//!    process).
//! 3. Driver overhead per item against `futures::StreamExt::buffer_unordered`
//!    with the same concurrency, same body, same process (ratio).

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use limit_runtime::{batch, Limiter};
use limit_suite::bench::{interleaved, resident_bytes};
use tokio::runtime::Builder;

// -- 1. online latency under batch load --------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Load {
    Unloaded,
    Fifo,
    Classes,
    Reserve,
}

impl Load {
    const ALL: [Load; 4] = [Load::Unloaded, Load::Fifo, Load::Classes, Load::Reserve];

    fn name(self) -> &'static str {
        match self {
            Load::Unloaded => "unloaded",
            Load::Fifo => "batch in the same FIFO",
            Load::Classes => "batch as batch work (classes)",
            Load::Reserve => "classes + reserve = 2",
        }
    }
}

const BODY: Duration = Duration::from_millis(10);

/// Online waits in ms, sorted.
fn online_waits(load: Load) -> Vec<f64> {
    let rt = Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = Limiter::private("bench-online", 16);
        if load == Load::Reserve {
            l.set_reserve(2);
        }
        let backlog: Vec<_> = if load == Load::Unloaded {
            Vec::new()
        } else {
            (0..10_000)
                .map(|_| {
                    let l = l.clone();
                    let call = async move {
                        let _p = l.acquire().await;
                        tokio::time::sleep(BODY).await;
                    };
                    if load == Load::Fifo {
                        tokio::spawn(call)
                    } else {
                        tokio::spawn(batch::scope(call))
                    }
                })
                .collect()
        };
        let waits = Arc::new(Mutex::new(Vec::new()));
        let mut online = Vec::new();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (l, waits) = (l.clone(), waits.clone());
            online.push(tokio::spawn(async move {
                let t0 = tokio::time::Instant::now();
                let _p = l.acquire().await;
                waits.lock().unwrap().push(t0.elapsed().as_secs_f64() * 1e3);
                tokio::time::sleep(BODY).await;
            }));
        }
        for o in online {
            o.await.unwrap();
        }
        for b in backlog {
            b.abort();
        }
        let mut w = waits.lock().unwrap().clone();
        w.sort_by(f64::total_cmp);
        w
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

// -- 2. driver memory ----------------------------------------------------------

const MEMORY_CHILD: &str = "LIMIT_BENCH_BATCH_MEMORY";

async fn item(i: u64) -> Result<u64, ()> {
    tokio::task::yield_now().await;
    Ok(i)
}

/// In a child process: peak resident bytes while running `which`.
fn memory_child(which: &str) {
    let rt = Builder::new_current_thread().enable_all().build().unwrap();
    let before = resident_bytes();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sample = {
        let peak = peak.clone();
        move || {
            peak.fetch_max(resident_bytes(), std::sync::atomic::Ordering::Relaxed);
        }
    };
    rt.block_on(async {
        match which {
            "driver" => {
                let mut n = 0u64;
                let report = batch::job(256)
                    .on_progress(|p| {
                        n = p.done();
                        if n % 100_000 == 0 {
                            sample();
                        }
                    })
                    .run(0..10_000_000u64, item)
                    .await;
                assert_eq!(report.succeeded(), 10_000_000);
            }
            _ => {
                let futs: Vec<_> = (0..1_000_000u64).map(item).collect();
                sample();
                let out = futures::future::join_all(futs).await;
                sample();
                assert_eq!(out.len(), 1_000_000);
            }
        }
    });
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!("{}", peak.saturating_sub(before));
}

fn memory_of(which: &str) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe).env(MEMORY_CHILD, which).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

// -- 3. driver overhead --------------------------------------------------------

#[derive(Clone, Copy)]
enum Driver {
    BufferUnordered,
    Job,
}

fn run_items(rt: &tokio::runtime::Runtime, d: Driver, n: u64) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        match d {
            Driver::BufferUnordered => {
                let ok = stream::iter(0..n)
                    .map(item)
                    .buffer_unordered(256)
                    .filter(|r| std::future::ready(r.is_ok()))
                    .count()
                    .await;
                assert_eq!(ok as u64, n);
            }
            Driver::Job => {
                let report = batch::job(256).run(0..n, item).await;
                assert_eq!(report.succeeded(), n);
            }
        }
        start.elapsed()
    })
}

fn main() {
    if let Ok(which) = std::env::var(MEMORY_CHILD) {
        memory_child(&which);
        return;
    }
    println!("online wait under batch load: max = 16, body 10 ms, 10,000 batch calls queued,");
    println!("one online call every 50 ms (100 calls), paused clock");
    println!("{:<32} {:>12} {:>12}", "", "p50 ms", "p99 ms");
    for load in Load::ALL {
        let w = online_waits(load);
        println!(
            "{:<32} {:>12.1} {:>12.1}",
            load.name(),
            percentile(&w, 0.5),
            percentile(&w, 0.99)
        );
    }

    let driver = memory_of("driver");
    let join_all = memory_of("join_all");
    println!();
    let mib = |b: f64| b / (1024.0 * 1024.0);
    match (driver, join_all) {
        (Some(d), Some(j)) => {
            println!(
                "peak resident memory: batch::job(256) over 10,000,000 items: {:.1} MiB (target <= 64 MiB)",
                mib(d)
            );
            println!(
                "                      join_all over 1,000,000 items:        {:.1} MiB ({:.0} bytes per item)",
                mib(j),
                j / 1e6
            );
        }
        _ => println!("peak resident memory: n/a"),
    }

    let rt = Builder::new_current_thread().enable_all().build().unwrap();
    const N: u64 = 200_000;
    let per_item = interleaved(&[Driver::BufferUnordered, Driver::Job], 11, |d| {
        run_items(&rt, d, N).as_nanos() as f64 / N as f64
    });
    println!();
    println!(
        "driver overhead, ns per item (256 in progress, body yields once): buffer_unordered {:.1}, batch::job {:.1}, ratio {:.2} (target <= 1.0)",
        per_item[0],
        per_item[1],
        per_item[1] / per_item[0]
    );
}
