//! `LimitedLayer` against tower's own `ConcurrencyLimitLayer` around the
//! same trivial service, in one process (cargo feature `tower`).
//!
//! `cargo bench --features tower --bench tower` prints a summary of
//! medians over interleaved rounds: one task calling in a loop
//! (uncontended), and 64 tasks calling in a loop on 2 workers with a limit
//! of 8 (contended; the service yields once while it holds the permit).

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use limit_runtime::limited;
use limit_runtime::tower::LimitedLayer;
use limit_suite::bench::{interleaved, work};
use tokio::runtime::{Builder, Runtime};
use tower::limit::ConcurrencyLimitLayer;
use tower::{service_fn, Layer, Service, ServiceExt};

const MAX: usize = 8;
const TASKS: usize = 64;
const CALLS_PER_TASK: u64 = 2_000;

#[derive(Clone, Copy, Debug)]
enum Variant {
    /// The service alone.
    Bare,
    /// `tower::limit::ConcurrencyLimitLayer::new(8)`.
    Tower,
    /// `LimitedLayer::new(name, 8)`.
    Ours,
    /// The service called from a `#[limited(max = 8)]` function.
    Attribute,
}

#[limited(name = "bench-tower-attribute", max = 8)]
async fn call_limited<S>(svc: &mut S, x: u64) -> u64
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(x).await.unwrap()
}

/// Calls `svc` from a `#[limited]` function `calls` times in a loop.
async fn drive_attribute<S>(mut svc: S, calls: u64, first: u64)
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    for i in first..first + calls {
        black_box(call_limited(&mut svc, i).await);
    }
}

/// Calls `svc` `calls` times in a loop: ready, then call.
async fn drive<S>(mut svc: S, calls: u64, first: u64)
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    for i in first..first + calls {
        let out = svc.ready().await.unwrap().call(i).await.unwrap();
        black_box(out);
    }
}

fn uncontended(rt: &Runtime, v: Variant, calls: u64) -> Duration {
    let svc = service_fn(|x: u64| async move { Ok::<_, Infallible>(work(x)) });
    rt.block_on(async move {
        let start = Instant::now();
        match v {
            Variant::Bare => drive(svc, calls, 0).await,
            Variant::Tower => drive(ConcurrencyLimitLayer::new(MAX).layer(svc), calls, 0).await,
            Variant::Ours => {
                let layer = LimitedLayer::new("bench-tower-uncontended", MAX);
                drive(layer.layer(svc), calls, 0).await;
            }
            Variant::Attribute => drive_attribute(svc, calls, 0).await,
        }
        start.elapsed()
    })
}

fn contended(rt: &Runtime, v: Variant) -> Duration {
    let svc = service_fn(|x: u64| async move {
        tokio::task::yield_now().await; // holds the permit across a yield
        Ok::<_, Infallible>(work(x))
    });
    // One limit for all the tasks, as tower users share one: a service
    // built once and cloned (clones share its semaphore). A layer applied
    // per task would give each task a limit of its own.
    let tower = ConcurrencyLimitLayer::new(MAX).layer(svc);
    let ours = LimitedLayer::new("bench-tower-contended", MAX).layer(svc);
    rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS as u64)
            .map(|t| {
                let first = t * CALLS_PER_TASK;
                match v {
                    Variant::Bare => tokio::spawn(drive(svc, CALLS_PER_TASK, first)),
                    Variant::Tower => tokio::spawn(drive(tower.clone(), CALLS_PER_TASK, first)),
                    Variant::Ours => tokio::spawn(drive(ours.clone(), CALLS_PER_TASK, first)),
                    Variant::Attribute => tokio::spawn(drive_attribute(svc, CALLS_PER_TASK, first)),
                }
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    })
}

fn main() {
    let profile = std::env::var("LIMIT_BENCH_PROFILE").ok();
    if let Some(variant) = profile
        .as_deref()
        .and_then(|p| p.strip_prefix("uncontended"))
    {
        // The uncontended layer (or, with `uncontended-tower`, tower's),
        // long, for a profiler.
        let v = if variant == "-tower" {
            Variant::Tower
        } else {
            Variant::Ours
        };
        let current = Builder::new_current_thread().enable_all().build().unwrap();
        black_box(uncontended(&current, v, 50_000_000));
        return;
    }
    if let Some(which) = profile {
        // One contended variant, long, for a profiler: the layer, or with
        // `-tower` tower's, with `-attribute` a `#[limited]` function.
        let v = match which.rsplit('-').next() {
            Some("tower") => Variant::Tower,
            Some("attribute") => Variant::Attribute,
            _ => Variant::Ours,
        };
        let rounds = std::env::var("LIMIT_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(20);
        let workers = Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        for _ in 0..rounds {
            black_box(contended(&workers, v));
        }
        return;
    }
    const CALLS: u64 = 200_000;
    let current = Builder::new_current_thread().enable_all().build().unwrap();
    let all = [
        Variant::Bare,
        Variant::Tower,
        Variant::Ours,
        Variant::Attribute,
    ];
    let un = interleaved(&all, 31, |v| {
        uncontended(&current, v, CALLS).as_nanos() as f64 / CALLS as f64
    });
    let workers = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let co = interleaved(&all, 11, |v| contended(&workers, v).as_secs_f64() * 1e3);

    println!("tower layer benchmark summary (medians of interleaved rounds; ratio = ours / peer)");
    println!(
        "{:<62} {:>10} {:>10} {:>8}",
        "measure", "peer", "ours", "ratio"
    );
    println!("  (the service alone: {:.2} ns per call)", un[0]);
    println!(
        "{:<62} {:>10.2} {:>10.2} {:>8.2}",
        "uncontended ns/call: ConcurrencyLimitLayer vs LimitedLayer",
        un[1],
        un[2],
        un[2] / un[1]
    );
    println!(
        "  (the same service called from a #[limited] fn: {:.2} ns per call)",
        un[3]
    );
    println!("  (the service alone, contended: {:.2} ms)", co[0]);
    println!(
        "{:<62} {:>10.2} {:>10.2} {:>8.2}",
        format!("contended, {TASKS} tasks x {CALLS_PER_TASK} calls, max {MAX}: ms"),
        co[1],
        co[2],
        co[2] / co[1]
    );
    println!(
        "  (the same service called from a #[limited] fn, contended: {:.2} ms)",
        co[3]
    );
}
