//! Every attribute, alone and combined, on every form of function, with
//! one-line and longer bodies: this crate must build without a single
//! warning (`#![deny(warnings)]` for rustc; CI's clippy run denies
//! warnings too, with the pedantic group on). A lint that an expansion adds
//! to the user's code fails the build of `cargo test --workspace`.
#![deny(warnings)]
#![warn(clippy::pedantic)]

use std::sync::Arc;

use limit_runtime::{circuit_breaker, coalesce, limited, retry, timeout};

/// The crate's error.
#[derive(Debug, Clone)]
pub struct E;

impl From<limit_runtime::Error> for E {
    fn from(_: limit_runtime::Error) -> Self {
        E
    }
}

/// Retries once.
///
/// # Errors
///
/// Never.
#[retry]
pub async fn retry_one_line(x: u64) -> Result<u64, E> {
    Ok(x)
}

/// Limited, one line.
#[limited(max = 2)]
pub async fn limited_one_line(x: u64) -> u64 {
    x
}

/// Limited, unit.
#[limited(name = "lints-unit", max = 2)]
pub async fn limited_unit() {}

/// Coalesced, one line.
#[coalesce]
pub async fn coalesce_one_line(x: u64) -> u64 {
    x
}

/// Coalesced, unit.
#[coalesce]
pub async fn coalesce_unit(x: u64) {
    let _ = x;
}

/// All three, one line.
///
/// # Errors
///
/// Never.
#[coalesce]
#[retry(attempts = 2)]
#[limited(name = "lints-all", max = 2)]
pub async fn all_one_line(x: u64) -> Result<u64, E> {
    Ok(x)
}

/// Retry and limited, with the waiting options.
///
/// # Errors
///
/// When the limiter refuses.
#[retry(attempts = 2)]
#[limited(
    name = "lints-options",
    max = 2,
    rate = "100/s",
    burst = 2,
    wait = "1s",
    queue = 10
)]
pub async fn options_one_line(x: u64) -> Result<u64, E> {
    Ok(x)
}

/// Limited with `wait`, alone.
///
/// # Errors
///
/// When the wait runs out.
#[limited(name = "lints-wait", max = 2, wait = "1s")]
pub async fn wait_one_line(x: u64) -> Result<u64, E> {
    Ok(x)
}

/// Coalesce and limited with `queue`.
///
/// # Errors
///
/// When the queue is full.
#[coalesce]
#[limited(name = "lints-queue", max = 2, queue = 0)]
pub async fn coalesce_queue(x: u64) -> Result<u64, E> {
    Ok(x)
}

/// A timeout, one line.
///
/// # Errors
///
/// When it times out.
#[timeout("1s")]
pub async fn timeout_one_line(x: u64) -> Result<u64, E> {
    Ok(x)
}

/// A breaker, one line.
///
/// # Errors
///
/// When the breaker is open.
#[circuit_breaker]
pub async fn breaker_one_line(x: u64) -> Result<u64, E> {
    Ok(x)
}

/// Every attribute at once, one line.
///
/// # Errors
///
/// When a guard refuses.
#[coalesce]
#[timeout(attempt = "1s", total = "5s")]
#[retry(attempts = 2)]
#[circuit_breaker(name = "lints-all-six", min_calls = 5)]
#[limited(name = "lints-all-six", max = 2, wait = "1s")]
pub async fn all_six(x: u64) -> Result<u64, E> {
    Ok(x)
}

/// Timeout and breaker on a method.
impl Client {
    /// `&self` with timeout and breaker.
    ///
    /// # Errors
    ///
    /// When a guard refuses.
    #[timeout("1s")]
    #[circuit_breaker]
    pub async fn guarded(&self, x: u64) -> Result<u64, E> {
        Ok(self.n + x)
    }
}

/// A longer body with `?` and an early return.
///
/// # Errors
///
/// When `x` is odd.
#[retry(attempts = 2, jitter = "none")]
#[limited(name = "lints-long", max = 2)]
pub async fn longer(x: u64) -> Result<u64, E> {
    if x % 2 == 1 {
        return Err(E);
    }
    let half: Result<u64, E> = Ok(x / 2);
    let h = half?;
    Ok(h + 1)
}

