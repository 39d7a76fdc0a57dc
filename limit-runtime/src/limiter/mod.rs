//! Named, process-wide limiters.
//!
//! | file | part |
//! |---|---|
//! | `mod.rs` | [`Limiter`], the handle; its futures and [`Permit`]; stats |
//! | `registry.rs` | the process-wide registry and [`StaticLimiter`], a declaration |
//! | `core.rs` | permits, the one queue, and the dispatcher that decides who starts |
//! | `queue.rs` | the waiters: a FIFO list per class (online, batch) |
//! | `rate.rs` | [`Rate`] and the GCRA gate that enforces it |
//! | `adaptive.rs` | the adaptive limit: [`Outcome`]s in, a limit out |
//! | `backend/` | names shared beyond the process (a Redis server) |

mod adaptive;
mod backend;
mod core;
mod queue;
mod rate;
mod registry;
mod stamp;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use self::adaptive::Adaptive;
pub use self::adaptive::{AdaptiveOptions, Outcome};
#[cfg(feature = "redis")]
pub use self::backend::redis;
pub use self::backend::BackendMode;
use self::core::{Core, Patience, Refusal, Waiter, MAX_PERMITS};
pub(crate) use self::queue::Class;
pub use self::rate::{ParseRateError, Rate};
pub use self::registry::StaticLimiter;
use self::registry::{registry, Declaration, Entry};
use crate::error::{Error, ErrorKind, Subject, Written};

/// A limit on how many futures run at once, and how fast they start.
///
/// At most [`max`](Limiter::max) futures run under it at once, their starts
/// follow its [`rate`](Limiter::rate) if it has one, and the others wait in
/// first-come, first-served order (online work before
/// [batch](crate::batch) work).
///
/// A `Limiter` is a cheap handle (an `Arc`): clones share one limit.
/// Limiters with a name live in a process-wide registry, so every
/// `#[limited(name = "...")]` function and every [`Limiter::named`] call with
/// that name shares one limit, in whichever crate it is written.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use limit_runtime::Limiter;
///
/// let addresses = Limiter::named("doc-address", 10);
/// let n = addresses.run(async { 40 + 2 }).await;
/// assert_eq!(n, 42);
/// assert_eq!(addresses.max(), 10);
/// assert_eq!(addresses.active(), 0);
/// # }
/// ```
///
/// Waiting is cancel-safe: a caller dropped while it waits leaves the queue,
/// and a permit is returned when the future holding it finishes, fails,
/// panics or is dropped.
///
/// A future that runs under a limiter and then waits for the same limiter
/// again in the same task (directly, or through another function with the
/// same name) holds one permit while asking for a second: once the limiter
/// is full, it waits forever. Give nested calls a limiter of their own.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    name: Box<str>,
    named: bool,
    core: Core,
    /// The controller of an adaptive limit.
    adaptive: Option<Box<Adaptive>>,
    #[cfg(feature = "metrics")]
    waits: crate::integrations::metrics::WaitHistogram,
    /// The backend sharing this name beyond the process, if any.
    #[cfg(feature = "redis")]
    backend: std::sync::OnceLock<Arc<dyn backend::Backend>>,
    /// Callers of a shared name that hold a local permit and wait for
    /// their lease: waiting, not active.
    #[cfg(feature = "redis")]
    leasing: std::sync::atomic::AtomicUsize,
}

/// A private limiter's counters outlive it in
/// [`metrics::report`](crate::metrics::report), whose counters never go
/// down. (A named limiter is never dropped.)
#[cfg(feature = "metrics")]
impl Drop for Inner {
    fn drop(&mut self) {
        let c = &self.core.counters;
        crate::integrations::metrics::retire(
            &self.name,
            [
                c.hot.sum(core::ACQUIRED),
                c.rejected_full.load(Ordering::Relaxed),
                c.rejected_wait.load(Ordering::Relaxed),
            ],
        );
    }
}

