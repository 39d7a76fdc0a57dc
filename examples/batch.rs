//! Two functions share one named limit from a thousand concurrent tasks.
//!
//! `cargo run --release --example batch` prints, for each function, how many
//! calls ran and the most that ran at once, and the limiter's own counters:
//! the limit holds across both functions together, and is reached.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use limit_runtime::limited;

/// Bodies of both functions running now, and the most seen at once.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A user lookup: 2 ms of "network".
#[limited(name = "directory", max = 10)]
async fn fetch_user(id: u64) -> String {
    let _g = InFlight::enter();
    tokio::time::sleep(Duration::from_millis(2)).await;
    format!("user-{id}")
}

/// An address lookup against the same service, deeper in the call graph.
#[limited(name = "directory", max = 10)]
async fn fetch_address(user: &str) -> String {
    let _g = InFlight::enter();
    tokio::time::sleep(Duration::from_millis(3)).await;
    format!("{user}@street")
}

async fn process(id: u64) -> String {
    let user = fetch_user(id).await;
    fetch_address(&user).await
}

#[tokio::main]
async fn main() {
    let items: u64 = std::env::args()
        .skip_while(|a| a != "--items")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let start = Instant::now();
    let tasks: Vec<_> = (0..items).map(|id| tokio::spawn(process(id))).collect();
    let mut done = 0;
    for t in tasks {
        t.await.expect("task panicked");
        done += 1;
    }
    let elapsed = start.elapsed();
    let l = limit_runtime::limiter("directory").expect("used above");
    let s = l.stats();
    println!("{done} items, {} calls in {elapsed:.2?}", s.acquired);
    println!("limiter \"{}\": max {}", s.name, s.max);
    println!(
        "  peak bodies running at once (both functions): {}",
        PEAK.load(Ordering::SeqCst)
    );
    println!(
        "  peak seen by the limiter:                     {}",
        s.peak_active
    );
    println!(
        "  calls that queued: {} (longest wait {:.2?})",
        s.waited, s.wait_max
    );
    assert!(PEAK.load(Ordering::SeqCst) <= s.max, "the limit held");
}
