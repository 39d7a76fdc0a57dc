//! Online and batch work: the class of a call belongs to its caller.
//!
//! Online calls (a user is waiting) and batch calls (a job works through a
//! backlog) often reach the same service through the same functions. Wrap a
//! job in [`scope`] and every limited call made inside it, at any depth, is
//! batch work: on every limiter, a waiting online call starts before any
//! waiting batch call (for concurrency and for rate alike), and batch calls
//! wait in FIFO order among themselves.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use limit_runtime::batch;
//!
//! async fn nightly_job() -> bool {
//!     batch::is_batch()
//! }
//!
//! assert!(!batch::is_batch());
//! assert!(batch::scope(nightly_job()).await);
//! # }
//! ```
//!
//! The class travels with the future, not with the task: a task spawned
//! from inside a scope starts online unless its future is wrapped in
//! [`scope`] too (`tokio::spawn(batch::scope(work))`).
//!
//! Running a job over many items: [`job`] keeps at most N items in
//! progress, reports every failure with its item and reports progress, and
//! [`interleave_by`] spreads clustered groups of items evenly over the run.
//!
//! | file | part |
//! |---|---|
//! | `mod.rs` | the class: [`scope`], [`online`], [`is_batch`] |
//! | `driver.rs` | the job driver: [`job`], [`Job`], [`Progress`], [`Report`] |
//! | `interleave.rs` | [`interleave_by`] |

mod driver;
mod interleave;

pub use driver::{job, Job, Progress, Report};
pub use interleave::interleave_by;

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::pin;

use crate::limiter::Class;

thread_local! {
    /// Whether the future being polled on this thread is inside a scope.
    static BATCH: Cell<bool> = const { Cell::new(false) };
}

/// Restores the previous class when a poll ends (even by a panic).
struct Enter(bool);

impl Enter {
    fn set(batch: bool) -> Enter {
        Enter(BATCH.with(|b| b.replace(batch)))
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let prev = self.0;
        let _ = BATCH.try_with(|b| b.set(prev));
    }
}

/// Runs `fut` as batch work: every limited call it makes, at any depth,
/// waits behind online calls.
pub async fn scope<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        let _class = Enter::set(true);
        fut.as_mut().poll(cx)
    })
    .await
}

/// Runs `fut` as online work, even inside a batch [`scope`] (for a call
/// that a user waits on, made from a job's code).
pub async fn online<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        let _class = Enter::set(false);
        fut.as_mut().poll(cx)
    })
    .await
}

/// Whether the code calling this runs inside a batch [`scope`].
#[inline]
pub fn is_batch() -> bool {
    BATCH.try_with(Cell::get).unwrap_or(false)
}

/// The class of the calling code, for the limiter.
#[inline]
pub(crate) fn class() -> Class {
    if is_batch() {
        Class::Batch
    } else {
        Class::Online
    }
}