/// A point-in-time copy of a limiter's counters, from [`Limiter::stats`].
///
/// Reading it takes no lock and never delays a call; the fields are read one
/// after another, so under load they may be a few operations apart.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterStats {
    /// The limiter's name.
    pub name: String,
    /// The configured limit (`usize::MAX`: no concurrency cap).
    pub max: usize,
    /// The limit in force now (see [`Limiter::limit`]).
    pub limit: usize,
    /// The rate, if the limiter has one.
    pub rate: Option<Rate>,
    /// Bodies running now.
    pub active: usize,
    /// Callers queued now (see [`Limiter::waiting`]).
    pub waiting: usize,
    /// Starts since the limiter was created.
    pub acquired: u64,
    /// The most bodies that ever ran at once. On a name shared through a
    /// server, the most local permits held at once, which includes callers
    /// waiting for their lease.
    pub peak_active: usize,
    /// Calls that had to queue before they started. On a name shared
    /// through a server, a wait for the lease (queued in the server, for a
    /// rate slot, for the fallback limit or for the server to answer again)
    /// counts too, added to the local wait of the same call; the round
    /// trips of an uncontended start do not.
    pub waited: u64,
    /// Time all queued calls spent waiting before they started, added up.
    pub wait_total: Duration,
    /// The longest time one call waited before it started.
    pub wait_max: Duration,
    /// Calls refused because the queue was full (`queue`).
    pub rejected_full: u64,
    /// Calls that gave up waiting (`wait`).
    pub rejected_wait: u64,
    /// Permits that batch work never takes (see [`Limiter::reserve`]).
    pub reserve: usize,
    /// Permits held by [batch](crate::batch) work now.
    pub batch_active: usize,
    /// Batch calls among `waited`.
    pub waited_batch: u64,
    /// Batch calls' share of `wait_total`.
    pub wait_total_batch: Duration,
    /// Batch calls among `rejected_full` and `rejected_wait`.
    pub rejected_batch: u64,
    /// Whether the limit is adaptive (see [`Limiter::adaptive`]).
    pub adaptive: bool,
    /// The lowest limit in force so far (for a fixed limiter, the limit).
    pub limit_min_seen: usize,
    /// The highest limit in force so far (for a fixed limiter, the limit).
    pub limit_max_seen: usize,
    /// Adaptive: the service's unloaded latency, as last measured.
    pub baseline: Option<Duration>,
    /// Adaptive: the median latency of the last window judged.
    pub latency: Option<Duration>,
    /// Adaptive: latency samples taken (bodies that succeeded).
    pub samples: u64,
    /// Adaptive: drops (overload errors and attempt timeouts).
    pub overloads: u64,
    /// For a name shared beyond the process (cargo feature `redis`), the
    /// mode it is in now; `None` for a local limiter.
    pub backend: Option<BackendMode>,
}

/// How patient one call is: the options `wait` and `queue` of
/// `#[limited]`, for [`Limiter::acquire_with`].
///
/// ```
/// use std::time::Duration;
/// use limit_runtime::AcquireOptions;
///
/// let online = AcquireOptions::new().wait(Duration::from_millis(50)).queue(100);
/// let never_wait = AcquireOptions::new().queue(0);
/// # let _ = (online, never_wait);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcquireOptions {
    patience: Patience,
}

impl AcquireOptions {
    /// Waits as long as it takes, behind any number of callers.
    pub const fn new() -> Self {
        AcquireOptions {
            patience: Patience::UNLIMITED,
        }
    }

    /// Gives up with [`ErrorKind::WaitTimeout`] if the call cannot start
    /// within `wait` (waiting for a permit and for the rate together).
    pub const fn wait(mut self, wait: Duration) -> Self {
        self.patience = self.patience.with_wait(wait);
        self
    }

    /// Refuses the call with [`ErrorKind::QueueFull`] if `queue` callers
    /// already wait (0: never wait).
    pub const fn queue(mut self, queue: usize) -> Self {
        self.patience = self.patience.with_queue(queue);
        self
    }
}

/// Where the options of a refused call were written.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Origin {
    /// Nowhere: the call cannot be refused.
    None,
    /// A call of [`Limiter::acquire_with`].
    Call(&'static std::panic::Location<'static>),
    /// A declaration.
    Declared(&'static StaticLimiter),
}

impl Origin {
    fn file_line(self) -> (&'static str, u32) {
        match self {
            Origin::None => ("", 0),
            Origin::Call(at) => (at.file(), at.line()),
            Origin::Declared(s) => s.declared_file_line(),
        }
    }
}

fn public_max(max: usize) -> usize {
    if max >= MAX_PERMITS {
        usize::MAX
    } else {
        max
    }
}

