//! Integrations with the rest of the ecosystem, each behind a cargo
//! feature of its own.
//!
//! | file | feature | part |
//! |---|---|---|
//! | `tower.rs` | `tower` | [`LimitedLayer`](crate::tower::LimitedLayer): a named limiter as a `tower` layer |
//! | `metrics.rs` | `metrics` | every limiter, breaker, `#[retry]` and `#[coalesce]` function through the `metrics` facade |

#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "metrics")]
pub mod metrics;