/// Every kind of argument a retried attempt hands over: a shared and a
/// `&mut` reference, an owned one (both rebound `mut`), a
/// wildcard, and a destructuring pattern (which makes the attempt borrow).
///
/// # Errors
///
/// Never.
#[retry(attempts = 2)]
pub async fn argument_forms(
    mut name: &str,
    out: &mut Vec<u64>,
    mut n: u64,
    _: u8,
    (a, b): (u64, u64),
) -> Result<u64, E> {
    n += a + b;
    out.push(n);
    name = name.trim();
    out.push(n + name.len() as u64 - 1);
    Ok(n)
}

/// The same arguments, limited too, without the pattern (so the attempt
/// owns them).
///
/// # Errors
///
/// When the limiter refuses.
#[retry(attempts = 2)]
#[limited(name = "lints-arguments", max = 2, wait = "1s")]
pub async fn argument_forms_owned(name: &str, out: &mut Vec<u64>, mut n: u64) -> Result<u64, E> {
    n += 1;
    out.push(n + name.len() as u64);
    Ok(n)
}

/// `impl Trait` in return position.
#[limited(max = 1)]
pub async fn impl_trait(x: u64) -> impl std::fmt::Debug {
    x
}

/// Generic, with a where clause.
///
/// # Errors
///
/// Never.
#[coalesce]
#[retry]
#[limited(max = 3)]
pub async fn generic<T>(x: T) -> Result<T, E>
where
    T: Clone + std::hash::Hash + Eq + Send + Sync + 'static,
{
    Ok(x)
}

/// A type with every receiver.
#[derive(Default)]
pub struct Client {
    n: u64,
}

impl Client {
    /// `&self`.
    ///
    /// # Errors
    ///
    /// Never.
    #[coalesce]
    #[retry]
    #[limited(max = 2)]
    pub async fn by_ref(&self, x: u64) -> Result<u64, E> {
        Ok(self.n + x)
    }

    /// `&mut self`.
    ///
    /// # Errors
    ///
    /// Never.
    #[retry]
    #[limited(max = 2)]
    pub async fn by_mut(&mut self, x: u64) -> Result<u64, E> {
        self.n += x;
        Ok(self.n)
    }

    /// `self`.
    #[limited(max = 2)]
    pub async fn by_value(self) -> u64 {
        self.n
    }

    /// `self: Arc<Self>`.
    #[coalesce]
    #[limited(max = 2)]
    pub async fn by_arc(self: Arc<Self>) -> u64 {
        self.n
    }
}

/// A trait with a default method.
pub trait Service {
    /// The default method.
    fn base(&self) -> u64;

    /// Default body under the attributes.
    #[allow(async_fn_in_trait)]
    #[limited(max = 2)]
    async fn call(&self, x: u64) -> u64 {
        self.base() + x
    }
}

impl Service for Client {
    fn base(&self) -> u64 {
        self.n
    }
}

/// A trait implemented with attributes on the impl's methods.
pub trait Fetch {
    /// Fetches.
    #[allow(async_fn_in_trait)]
    async fn fetch(&self, x: u64) -> Result<u64, E>;
}

impl Fetch for Client {
    #[retry]
    #[limited(max = 2)]
    async fn fetch(&self, x: u64) -> Result<u64, E> {
        Ok(x + self.n)
    }
}

/// Adaptive, one line, any output.
#[limited(name = "lints-adaptive", adaptive)]
pub async fn adaptive_one_line(x: u64) -> u64 {
    x
}

/// Adaptive, unit.
#[limited(adaptive, min = 2, max = 50)]
pub async fn adaptive_unit() {}

impl E {
    /// Whether the error means "overloaded".
    #[must_use]
    pub fn is_overload(&self) -> bool {
        false
    }
}

/// Adaptive with every option it combines with, one line.
///
/// # Errors
///
/// Never.
#[limited(name = "lints-adaptive-all", adaptive, min = 2, initial = 4, max = 50, overload = E::is_overload, wait = "1s", queue = 10)]
#[retry]
#[timeout("1s")]
#[coalesce]
pub async fn adaptive_all(x: u64) -> Result<u64, E> {
    Ok(x)
}

/// Adaptive, generic output.
#[limited(name = "lints-adaptive-generic", adaptive, overload = |e| matches!(e, E))]
pub async fn adaptive_generic<T: Send>(x: T) -> Result<T, E> {
    Ok(x)
}