impl Limiter {
    pub(crate) fn create(
        name: &str,
        named: bool,
        max: usize,
        rate: Option<Rate>,
        adaptive: Option<AdaptiveOptions>,
    ) -> Limiter {
        let (core, adaptive) = match adaptive {
            Some(options) => {
                let (a, start) = Adaptive::new(name, options, max.min(MAX_PERMITS));
                (Core::new(start, rate), Some(Box::new(a)))
            }
            None => (Core::new(max, rate), None),
        };
        let limiter = Limiter {
            inner: Arc::new(Inner {
                name: name.into(),
                named,
                core,
                adaptive,
                #[cfg(feature = "metrics")]
                waits: Default::default(),
                #[cfg(feature = "redis")]
                backend: std::sync::OnceLock::new(),
                #[cfg(feature = "redis")]
                leasing: std::sync::atomic::AtomicUsize::new(0),
            }),
        };
        #[cfg(feature = "redis")]
        if let Some(b) = named.then(|| backend::lookup(name)).flatten() {
            limiter.attach_backend(b);
        }
        limiter
    }

    /// Shares this limiter through `backend` (the first one attached stays).
    #[cfg(feature = "redis")]
    pub(crate) fn attach_backend(&self, backend: Arc<dyn backend::Backend>) {
        let _ = self.inner.backend.set(backend);
    }

    /// The mode of the backend sharing this limiter, if any.
    fn backend_mode(&self) -> Option<BackendMode> {
        #[cfg(feature = "redis")]
        return self.inner.backend.get().map(|b| b.mode());
        #[cfg(not(feature = "redis"))]
        None
    }

    pub(crate) fn create_private(
        name: &str,
        max: usize,
        rate: Option<Rate>,
        adaptive: Option<AdaptiveOptions>,
    ) -> Limiter {
        let limiter = Limiter::create(name, false, max, rate, adaptive);
        registry().add_private(&limiter);
        limiter
    }

    /// Returns the limiter called `name`, creating it with `max` permits if
    /// it does not exist yet.
    ///
    /// If it exists, it is returned as it is, whatever its `max`: the first
    /// declaration of a name stands. (A `#[limited]` function whose options
    /// differ from the first declaration panics in debug builds; see
    /// [`StaticLimiter`].) A `max` of 0 creates a paused limiter that admits
    /// nobody until [`set_max`](Limiter::set_max) raises it; `usize::MAX`
    /// creates one with no concurrency cap (give it a rate with
    /// [`set_rate`](Limiter::set_rate)).
    ///
    /// ```
    /// use limit_runtime::Limiter;
    ///
    /// let a = Limiter::named("doc-named", 3);
    /// let b = Limiter::named("doc-named", 3);
    /// assert!(a.same_as(&b));
    /// assert!(limit_runtime::limiter("doc-named").is_some());
    /// ```
    #[track_caller]
    pub fn named(name: &str, max: usize) -> Limiter {
        let at = std::panic::Location::caller();
        let mut reg = registry();
        if let Some(entry) = reg.named.get(name) {
            return entry.limiter.clone();
        }
        let limiter = Limiter::create(name, true, max, None, None);
        reg.named.insert(
            name.into(),
            Entry {
                limiter: limiter.clone(),
                declared: Declaration {
                    max,
                    rate: None,
                    reserve: 0,
                    adaptive: None,
                    file: at.file(),
                    line: at.line(),
                },
            },
        );
        limiter
    }

    /// Creates a limiter that no other code shares. `name` is only a label
    /// (for [`limiters`] and messages); it may repeat.
    ///
    /// It lives as long as a handle to it does (clones share it), and
    /// [`limiters`] lists it until then: one made per connection or per
    /// tenant and dropped with it is gone with it.
    ///
    /// ```
    /// use limit_runtime::Limiter;
    ///
    /// let mine = Limiter::private("thumbnails", 4);
    /// assert!(!mine.same_as(&Limiter::private("thumbnails", 4)));
    /// ```
    pub fn private(name: &str, max: usize) -> Limiter {
        Limiter::create_private(name, max, None, None)
    }

