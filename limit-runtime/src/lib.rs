#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod limiter;
mod sem;

pub use limiter::{limiter, limiters, Acquire, Limiter, LimiterStats, Permit, StaticLimiter};

#[cfg(feature = "macros")]
pub use limit_macros::limited;

/// Items the attribute macros expand to. Not a stable API: use the public
/// items of this crate when writing the same code by hand.
#[doc(hidden)]
pub mod __private {}
