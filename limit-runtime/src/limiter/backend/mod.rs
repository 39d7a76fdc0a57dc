//! Backends: where a named limiter's state lives when it is shared beyond
//! the process.
//!
//! | file | part |
//! |---|---|
//! | `mod.rs` | the hook: [`Backend`], the names connected to one, [`BackendMode`] |
//! | `redis.rs` | the Redis backend (cargo feature `redis`): leases, the global queue, the global rate |
//!
//! A shared name keeps its local [`Core`](super::core::Core): callers of one
//! process queue there first (FIFO, online before batch, `wait`, `queue`,
//! `reserve`), exactly as for a local limiter. A caller that the local core
//! lets start then asks the backend for a lease, within the same `wait`
//! deadline; the body starts once it has both, and the lease goes back when
//! the [`Permit`](super::Permit) is dropped.

#[cfg(feature = "redis")]
pub mod redis;

/// Which mode a shared limiter is in, from
/// [`LimiterStats::backend`](crate::LimiterStats::backend).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendMode {
    /// The server answers: the limit holds across every process using the
    /// name.
    Shared,
    /// The server does not answer and the name fails open: each process
    /// falls back to the local limit it was given.
    FailedOpen,
    /// The server does not answer and the name fails closed: calls that can
    /// carry an error fail with
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable); the others
    /// wait for the server.
    FailedClosed,
}

impl std::fmt::Display for BackendMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendMode::Shared => "shared",
            BackendMode::FailedOpen => "failed open (local limit)",
            BackendMode::FailedClosed => "failed closed",
        })
    }
}

#[cfg(feature = "redis")]
pub(crate) use self::shared::*;

#[cfg(feature = "redis")]
mod shared {
    use std::collections::HashMap;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, LazyLock, Mutex, PoisonError};

    use tokio::time::Instant;

    use super::BackendMode;
    use crate::limiter::Rate;

    /// What one caller asks a backend for, once the local core let it
    /// start.
    pub(crate) struct Request {
        /// The limiter's concurrency limit (`None`: no cap).
        pub(crate) max: Option<usize>,
        pub(crate) rate: Option<Rate>,
        /// When the caller's `wait` runs out.
        pub(crate) deadline: Option<Instant>,
        /// `queue = 0`: refuse rather than wait.
        pub(crate) never_wait: bool,
        /// Whether the call can carry an error (`false` for
        /// `Limiter::acquire`, whose callers cannot be refused).
        pub(crate) can_refuse: bool,
    }

    /// Why a backend refused a call.
    pub(crate) enum Refused {
        /// The caller's `wait` ran out.
        WaitTimeout,
        /// `queue = 0` and no lease was free.
        QueueFull,
        /// The server did not answer and the name fails closed; the text
        /// completes `limiter "name": ...`, the location is where the name
        /// was shared.
        Unavailable(String, &'static std::panic::Location<'static>),
    }

    /// A lease held by a permit; dropping it gives the lease back.
    pub(crate) type Lease = Box<dyn Send + Sync>;

    /// What a backend gives a caller it lets start.
    pub(crate) struct Granted {
        /// The lease (`None`: nothing to give back, e.g. a rate slot only).
        pub(crate) lease: Option<Lease>,
        /// Whether the caller had to wait for it (queued in the server, a
        /// rate slot ahead, a fallback limit that was full, a server that
        /// was down), beyond the round trips of asking.
        pub(crate) waited: bool,
    }

    pub(crate) type Acquiring = Pin<Box<dyn Future<Output = Result<Granted, Refused>> + Send>>;

    /// The remote half of a shared limiter.
    pub(crate) trait Backend: Send + Sync + 'static {
        /// Waits for a lease.
        fn acquire(self: Arc<Self>, request: Request) -> Acquiring;
        /// The mode the name is in now.
        fn mode(&self) -> BackendMode;
    }

    /// The names connected to a backend, by name.
    type Names = HashMap<Box<str>, Arc<dyn Backend>>;

    static SHARED: LazyLock<Mutex<Names>> = LazyLock::new(Default::default);

    /// The backend connected to `name`, if any.
    pub(crate) fn lookup(name: &str) -> Option<Arc<dyn Backend>> {
        SHARED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Connects `name` to `backend`: the limiter with that name, now or
    /// when it is created, takes leases from it.
    pub(crate) fn connect(name: &str, backend: Arc<dyn Backend>) {
        SHARED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.into(), backend.clone());
        // Not under the lock above: the registry locks the other way round.
        if let Some(limiter) = crate::limiter::named_limiter(name) {
            limiter.attach_backend(backend);
        }
    }
}

#[cfg(feature = "redis")]
mod hook {
    use std::future::Future as _;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::task::{Context, Poll};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{Acquiring, Backend, Refused, Request};
    use crate::error::{Error, ErrorKind, Subject};
    use crate::limiter::core::Refusal;
    use crate::limiter::rate::saturating_ns as nanos;
    use crate::limiter::{AcquireWith, Origin, Permit};