    /// Creates a limiter of its own (like [`private`](Limiter::private))
    /// whose limit adapts to the service, between `options`' `min` and
    /// `max`: what `#[limited(adaptive)]` declares. `name` is a label.
    ///
    /// The limit follows the [`Outcome`] of each call: record it with
    /// [`Permit::record`] (a permit merely dropped tells the limiter
    /// nothing), or let [`run`](Limiter::run) record a success. The
    /// algorithm, its formula and its parameters are described at
    /// [`AdaptiveOptions`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use limit_runtime::{AdaptiveOptions, Limiter, Outcome};
    ///
    /// let s3 = Limiter::adaptive("doc-adaptive", 256, AdaptiveOptions::new().min(2));
    /// assert!(s3.is_adaptive());
    /// let permit = s3.acquire().await;
    /// // ... call the service ...
    /// let throttled = false;
    /// permit.record(if throttled { Outcome::Overloaded } else { Outcome::Success });
    /// assert_eq!(s3.stats().samples, 1);
    /// # }
    /// ```
    pub fn adaptive(name: &str, max: usize, options: AdaptiveOptions) -> Limiter {
        Limiter::create_private(name, max, None, Some(options))
    }

    /// Whether the limit is adaptive.
    pub fn is_adaptive(&self) -> bool {
        self.inner.adaptive.is_some()
    }

