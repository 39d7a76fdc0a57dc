//! Integrations with the rest of the ecosystem, each behind a cargo
//! feature of its own.
//!
//! | file | feature | part |
//! |---|---|---|
//! | `tower.rs` | `tower` | [`LimitedLayer`](crate::tower::LimitedLayer): a named limiter as a `tower` layer |

#[cfg(feature = "tower")]
pub mod tower;
