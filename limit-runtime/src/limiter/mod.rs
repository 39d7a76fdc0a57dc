//! Named, process-wide concurrency limiters.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::sem::{self, Semaphore};

/// A concurrency limit: at most [`max`](Limiter::max) futures run under it
/// at once, the others wait in first-come, first-served order.
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
    sem: Semaphore,
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
    /// The current limit.
    pub max: usize,
    /// Bodies running now.
    pub active: usize,
    /// Callers queued now.
    pub waiting: usize,
    /// Permits handed out since the limiter was created.
    pub acquired: u64,
    /// The most bodies that ever ran at once.
    pub peak_active: usize,
    /// Calls that had to queue before they got a permit.
    pub waited: u64,
    /// Time all queued calls spent waiting, added up.
    pub wait_total: Duration,
    /// The longest time one call waited.
    pub wait_max: Duration,
}

impl Limiter {
    fn create(name: &str, named: bool, max: usize) -> Limiter {
        Limiter {
            inner: Arc::new(Inner {
                name: name.into(),
                named,
                sem: Semaphore::new(max),
            }),
        }
    }

    /// Returns the limiter called `name`, creating it with `max` permits if
    /// it does not exist yet.
    ///
    /// If it exists, it is returned as it is, whatever its `max`: the first
    /// declaration of a name stands. (A `#[limited]` function whose `max`
    /// differs from the first declaration panics in debug builds; see the
    /// crate docs.) A `max` of 0 creates a paused limiter that admits nobody
    /// until [`set_max`](Limiter::set_max) raises it.
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
        let limiter = Limiter::create(name, true, max);
        reg.named.insert(
            name.into(),
            Entry {
                limiter: limiter.clone(),
                declared: Declaration {
                    max,
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
    /// ```
    /// use limit_runtime::Limiter;
    ///
    /// let mine = Limiter::private("thumbnails", 4);
    /// assert!(!mine.same_as(&Limiter::private("thumbnails", 4)));
    /// ```
    pub fn private(name: &str, max: usize) -> Limiter {
        let limiter = Limiter::create(name, false, max);
        registry().private.push(limiter.clone());
        limiter
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether this limiter is shared by name (`false` for private ones).
    pub fn is_named(&self) -> bool {
        self.inner.named
    }

    /// The current limit.
    pub fn max(&self) -> usize {
        self.inner.sem.max()
    }

    /// Bodies running under the limiter now.
    pub fn active(&self) -> usize {
        self.inner.sem.active()
    }

    /// Callers queued now.
    pub fn waiting(&self) -> usize {
        self.inner.sem.waiting()
    }

    /// Permits a caller could take right now without waiting.
    pub fn available(&self) -> usize {
        self.inner.sem.available()
    }

    /// Changes the limit while the limiter is in use.
    ///
    /// Raising it lets queued callers in at once. Lowering it never
    /// interrupts running bodies: new starts wait until fewer than the new
    /// `max` are running. Values above `isize::MAX / 8` are clamped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = limit_runtime::Limiter::named("doc-resize", 2);
    /// l.set_max(20);
    /// assert_eq!(l.max(), 20);
    /// # }
    /// ```
    pub fn set_max(&self, max: usize) {
        self.inner.sem.set_max(max);
    }

    /// Runs `fut` once a permit is free, and gives the permit back when it
    /// finishes or is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = limit_runtime::Limiter::named("doc-run", 1);
    /// assert_eq!(l.run(async { "done" }).await, "done");
    /// # }
    /// ```
    pub async fn run<F: Future>(&self, fut: F) -> F::Output {
        let _permit = self.acquire().await;
        fut.await
    }

    /// Waits for a permit. The permit is held until the returned [`Permit`]
    /// is dropped.
    pub fn acquire(&self) -> Acquire<'_> {
        Acquire {
            limiter: self,
            inner: self.inner.sem.acquire(),
            #[cfg(feature = "tracing")]
            reported: false,
        }
    }

    /// Takes a permit if one is free and nobody is waiting for one.
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        self.inner
            .sem
            .try_acquire()
            .then(|| Permit { limiter: self })
    }

    /// A copy of the limiter's counters.
    pub fn stats(&self) -> LimiterStats {
        self.inner.sem.stats(self.name().to_owned())
    }

    /// Whether two handles refer to the same limiter.
    pub fn same_as(&self, other: &Limiter) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.name())
            .field("max", &self.max())
            .field("active", &self.active())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// Future returned by [`Limiter::acquire`].
#[must_use = "futures do nothing unless awaited"]
pub struct Acquire<'a> {
    limiter: &'a Limiter,
    inner: sem::Acquire<'a>,
    #[cfg(feature = "tracing")]
    reported: bool,
}

impl<'a> Future for Acquire<'a> {
    type Output = Permit<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit<'a>> {
        let limiter = self.limiter;
        let poll = Pin::new(&mut self.inner).poll(cx);
        #[cfg(feature = "tracing")]
        if poll.is_pending() && !self.reported {
            self.reported = true;
            tracing::trace!(
                target: "limit_runtime::limited",
                limiter = limiter.name(),
                max = limiter.max(),
                waiting = limiter.waiting(),
                "limiter full; waiting for a permit"
            );
        }
        poll.map(|()| Permit { limiter })
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("limiter", &self.limiter.name())
            .finish()
    }
}