    #[inline]
    fn permit(&self, class: Class) -> Permit<'_> {
        let started = match &self.inner.adaptive {
            None => 0,
            Some(a) => a.now(),
        };
        Permit {
            limiter: self,
            meta: (started << 1) | u64::from(class == Class::Batch),
            #[cfg(feature = "redis")]
            lease: None,
        }
    }

    #[inline]
    fn core(&self) -> &Core {
        &self.inner.core
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether this limiter is shared by name (`false` for private ones).
    pub fn is_named(&self) -> bool {
        self.inner.named
    }

    /// The configured concurrency limit (an adaptive limit's ceiling);
    /// `usize::MAX` if there is no cap (a limiter with only a rate).
    pub fn max(&self) -> usize {
        match &self.inner.adaptive {
            Some(a) => a.ceiling(),
            None => public_max(self.core().max()),
        }
    }

    /// The limit in force now: the adaptive limit, or
    /// [`max`](Limiter::max) (`usize::MAX` if uncapped).
    pub fn limit(&self) -> usize {
        public_max(self.core().max())
    }

    /// The rate that body starts follow, if any.
    pub fn rate(&self) -> Option<Rate> {
        self.core().rate.rate()
    }

    /// Bodies running under the limiter now.
    pub fn active(&self) -> usize {
        let active = self.core().active();
        #[cfg(feature = "redis")]
        let active = active.saturating_sub(self.leasing());
        active
    }

    /// Callers queued now. On a name shared through a server (cargo
    /// feature `redis`), this counts the callers of this process waiting
    /// for their lease from the server too (not those of other processes).
    pub fn waiting(&self) -> usize {
        let waiting = self.core().waiting();
        #[cfg(feature = "redis")]
        let waiting = waiting + self.leasing();
        waiting
    }

    /// Callers of this process waiting for a lease from the server.
    #[cfg(feature = "redis")]
    fn leasing(&self) -> usize {
        self.inner.leasing.load(Ordering::Relaxed)
    }

    /// Permits a caller could take right now without waiting.
    pub fn available(&self) -> usize {
        self.core().available()
    }

    /// Changes the limit while the limiter is in use.
    ///
    /// Raising it lets queued callers in at once. Lowering it never
    /// interrupts running bodies: new starts wait until fewer than the new
    /// `max` are running. `usize::MAX` (or anything above `isize::MAX / 8`)
    /// removes the cap.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = limit_runtime::Limiter::named("doc-resize", 2);
    /// l.set_max(20);
    /// assert_eq!(l.max(), 20);
    /// # }
    /// ```
    ///
    /// For an adaptive limiter this is the ceiling: the limit in force is
    /// lowered to it if it is above.
    pub fn set_max(&self, max: usize) {
        match &self.inner.adaptive {
            Some(a) => a.set_ceiling(max.min(MAX_PERMITS), self.core()),
            None => self.core().set_max(max),
        }
    }

    /// Changes the rate while the limiter is in use (`None` removes it).
    ///
    /// Waiters the old rate held back start as soon as the new one allows.
    /// The rate's state carries over: a start just before the change still
    /// counts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use limit_runtime::{Limiter, Rate};
    ///
    /// let github = Limiter::named("doc-github", usize::MAX); // no concurrency cap
    /// github.set_rate(Some("5000/h".parse().unwrap()));
    /// assert_eq!(github.rate(), Some(Rate::per_hour(5000)));
    /// github.set_rate(None);
    /// assert_eq!(github.rate(), None);
    /// # }
    /// ```
    pub fn set_rate(&self, rate: Option<Rate>) {
        self.core().set_rate(rate);
    }

    /// Permits that [batch](crate::batch) work never takes, so that online
    /// calls find one free at once even while a batch saturates the
    /// limiter.
    pub fn reserve(&self) -> usize {
        self.core().reserve()
    }

    /// Changes the reserve: batch work never holds more than
    /// `limit − reserve` permits. Batch calls already running are not
    /// interrupted. A reserve of `limit` or more stops batch work from
    /// starting at all (a way to pause a job by hand), except under an
    /// adaptive limit, which never falls to the reserve: it stays at least
    /// `reserve + 1` (within its ceiling), so that batch work always has a
    /// permit and its calls keep telling the limit it may rise.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use limit_runtime::{batch, Limiter};
    ///
    /// let users = Limiter::named("doc-reserve", 4);
    /// users.set_reserve(1);
    /// let job = batch::scope(async {
    ///     let permits: Vec<_> = (0..3).filter_map(|_| users.try_acquire()).collect();
    ///     assert_eq!(permits.len(), 3);
    ///     assert!(users.try_acquire().is_none()); // the 4th is reserved
    ///     permits
    /// })
    /// .await;
    /// assert!(users.try_acquire().is_some()); // online work gets it
    /// # drop(job);
    /// # }
    /// ```
    pub fn set_reserve(&self, reserve: usize) {
        self.core().set_reserve(reserve);
        if let Some(a) = &self.inner.adaptive {
            a.lift_to_floor(self.core());
        }
    }

    /// Permits held by batch work now.
    pub fn batch_active(&self) -> usize {
        self.core().batch_active()
    }

    /// Runs `fut` once it may start, and gives the permit back when it
    /// finishes or is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = limit_runtime::Limiter::named("doc-run", 1);
    /// assert_eq!(l.run(async { "done" }).await, "done");
    /// # }
    /// ```
    ///
    /// Under an adaptive limit, a future that finishes is a success (a
    /// latency sample); to report failures and overload, use
    /// [`acquire`](Limiter::acquire) and [`Permit::record`].
    pub async fn run<F: Future>(&self, fut: F) -> F::Output {
        let permit = self.acquire().await;
        let out = fut.await;
        permit.record(Outcome::Success);
        out
    }

    /// Waits, as long as it takes, until the caller may start. The permit is
    /// held until the returned [`Permit`] is dropped.
    #[inline]
    pub fn acquire(&self) -> Acquire<'_> {
        Acquire {
            inner: self.acquire_patient(Patience::UNLIMITED, Origin::None),
        }
    }

    /// Waits until the caller may start, within `options`: gives up with
    /// [`ErrorKind::WaitTimeout`] after `wait`, or is refused at once with
    /// [`ErrorKind::QueueFull`] when `queue` callers already wait. The error
    /// names the limiter and the line this was called from.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use std::time::Duration;
    /// use limit_runtime::{AcquireOptions, ErrorKind, Limiter};
    ///
    /// let l = Limiter::named("doc-acquire-with", 1);
    /// let held = l.acquire().await;
    /// let patient = AcquireOptions::new().wait(Duration::from_millis(200));
    /// let err = l.acquire_with(patient).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::WaitTimeout);
    /// assert!(err.to_string().starts_with(
    ///     "limiter \"doc-acquire-with\": gave up after waiting 200ms for a permit (wait = \"200ms\" at "
    /// ));
    /// let never_wait = AcquireOptions::new().queue(0);
    /// assert_eq!(l.acquire_with(never_wait).await.unwrap_err().kind(), ErrorKind::QueueFull);
    /// drop(held);
    /// assert!(l.acquire_with(never_wait).await.is_ok());
    /// # }
    /// ```
    #[track_caller]
    pub fn acquire_with(&self, options: AcquireOptions) -> AcquireWith<'_> {
        let origin = Origin::Call(std::panic::Location::caller());
        self.acquire_patient(options.patience, origin)
    }

    /// [`acquire_with`](Limiter::acquire_with) for callers that record
    /// where their options were written themselves (the tower layer).
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn acquire_at(
        &self,
        options: AcquireOptions,
        at: &'static std::panic::Location<'static>,
    ) -> AcquireWith<'_> {
        self.acquire_patient(options.patience, Origin::Call(at))
    }

    #[inline]
    pub(crate) fn acquire_patient(&self, patience: Patience, origin: Origin) -> AcquireWith<'_> {
        AcquireWith {
            limiter: self,
            // The class is the poller's, read at the first poll (see
            // `AcquireWith::poll`): a future built outside a batch scope
            // and awaited inside one is batch work.
            waiter: self.core().acquire(Class::Online, patience),
            origin,
            #[cfg(feature = "tracing")]
            reported: false,
            #[cfg(feature = "redis")]
            remote: backend::Remote::default(),
        }
    }

    /// Starts now if the limiter allows it without waiting (a permit free,
    /// nobody queued, the rate allows a start).
    ///
    /// A name shared through a server (cargo feature `redis`) cannot start
    /// without a round trip: this returns `None` for it; use
    /// [`acquire_with`](Limiter::acquire_with) with
    /// [`queue(0)`](AcquireOptions::queue) instead.
    // Always: the uncontended start of the tower layer is this call.
    #[inline(always)]
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        #[cfg(feature = "redis")]
        if self.inner.backend.get().is_some() {
            return None;
        }
        let class = crate::batch::class();
        // `then`, not `then_some`: a `Permit` built for nothing would give
        // back a permit never taken when it is dropped.
        self.core().try_acquire(class).then(|| self.permit(class))
    }

    /// A copy of the limiter's counters.
    pub fn stats(&self) -> LimiterStats {
        let core = self.core();
        let c = &core.counters;
        let a = self.inner.adaptive.as_deref();
        let limit = self.limit();
        LimiterStats {
            name: self.name().to_owned(),
            max: self.max(),
            limit,
            rate: self.rate(),
            active: self.active(),
            waiting: self.waiting(),
            acquired: c.hot.sum(core::ACQUIRED),
            peak_active: c.peak_active.load(Ordering::Relaxed),
            waited: c.hot.sum(core::WAITED),
            wait_total: Duration::from_nanos(c.hot.sum(core::WAIT_NS)),
            wait_max: Duration::from_nanos(c.hot.max(core::WAIT_MAX_NS)),
            rejected_full: c.rejected_full.load(Ordering::Relaxed),
            rejected_wait: c.rejected_wait.load(Ordering::Relaxed),
            reserve: core.reserve(),
            batch_active: core.batch_active(),
            waited_batch: c.hot.sum(core::WAITED_BATCH),
            wait_total_batch: Duration::from_nanos(c.hot.sum(core::WAIT_BATCH_NS)),
            rejected_batch: c.rejected_batch.load(Ordering::Relaxed),
            adaptive: self.inner.adaptive.is_some(),
            limit_min_seen: a.map_or(limit, |a| a.limit_seen().0),
            limit_max_seen: a.map_or(limit, |a| a.limit_seen().1),
            baseline: a.and_then(Adaptive::baseline),
            latency: a.and_then(Adaptive::latency),
            samples: a.map_or(0, Adaptive::samples),
            overloads: a.map_or(0, Adaptive::drops),
            backend: self.backend_mode(),
        }
    }

    /// Whether two handles refer to the same limiter.
    pub fn same_as(&self, other: &Limiter) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    #[cold]
    fn refusal(&self, refusal: Refusal, patience: Patience, origin: Origin) -> Error {
        let (kind, what, option) = match refusal {
            Refusal::QueueFull { waiting } => {
                let bound = patience.queue().unwrap_or(0);
                let what = if waiting == 0 {
                    "refused a call: no permit was free and the declaration allows no waiting"
                        .to_owned()
                } else {
                    format!(
                        "refused a call: {waiting} call{} already waiting for a permit",
                        if waiting == 1 { " was" } else { "s were" }
                    )
                };
                (ErrorKind::QueueFull, what, format!("queue = {bound}"))
            }
            Refusal::WaitTimeout { .. } => {
                let wait = Written(patience.wait().unwrap_or_default());
                (
                    ErrorKind::WaitTimeout,
                    format!("gave up after waiting {wait} for a permit"),
                    format!("wait = \"{wait}\""),
                )
            }
        };
        let (file, line) = origin.file_line();
        Error::new(kind, Subject::Limiter, self.name(), what).caused_by(option, file, line)
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Limiter");
        d.field("name", &self.name())
            .field("max", &self.max())
            .field("active", &self.active())
            .field("waiting", &self.waiting());
        if let Some(r) = self.rate() {
            d.field("rate", &r);
        }
        d.finish()
    }
}

