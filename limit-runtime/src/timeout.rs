//! Timeouts: [`StaticTimeout`], what `#[timeout]` expands to.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! use std::time::Duration;
//! use limit_runtime::{ErrorKind, StaticTimeout};
//!
//! static GET_USER: StaticTimeout =
//!     StaticTimeout::new("app::get_user").attempt(Duration::from_secs(2));
//!
//! let slow = GET_USER.run_attempt(tokio::time::sleep(Duration::from_secs(5))).await;
//! let err = slow.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Timeout);
//! assert!(err.to_string().starts_with(
//!     "call \"app::get_user\": timed out after 2s (timeout attempt = \"2s\" at "
//! ));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Subject, Written};

/// The timeouts of one function: on each attempt's body, and on the whole
/// call.
pub struct StaticTimeout {
    label: &'static str,
    attempt: Option<Duration>,
    total: Option<Duration>,
    file: &'static str,
    line: u32,
}

impl StaticTimeout {
    /// Timeouts for the function labelled `label`, recording where they are
    /// declared; none is set yet.
    #[track_caller]
    pub const fn new(label: &'static str) -> Self {
        let at = std::panic::Location::caller();
        StaticTimeout {
            label,
            attempt: None,
            total: None,
            file: at.file(),
            line: at.line(),
        }
    }

    /// Overrides where the declaration is said to be written (by default,
    /// where [`new`](StaticTimeout::new) is called): `#[timeout]` and
    /// `#[circuit_breaker]` expanded by another attribute of the function
    /// give their own line.
    pub const fn declared_at(mut self, file: &'static str, line: u32) -> Self {
        self.file = file;
        self.line = line;
        self
    }

    /// Each attempt's body is dropped after this long.
    pub const fn attempt(mut self, d: Duration) -> Self {
        self.attempt = Some(d);
        self
    }

    /// The whole call (queueing, attempts, sleeps) is dropped after this
    /// long.
    pub const fn total(mut self, d: Duration) -> Self {
        self.total = Some(d);
        self
    }

    /// The attempt's body under the attempt timeout: exactly
    /// `tokio::time::timeout`, so it costs what the hand-written form costs.
    /// The expansion calls it only when an attempt timeout is set.
    #[doc(hidden)]
    #[inline]
    pub fn attempt_future<F: std::future::IntoFuture>(
        &self,
        body: F,
    ) -> tokio::time::Timeout<F::IntoFuture> {
        tokio::time::timeout(self.attempt.unwrap_or(Duration::MAX), body)
    }

    /// The whole call under the total timeout (see `attempt_future`).
    #[doc(hidden)]
    #[inline]
    pub fn total_future<F: std::future::IntoFuture>(
        &self,
        call: F,
    ) -> tokio::time::Timeout<F::IntoFuture> {
        tokio::time::timeout(self.total.unwrap_or(Duration::MAX), call)
    }

    /// The error of an attempt that timed out.
    #[doc(hidden)]
    #[cold]
    pub fn attempt_error(&self) -> Error {
        self.error("attempt", self.attempt.unwrap_or(Duration::MAX))
    }

    /// The error of a call that timed out.
    #[doc(hidden)]
    #[cold]
    pub fn total_error(&self) -> Error {
        self.error("total", self.total.unwrap_or(Duration::MAX))
    }

    fn error(&self, which: &str, d: Duration) -> Error {
        let d = Written(d);
        Error::new(
            ErrorKind::Timeout,
            Subject::Call,
            self.label,
            format!("timed out after {d}"),
        )
        .caused_by(format!("timeout {which} = \"{d}\""), self.file, self.line)
    }

    /// Runs one attempt's body under the attempt timeout (if any).
    pub async fn run_attempt<F: Future>(&self, body: F) -> Result<F::Output, Error> {
        match self.attempt {
            Some(d) => tokio::time::timeout(d, body)
                .await
                .map_err(|_| self.error("attempt", d)),
            None => Ok(body.await),
        }
    }

    /// Runs the whole call under the total timeout (if any).
    pub async fn run_total<F: Future>(&self, call: F) -> Result<F::Output, Error> {
        match self.total {
            Some(d) => tokio::time::timeout(d, call)
                .await
                .map_err(|_| self.error("total", d)),
            None => Ok(call.await),
        }
    }
}

impl fmt::Debug for StaticTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTimeout")
            .field("label", &self.label)
            .field("attempt", &self.attempt)
            .field("total", &self.total)
            .field("declared_at", &format_args!("{}:{}", self.file, self.line))
            .finish()
    }
}