/// A trait whose methods `#[async_trait]` boxes.
#[async_trait::async_trait]
pub trait Boxed: Sync {
    /// Every attribute, on a method `#[async_trait]` boxed first.
    async fn all(&self, x: u64) -> Result<u64, E>;

    /// A default method returning `()`.
    #[limited(max = 1)]
    async fn ping(&self) {}
}

#[async_trait::async_trait]
impl Boxed for Client {
    #[coalesce]
    #[timeout(attempt = "1s", total = "2s")]
    #[retry]
    #[circuit_breaker(name = "lints-boxed")]
    #[limited(max = 2, wait = "1s")]
    async fn all(&self, x: u64) -> Result<u64, E> {
        Ok(x + self.n)
    }
}

/// The same, not `Send`.
#[async_trait::async_trait(?Send)]
pub trait LocalBoxed {
    /// Retried and limited.
    async fn get(&mut self, x: u64) -> Result<u64, E>;
}

#[async_trait::async_trait(?Send)]
impl LocalBoxed for Client {
    #[limited(max = 1)]
    #[retry]
    async fn get(&mut self, x: u64) -> Result<u64, E> {
        self.n += x;
        Ok(self.n)
    }
}

/// Destructured arguments, retried and coalesced.
///
/// # Errors
///
/// Never.
#[coalesce]
#[retry]
pub async fn destructured((a, b): (u64, u64), &(c, _): &(u64, u64)) -> Result<u64, E> {
    Ok(a + b + c)
}

/// A const parameter that is not a `usize`.
#[coalesce]
pub async fn flagged<const ON: bool>(x: u64) -> u64 {
    if ON {
        x
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn every_form_runs() {
        assert_eq!(retry_one_line(1).await.unwrap(), 1);
        let mut out = Vec::new();
        assert_eq!(
            argument_forms(" x ", &mut out, 1, 0, (2, 3)).await.unwrap(),
            6
        );
        assert_eq!(argument_forms_owned("ab", &mut out, 1).await.unwrap(), 2);
        assert_eq!(out, vec![6, 6, 4]);
        assert_eq!(limited_one_line(2).await, 2);
        limited_unit().await;
        assert_eq!(coalesce_one_line(3).await, 3);
        coalesce_unit(3).await;
        assert_eq!(all_one_line(4).await.unwrap(), 4);
        assert_eq!(options_one_line(5).await.unwrap(), 5);
        assert_eq!(wait_one_line(6).await.unwrap(), 6);
        assert_eq!(coalesce_queue(7).await.unwrap(), 7);
        assert_eq!(longer(8).await.unwrap(), 5);
        assert_eq!(timeout_one_line(1).await.unwrap(), 1);
        assert_eq!(breaker_one_line(2).await.unwrap(), 2);
        assert_eq!(all_six(3).await.unwrap(), 3);
        assert_eq!(Client::default().guarded(4).await.unwrap(), 4);
        assert!(longer(9).await.is_err());
        assert_eq!(format!("{:?}", impl_trait(10).await), "10");
        assert_eq!(generic(11u64).await.unwrap(), 11);
        let mut c = Client::default();
        assert_eq!(c.by_ref(1).await.unwrap(), 1);
        assert_eq!(c.by_mut(2).await.unwrap(), 2);
        assert_eq!(c.call(1).await, 3);
        assert_eq!(c.fetch(1).await.unwrap(), 3);
        assert_eq!(Arc::new(Client { n: 4 }).by_arc().await, 4);
        assert_eq!(Boxed::all(&c, 1).await.unwrap(), 3);
        c.ping().await;
        assert_eq!(LocalBoxed::get(&mut c, 1).await.unwrap(), 3);
        assert_eq!(c.by_value().await, 3);
        assert_eq!(adaptive_one_line(3).await, 3);
        adaptive_unit().await;
        assert_eq!(adaptive_all(4).await.unwrap(), 4);
        assert_eq!(adaptive_generic(5).await.unwrap(), 5);
        assert_eq!(destructured((1, 2), &(3, 4)).await.unwrap(), 6);
        assert_eq!(flagged::<true>(6).await, 6);
    }
}