/// Future returned by [`Limiter::acquire_with`] and
/// [`StaticLimiter::acquire_declared`]: a [`Permit`], or the
/// [`Error`] that refused the call.
#[must_use = "futures do nothing unless awaited"]
pub struct AcquireWith<'a> {
    limiter: &'a Limiter,
    waiter: Waiter<'a>,
    origin: Origin,
    #[cfg(feature = "tracing")]
    reported: bool,
    /// A shared name: the lease asked for once the local core let the
    /// caller start.
    #[cfg(feature = "redis")]
    remote: backend::Remote<'a>,
}

impl<'a> Future for AcquireWith<'a> {
    type Output = Result<Permit<'a>, Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let limiter = this.limiter;
        if this.waiter.unpolled() {
            this.waiter.set_class(crate::batch::class());
        }
        #[cfg(feature = "redis")]
        if let Some(b) = limiter.inner.backend.get() {
            let poll = this.poll_shared(b, cx);
            // Waiting for the server's answer is not a full limiter (the
            // server's queue is its own story: `limit_runtime::redis`).
            #[cfg(feature = "tracing")]
            if !(poll.is_pending() && this.remote.asking()) {
                this.trace(&poll);
            }
            return poll;
        }
        let poll = match Pin::new(&mut this.waiter).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                #[cfg(feature = "metrics")]
                if this.waiter.queued() {
                    record_wait(limiter, &this.waiter);
                }
                Poll::Ready(Ok(limiter.permit(this.waiter.class())))
            }
            Poll::Ready(Err(refusal)) => Poll::Ready(Err(limiter.refusal(
                refusal,
                this.waiter.patience(),
                this.origin,
            ))),
        };
        #[cfg(feature = "tracing")]
        this.trace(&poll);
        poll
    }
}

