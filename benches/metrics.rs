//! What the `metrics` feature costs a `#[limited]` call: build and run this
//! benchmark with and without the feature and compare the figures.
//!
//! ```text
//! cargo bench --bench metrics                      # feature off
//! cargo bench --features metrics --bench metrics   # feature on
//! ```
//!
//! With the feature on, the facade's default recorder (a no-op) is in
//! place unless one is installed, and the run also measures with
//! `metrics::NoopRecorder` installed explicitly for the calling thread.
//! Uncontended: one task calling in a loop. Contended: 64 tasks, `max = 8`,
//! 2 workers, each body yielding once (every call queues, so each records
//! its wait time when the feature is on).

use std::hint::black_box;
use std::time::{Duration, Instant};

use limit_runtime::limited;
use limit_suite::bench::{interleaved, work};
use tokio::runtime::{Builder, Runtime};

const CALLS: u64 = 200_000;
const TASKS: u64 = 64;
const CALLS_PER_TASK: u64 = 2_000;

#[limited(name = "bench-metrics-uncontended", max = 8)]
async fn uncontended_call(x: u64) -> u64 {
    work(x)
}

#[limited(name = "bench-metrics-contended", max = 8)]
async fn contended_call(x: u64) -> u64 {
    tokio::task::yield_now().await;
    work(x)
}

fn uncontended(rt: &Runtime) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..CALLS {
            black_box(uncontended_call(i).await);
        }
        start.elapsed()
    })
}

fn contended(rt: &Runtime) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                tokio::spawn(async move {
                    for i in 0..CALLS_PER_TASK {
                        black_box(contended_call(t * CALLS_PER_TASK + i).await);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    })
}

#[derive(Clone, Copy)]
enum Recorder {
    Default,
    Noop,
}

fn main() {
    let feature = if cfg!(feature = "metrics") {
        "on"
    } else {
        "off"
    };
    let current = Builder::new_current_thread().enable_all().build().unwrap();
    let un = interleaved(&[Recorder::Default, Recorder::Noop], 31, |r| {
        let t = match r {
            Recorder::Default => uncontended(&current),
            Recorder::Noop => {
                metrics::with_local_recorder(&metrics::NoopRecorder, || uncontended(&current))
            }
        };
        t.as_nanos() as f64 / CALLS as f64
    });
    let workers = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let co = interleaved(&[()], 11, |()| contended(&workers).as_secs_f64() * 1e3);
    println!("metrics benchmark (feature {feature}; medians of interleaved rounds)");
    println!("  uncontended #[limited] call, ns: {:.2}", un[0]);
    println!(
        "  uncontended #[limited] call with NoopRecorder installed, ns: {:.2}",
        un[1]
    );
    println!(
        "  contended, {TASKS} tasks x {CALLS_PER_TASK} calls, max 8, ms: {:.2}",
        co[0]
    );
}
