//! The batch demonstration's shared code: a simulated user service and
//! address service speaking HTTP on loopback, a client for them (plain and
//! with `#[limited]`, `#[retry]` and `#[coalesce]`), and the batch job.
//!
//! The library of the `limit-examples` package (`limit_demo`), used by
//! `examples/batch.rs`, `examples/service_client.rs` and
//! `examples/tests/batch.rs`; each uses a different part of it.

pub mod cli;
pub mod client;
pub mod data;
pub mod job;
pub mod scale;
pub mod service;

/// SplitMix64 over a seed and a few words: the same inputs always give the
/// same output, whatever order concurrent requests arrive in. Every random
/// choice of the demonstration (input data, latencies, failures) goes through
/// it, so a seed reproduces a run.
pub fn mix(seed: u64, words: &[u64]) -> u64 {
    fn step(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    words.iter().fold(step(seed), |h, &w| step(h ^ w))
}

/// `mix` as a number in [0, 1).
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}