#[cfg(feature = "tracing")]
impl<'a> AcquireWith<'a> {
    /// The `tracing` events of a poll: the first time the caller has to
    /// wait (`TRACE`), and a refusal (`DEBUG`), on a local or a shared name
    /// alike.
    fn trace(&mut self, poll: &Poll<Result<Permit<'a>, Error>>) {
        let limiter = self.limiter;
        match poll {
            Poll::Pending if !self.reported => {
                self.reported = true;
                tracing::trace!(
                    target: "limit_runtime::limited",
                    limiter = limiter.name(),
                    max = limiter.max(),
                    waiting = limiter.waiting(),
                    "limiter full; waiting for a permit"
                );
            }
            Poll::Ready(Err(err)) => {
                tracing::debug!(
                    target: "limit_runtime::limited",
                    limiter = limiter.name(),
                    kind = ?err.kind(),
                    "call refused: {err}"
                );
            }
            _ => {}
        }
    }
}

impl AcquireWith<'_> {
    /// Makes the future wait again from the start: a fresh one for the same
    /// limiter, options and origin, built in place (the tower layer keeps
    /// one per service, so that one allocation serves all its waits). The
    /// old one is dropped first, as any: a queued waiter leaves the queue
    /// and its timer goes.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn restart(&mut self) {
        *self = self
            .limiter
            .acquire_patient(self.waiter.patience(), self.origin);
    }
}

impl fmt::Debug for AcquireWith<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireWith")
            .field("limiter", &self.limiter.name())
            .finish()
    }
}

/// Future returned by [`Limiter::acquire`]: waits as long as it takes.
#[must_use = "futures do nothing unless awaited"]
pub struct Acquire<'a> {
    inner: AcquireWith<'a>,
}

impl<'a> Future for Acquire<'a> {
    type Output = Permit<'a>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit<'a>> {
        Pin::new(&mut self.inner).poll(cx).map(|r| match r {
            Ok(p) => p,
            Err(e) => never_refused(&e),
        })
    }
}