    /// The remote half of an [`AcquireWith`] on a shared name.
    #[derive(Default)]
    pub(crate) struct Remote<'a> {
        /// When the caller first asked: its `wait` counts from there.
        started: Option<Instant>,
        /// The local permit, held while the lease is asked for.
        permit: Option<Permit<'a>>,
        /// In a mutex only so that the future stays `Sync`; polled through
        /// `get_mut`, never locked.
        acquiring: Option<Mutex<Acquiring>>,
        /// Counts the caller as waiting (not active) while it asks.
        leasing: Option<Leasing<'a>>,
    }

    /// A caller asking the backend for its lease: it holds a local permit
    /// but its body has not started, so the limiter counts it among the
    /// waiting, not the active, until this is dropped.
    struct Leasing<'a> {
        count: &'a AtomicUsize,
        since: Instant,
    }

    impl<'a> Leasing<'a> {
        fn new(count: &'a AtomicUsize) -> Leasing<'a> {
            count.fetch_add(1, Ordering::Relaxed);
            Leasing {
                count,
                since: Instant::now(),
            }
        }
    }

    impl Drop for Leasing<'_> {
        fn drop(&mut self) {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    impl Remote<'_> {
        /// Whether the caller has its local permit and asks the backend.
        #[cfg(feature = "tracing")]
        pub(crate) fn asking(&self) -> bool {
            self.acquiring.is_some()
        }
    }

    impl<'a> AcquireWith<'a> {
        /// Polls a call on a shared name: first the local core, then the
        /// backend, within one deadline.
        pub(in crate::limiter) fn poll_shared(
            &mut self,
            backend: &Arc<dyn Backend>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<Permit<'a>, Error>> {
            let limiter = self.limiter;
            let patience = self.waiter.patience();
            let started = *self.remote.started.get_or_insert_with(Instant::now);
            if self.remote.acquiring.is_none() {
                match Pin::new(&mut self.waiter).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(refusal)) => {
                        return Poll::Ready(Err(limiter.refusal(refusal, patience, self.origin)))
                    }
                    Poll::Ready(Ok(())) => {}
                }
                self.remote.permit = Some(limiter.permit(self.waiter.class()));
                let max = limiter.max();
                let request = Request {
                    max: (max != usize::MAX).then_some(max),
                    rate: limiter.rate(),
                    deadline: patience.wait().map(|w| started + w),
                    never_wait: patience.queue() == Some(0),
                    can_refuse: !matches!(self.origin, Origin::None),
                };
                self.remote.leasing = Some(Leasing::new(&limiter.inner.leasing));
                self.remote.acquiring = Some(Mutex::new(backend.clone().acquire(request)));
            }
            let fut = self
                .remote
                .acquiring
                .as_mut()
                .expect("asked for above")
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            let outcome = match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(outcome) => outcome,
            };
            self.remote.acquiring = None;
            let leasing = self.remote.leasing.take().expect("counted while asking");
            let mut permit = self.remote.permit.take().expect("held while asking");
            match outcome {
                Ok(granted) => {
                    let local = self.waiter.queued().then(|| self.waiter.waited());
                    let remote = granted.waited.then(|| leasing.since.elapsed());
                    drop(leasing);
                    if let Some(r) = remote {
                        let total = local.unwrap_or_default() + r;
                        limiter.core().note_remote_wait(
                            nanos(r),
                            nanos(total),
                            local.is_some(),
                            self.waiter.class(),
                        );
                    }
                    #[cfg(feature = "metrics")]
                    if local.is_some() || remote.is_some() {
                        crate::integrations::metrics::waited(
                            limiter.name(),
                            &limiter.inner.waits,
                            local.unwrap_or_default() + remote.unwrap_or_default(),
                        );
                    }
                    permit.lease = granted.lease;
                    // An adaptive limit times the body, not the remote wait.
                    permit.restart();
                    Poll::Ready(Ok(permit))
                }
                Err(refused) => {
                    drop(leasing);
                    drop(permit);
                    let waited = Instant::now().saturating_duration_since(started);
                    Poll::Ready(Err(self.backend_refusal(refused, waited)))
                }
            }
        }

        #[cold]
        fn backend_refusal(&self, refused: Refused, waited: Duration) -> Error {
            let limiter = self.limiter;
            let patience = self.waiter.patience();
            match refused {
                Refused::WaitTimeout => {
                    limiter.refusal(Refusal::WaitTimeout { waited }, patience, self.origin)
                }
                Refused::QueueFull => {
                    limiter.refusal(Refusal::QueueFull { waiting: 0 }, patience, self.origin)
                }
                Refused::Unavailable(what, at) => Error::new(
                    ErrorKind::Unavailable,
                    Subject::Limiter,
                    limiter.name(),
                    what,
                )
                .caused_by("fail_closed".into(), at.file(), at.line()),
            }
        }
    }
}

#[cfg(feature = "redis")]
pub(crate) use self::hook::Remote;
