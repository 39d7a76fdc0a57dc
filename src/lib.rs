//! Helpers shared by the workspace-level tests, examples and benchmarks of
//! `limit`. Not published.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts how many bodies run at once and remembers the most seen.
#[derive(Debug, Default)]
pub struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
    total: AtomicUsize,
}

impl Gauge {
    /// A gauge at zero.
    pub const fn new() -> Self {
        Gauge {
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
        }
    }

    /// Marks a body as running until the returned guard is dropped.
    pub fn enter(&self) -> GaugeGuard<'_> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
        GaugeGuard(self)
    }

    /// Bodies running now.
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// The most bodies seen running at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Bodies entered in all.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

/// Leaves the gauge when dropped.
#[derive(Debug)]
pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Benchmark helpers shared by `benches/*.rs`.
pub mod bench {
    /// A few cycles of work the optimizer cannot remove: the body of the
    /// trivial functions and services the benchmarks limit.
    #[inline(always)]
    pub fn work(x: u64) -> u64 {
        std::hint::black_box(x)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(7)
    }

    /// The median of `samples` (the upper one for an even count).
    ///
    /// # Panics
    ///
    /// If `samples` is empty.
    pub fn median(mut samples: Vec<f64>) -> f64 {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    }

    /// Runs `one(v)` for every variant, `rounds` times over, interleaved so
    /// that drift in machine speed affects every variant alike, and returns
    /// each variant's median.
    pub fn interleaved<V: Copy>(
        variants: &[V],
        rounds: usize,
        mut one: impl FnMut(V) -> f64,
    ) -> Vec<f64> {
        let mut samples = vec![Vec::with_capacity(rounds); variants.len()];
        for _ in 0..rounds {
            for (i, v) in variants.iter().enumerate() {
                samples[i].push(one(*v));
            }
        }
        samples.into_iter().map(median).collect()
    }

    /// Resident set size of this process in bytes, from `/proc/self/statm`
    /// (4 KiB pages); 0 where that file does not exist.
    pub fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }
}