/// The wait-time histogram's sample of a call that queued (out of line:
/// the uncontended start pays one comparison for it).
#[cfg(feature = "metrics")]
#[cold]
#[inline(never)]
fn record_wait(limiter: &Limiter, waiter: &Waiter<'_>) {
    crate::integrations::metrics::waited(limiter.name(), &limiter.inner.waits, waiter.waited());
}

#[cold]
fn never_refused(e: &Error) -> ! {
    unreachable!("a call without `wait` or `queue` was refused: {e}")
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("limiter", &self.inner.limiter.name())
            .finish()
    }
}

/// The right to run one body under a [`Limiter`]; dropping it gives the
/// permit back.
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct Permit<'a> {
    limiter: &'a Limiter,
    /// `started << 1 | batch`: for an adaptive limiter, when the permit was
    /// granted (0 otherwise), and whether it is batch work's. One word, so
    /// a permit is two (it moves with every service call of the tower
    /// layer).
    meta: u64,
    /// The lease of a shared name, given back after the local permit.
    #[cfg(feature = "redis")]
    lease: Option<backend::Lease>,
}

impl Permit<'_> {
    /// Gives the permit back, telling an adaptive limiter how the body
    /// ended (see [`Outcome`]); for a fixed limiter, the same as dropping
    /// the permit.
    ///
    /// A permit dropped without `record` tells the limiter nothing: a body
    /// cancelled or panicking is neither a sample nor a drop.
    #[inline]
    pub fn record(self, outcome: Outcome) {
        self.note(outcome);
    }

    /// Tells an adaptive limiter how the body ended, keeping the permit
    /// (it goes back when dropped).
    #[inline]
    pub(crate) fn note(&self, outcome: Outcome) {
        if self.started() != 0 {
            self.record_slow(outcome);
        }
    }

    #[inline]
    fn started(&self) -> u64 {
        self.meta >> 1
    }

    #[inline]
    fn class(&self) -> Class {
        if self.meta & 1 == 1 {
            Class::Batch
        } else {
            Class::Online
        }
    }

    /// Adaptive limiters: the body starts now (after a remote wait).
    #[cfg(feature = "redis")]
    fn restart(&mut self) {
        if let Some(a) = &self.limiter.inner.adaptive {
            self.meta = (a.now() << 1) | (self.meta & 1);
        }
    }

    #[cold]
    fn record_slow(&self, outcome: Outcome) {
        if let Some(a) = &self.limiter.inner.adaptive {
            let core = self.limiter.core();
            let limit = core.max();
            // Nine tenths of the limit running, or batch work holding all
            // the reserve leaves it: the limit is what holds calls back
            // (callers queued for a rate slot do not count).
            let reserve = core.reserve();
            let saturated = core.active() * 10 >= limit * 9
                || (reserve > 0 && core.batch_active() + reserve >= limit);
            a.record(core, self.started(), outcome, saturated);
        }
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.limiter.core().release(self.class());
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("limiter", &self.limiter.name())
            .field("batch", &(self.class() == Class::Batch))
            .finish()
    }
}

/// The named limiter called `name`, if it exists.
#[cfg(feature = "redis")]
pub(crate) fn named_limiter(name: &str) -> Option<Limiter> {
    registry().named.get(name).map(|e| e.limiter.clone())
}

/// Returns the named limiter called `name`, or, failing that, a private
/// limiter labelled `name`; `None` if neither exists yet.
///
/// A `#[limited]` function creates its limiter on its first call, so before
/// that call this returns `None`.
pub fn limiter(name: &str) -> Option<Limiter> {
    let reg = registry();
    if let Some(e) = reg.named.get(name) {
        return Some(e.limiter.clone());
    }
    let found = reg.private().find(|l| l.name() == name);
    found
}

/// A snapshot of every limiter in the process, named and private, sorted by
/// name.
///
/// ```
/// let _ = limit_runtime::Limiter::named("doc-all", 1);
/// assert!(limit_runtime::limiters().iter().any(|l| l.name() == "doc-all"));
/// ```
pub fn limiters() -> Vec<Limiter> {
    let reg = registry();
    let mut all: Vec<Limiter> = reg
        .named
        .values()
        .map(|e| e.limiter.clone())
        .chain(reg.private())
        .collect();
    drop(reg);
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all
}
