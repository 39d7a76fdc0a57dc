#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod limiter;
pub mod retry;
mod sem;

pub use limiter::{limiter, limiters, Acquire, Limiter, LimiterStats, Permit, StaticLimiter};

#[cfg(feature = "macros")]
pub use limit_macros::{coalesce, limited, retry};

/// Items the attribute macros expand to. Not a stable API: use the public
/// items of this crate when writing the same code by hand.
#[doc(hidden)]
pub mod __private {
    use core::hash::Hash;

    /// An owned argument of a `#[retry]` function, cloned for each attempt.
    #[diagnostic::on_unimplemented(
        message = "#[retry] gives every attempt a fresh copy of each owned argument, so `{Self}` must be `Clone`",
        label = "this argument is not `Clone`",
        note = "derive or implement `Clone`, or take the argument by reference (`&{Self}`)"
    )]
    pub trait RetryArg {
        fn clone_for_retry(&self) -> Self;
    }

    impl<T: Clone> RetryArg for T {
        #[inline]
        fn clone_for_retry(&self) -> Self {
            self.clone()
        }
    }

    #[inline]
    pub fn clone_arg<T: RetryArg>(arg: &T) -> T {
        arg.clone_for_retry()
    }

    /// One argument of a `#[coalesce]` function's default key.
    #[diagnostic::on_unimplemented(
        message = "#[coalesce] keys calls on their arguments, so `{Self}` must be `Clone + Hash + Eq + Send + Sync + 'static`",
        label = "this argument cannot be part of the key",
        note = "choose the key yourself with #[coalesce(key = ...)], e.g. `key = (id, name.clone())`"
    )]
    pub trait KeyPart: Clone + Hash + Eq + Send + Sync + 'static {}

    impl<T: Clone + Hash + Eq + Send + Sync + 'static> KeyPart for T {}

    #[inline]
    pub fn key_part<T: KeyPart>(arg: &T) -> T {
        arg.clone()
    }

    /// The owned form of a borrowed argument (`&str` becomes `String`).
    #[inline]
    pub fn key_part_owned<T>(arg: &T) -> T::Owned
    where
        T: ?Sized + ToOwned,
        T::Owned: KeyPart,
    {
        arg.to_owned()
    }

    /// The `key = ...` expression, checked where it is written.
    #[inline]
    pub fn key_expr<K: Hash + Eq + Send + Sync + 'static>(key: K) -> K {
        key
    }

    /// The address of the receiver: calls on two instances never share.
    #[inline]
    pub fn receiver_id<T: ?Sized>(this: &T) -> usize {
        this as *const T as *const () as usize
    }

    #[cfg(feature = "backoff")]
    pub use crate::retry::backoff_policy;

    #[cfg(not(feature = "backoff"))]
    #[diagnostic::on_unimplemented(
        message = "`policy = ...` needs the `backoff` feature of limit-runtime",
        note = "enable it in Cargo.toml: limit-runtime = {{ version = \"...\", features = [\"backoff\"] }}"
    )]
    pub trait BackoffFeatureDisabled {}

    #[cfg(not(feature = "backoff"))]
    pub fn backoff_policy<B: BackoffFeatureDisabled>(_: B) -> crate::retry::Builtin {
        unreachable!("no type implements BackoffFeatureDisabled")
    }
}
