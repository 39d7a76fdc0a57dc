//! `#[circuit_breaker]` (closed) against `recloser`'s `AsyncRecloser` used
//! as its README shows, and `#[timeout]` against a hand-written
//! `tokio::time::timeout`, on the same body, in one process.
//!
//! `cargo bench --bench breaker` prints a summary of medians over
//! interleaved rounds (ns per call, ratios).

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use limit_runtime::{circuit_breaker, timeout};
use limit_suite::bench::interleaved;
use recloser::{AsyncRecloser, Recloser};
use tokio::runtime::{Builder, Runtime};

#[derive(Debug)]
struct Fail;

impl From<limit_runtime::Error> for Fail {
    fn from(_: limit_runtime::Error) -> Self {
        Fail
    }
}

#[inline(always)]
fn work(x: u64) -> Result<u64, Fail> {
    let v = black_box(x)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(7);
    if black_box(v == 1) {
        Err(Fail)
    } else {
        Ok(v)
    }
}

async fn plain(x: u64) -> Result<u64, Fail> {
    work(x)
}

/// Same thresholds as the attribute below where they mean the same thing.
static RECLOSER: LazyLock<AsyncRecloser> = LazyLock::new(|| {
    AsyncRecloser::from(
        Recloser::custom()
            .error_rate(0.5)
            .closed_len(20)
            .half_open_len(3)
            .open_wait(Duration::from_secs(10))
            .build(),
    )
});

async fn reclosed(x: u64) -> Result<u64, recloser::Error<Fail>> {
    RECLOSER.call(plain(x)).await
}

#[circuit_breaker(name = "bench-breaker")]
async fn broken(x: u64) -> Result<u64, Fail> {
    work(x)
}

async fn hand_timeout(x: u64) -> Result<u64, Fail> {
    match tokio::time::timeout(Duration::from_secs(2), plain(x)).await {
        Ok(r) => r,
        Err(_) => Err(Fail),
    }
}

#[timeout("2s")]
async fn timed(x: u64) -> Result<u64, Fail> {
    work(x)
}

#[derive(Clone, Copy)]
enum V {
    Plain,
    Recloser,
    Breaker,
    HandTimeout,
    Timeout,
}

fn run(rt: &Runtime, v: V, n: u64) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        for i in 0..n {
            let ok = match v {
                V::Plain => plain(i).await.is_ok(),
                V::Recloser => reclosed(i).await.is_ok(),
                V::Breaker => broken(i).await.is_ok(),
                V::HandTimeout => hand_timeout(i).await.is_ok(),
                V::Timeout => timed(i).await.is_ok(),
            };
            black_box(ok);
        }
        start.elapsed()
    })
}

fn main() {
    let rt = Builder::new_current_thread().enable_all().build().unwrap();
    const N: u64 = 200_000;
    let all = [
        V::Plain,
        V::Recloser,
        V::Breaker,
        V::HandTimeout,
        V::Timeout,
    ];
    let ns = interleaved(&all, 21, |v| run(&rt, v, N).as_nanos() as f64 / N as f64);
    println!("breaker and timeout benchmark summary (ns per call, medians; success path)");
    println!(
        "  plain call                                   {:>8.1}",
        ns[0]
    );
    println!(
        "  closed breaker: recloser {:>8.1}   #[circuit_breaker] {:>8.1}   ratio {:.2} (target <= 1.0)",
        ns[1],
        ns[2],
        ns[2] / ns[1]
    );
    println!(
        "  timeout: tokio::time::timeout {:>8.1}   #[timeout] {:>8.1}   ratio {:.2} (target <= 1.05)",
        ns[3],
        ns[4],
        ns[4] / ns[3]
    );
    let b = limit_runtime::breaker("bench-breaker").unwrap();
    assert_eq!(b.state(), limit_runtime::BreakerState::Closed);
}
