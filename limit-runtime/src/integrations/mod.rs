//! Integrations with the rest of the ecosystem, each behind a cargo
//! feature of its own.
//!
//! | file | feature | part |
//! |---|---|---|
//! | `tower/` | `tower` | [`LimitedLayer`](crate::tower::LimitedLayer) and [`CircuitBreakerLayer`](crate::tower::CircuitBreakerLayer): a named limiter or breaker as a `tower` layer |
//! | `metrics.rs` | `metrics` | every limiter, breaker, `#[retry]` and `#[coalesce]` function through the `metrics` facade |

#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "metrics")]
pub mod metrics;