/// A permit of a [`Limiter`]; dropping it gives the permit back.
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct Permit<'a> {
    limiter: &'a Limiter,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limiter.inner.sem.release();
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("limiter", &self.limiter.name())
            .finish()
    }
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
    reg.private.iter().find(|l| l.name() == name).cloned()
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
        .chain(reg.private.iter().cloned())
        .collect();
    drop(reg);
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all
}

struct Registry {
    named: HashMap<Box<str>, Entry>,
    private: Vec<Limiter>,
}

struct Entry {
    limiter: Limiter,
    declared: Declaration,
}

#[derive(Clone, Copy)]
struct Declaration {
    max: usize,
    file: &'static str,
    line: u32,
}

impl fmt::Display for Declaration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "max = {} at {}:{}", self.max, self.file, self.line)
    }
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| {
    Mutex::new(Registry {
        named: HashMap::new(),
        private: Vec::new(),
    })
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // The registry is never left half-updated, so a poisoned lock is safe.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A limiter declared in a `static`: resolved against the registry on first
/// use, then a plain pointer read on every call.
///
/// This is what `#[limited]` expands to, and the way to write the same thing
/// by hand:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use limit_runtime::StaticLimiter;
///
/// static ADDRESS: StaticLimiter = StaticLimiter::new("doc-static", 10);
///
/// async fn fetch_address(id: u64) -> u64 {
///     ADDRESS.run(async move { id * 2 }).await
/// }
///
/// assert_eq!(fetch_address(21).await, 42);
/// assert_eq!(ADDRESS.max(), 10); // derefs to `Limiter`
/// # }
/// ```
///
/// Two declarations of one name with different `max` are a bug: on the
/// first use of the second one, debug builds panic with a message that names
/// the limiter and both declarations; release builds keep the first.
pub struct StaticLimiter {
    name: &'static str,
    named: bool,
    max: usize,
    file: &'static str,
    line: u32,
    strict: bool,
    cell: OnceLock<Limiter>,
}

impl StaticLimiter {
    /// A declaration of the shared limiter `name` with `max` permits,
    /// recording where it is written (for conflict messages).
    ///
    /// # Panics
    ///
    /// At compile time (the constructor runs in a `static`'s initializer) if
    /// `max` is 0.
    #[track_caller]
    pub const fn new(name: &'static str, max: usize) -> Self {
        assert!(max >= 1, "a limiter's `max` must be at least 1");
        let at = std::panic::Location::caller();
        StaticLimiter {
            name,
            named: true,
            max,
            file: at.file(),
            line: at.line(),
            strict: cfg!(debug_assertions),
            cell: OnceLock::new(),
        }
    }

    /// A limiter of this declaration's own, labelled `label` (the macro
    /// uses the function's module path and name).
    ///
    /// # Panics
    ///
    /// At compile time if `max` is 0.
    #[track_caller]
    pub const fn private(label: &'static str, max: usize) -> Self {
        let mut this = StaticLimiter::new(label, max);
        this.named = false;
        this
    }

    /// Overrides where the declaration is said to be written (by default,
    /// where [`new`](StaticLimiter::new) is called).
    pub const fn declared_at(mut self, file: &'static str, line: u32) -> Self {
        self.file = file;
        self.line = line;
        self
    }

    /// The limiter, created or looked up on first use.
    ///
    /// # Panics
    ///
    /// In builds with debug assertions, if another declaration of the same
    /// name has a different `max`.
    #[inline]
    pub fn limiter(&self) -> &Limiter {
        self.cell.get_or_init(|| self.resolve())
    }

    #[cold]
    fn resolve(&self) -> Limiter {
        if !self.named {
            return Limiter::private(self.name, self.max);
        }
        let mine = Declaration {
            max: self.max,
            file: self.file,
            line: self.line,
        };
        let mut reg = registry();
        let Some(entry) = reg.named.get(self.name) else {
            let limiter = Limiter::create(self.name, true, self.max);
            let entry = Entry {
                limiter: limiter.clone(),
                declared: mine,
            };
            reg.named.insert(self.name.into(), entry);
            return limiter;
        };
        let first = entry.declared;
        let limiter = entry.limiter.clone();
        drop(reg);
        if first.max != mine.max && self.strict {
            panic!(
                "limiter \"{}\" is declared twice with different limits: {} and {}; \
                 give both declarations the same max, or use two names \
                 (release builds keep the first declaration)",
                self.name, first, mine
            );
        }
        limiter
    }
}

impl std::ops::Deref for StaticLimiter {
    type Target = Limiter;

    fn deref(&self) -> &Limiter {
        self.limiter()
    }
}

impl fmt::Debug for StaticLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticLimiter")
            .field("name", &self.name)
            .field("max", &self.max)
            .field("declared_at", &format_args!("{}:{}", self.file, self.line))
            .finish()
    }
}
