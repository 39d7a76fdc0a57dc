//! The process-wide registry of limiters, and [`StaticLimiter`]: a
//! declaration (what `#[limited]` writes) resolved against it once.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use super::core::{Patience, MAX_PERMITS};
use super::{AcquireWith, AdaptiveOptions, Inner, Limiter, Origin, Rate};
use crate::error::Written;

pub(super) struct Registry {
    pub(super) named: HashMap<Box<str>, Entry>,
    /// Private limiters, as long as a handle to them lives: a program that
    /// makes one per connection or per tenant does not keep them all.
    private: Vec<Weak<Inner>>,
    /// When `private` has this many entries, the dead ones are dropped.
    prune_at: usize,
}

impl Registry {
    /// Lists a private limiter, dropping those no handle refers to any
    /// more once there are many (so that the list stays within twice the
    /// live ones, at a cost per limiter created that does not grow).
    pub(super) fn add_private(&mut self, limiter: &Limiter) {
        if self.private.len() >= self.prune_at {
            self.private.retain(|w| w.strong_count() > 0);
            self.prune_at = (self.private.len() * 2).max(MIN_PRUNE_AT);
        }
        self.private.push(Arc::downgrade(&limiter.inner));
    }

    /// The private limiters alive now, in the order they were made.
    pub(super) fn private(&self) -> impl Iterator<Item = Limiter> + '_ {
        self.private
            .iter()
            .filter_map(Weak::upgrade)
            .map(|inner| Limiter { inner })
    }
}

const MIN_PRUNE_AT: usize = 64;

pub(super) struct Entry {
    pub(super) limiter: Limiter,
    pub(super) declared: Declaration,
}

/// What a declaration says about the limiter as a whole (its *name*
/// options), and where it is written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Declaration {
    /// `MAX_PERMITS` or more: no concurrency cap.
    pub(super) max: usize,
    pub(super) rate: Option<Rate>,
    pub(super) reserve: usize,
    pub(super) adaptive: Option<AdaptiveOptions>,
    pub(super) file: &'static str,
    pub(super) line: u32,
}

impl Declaration {
    fn same_options(&self, other: &Declaration) -> bool {
        self.max.min(MAX_PERMITS) == other.max.min(MAX_PERMITS)
            && self.rate == other.rate
            && self.reserve == other.reserve
            && self.adaptive == other.adaptive
    }
}

impl fmt::Display for Declaration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if self.max < MAX_PERMITS {
            write!(f, "max = {}", self.max)?;
            sep = ", ";
        }
        if let Some(r) = self.rate {
            let plain = r.with_burst(1);
            write!(f, "{sep}rate = \"{plain}\"")?;
            if r.burst() != 1 {
                write!(f, ", burst = {}", r.burst())?;
            }
        }
        if self.reserve != 0 {
            write!(f, ", reserve = {}", self.reserve)?;
        }
        if let Some(a) = self.adaptive {
            write!(
                f,
                ", adaptive, min = {}, initial = {}",
                a.get_min(),
                a.get_initial()
            )?;
        }
        write!(f, " at {}:{}", self.file, self.line)
    }
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| {
    Mutex::new(Registry {
        named: HashMap::new(),
        private: Vec::new(),
        prune_at: MIN_PRUNE_AT,
    })
});

pub(super) fn registry() -> MutexGuard<'static, Registry> {
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
/// use std::time::Duration;
/// use limit_runtime::{Rate, StaticLimiter};
///
/// static ADDRESS: StaticLimiter = StaticLimiter::new("doc-static", 10);
/// static USERS: StaticLimiter = StaticLimiter::new("doc-static-users", 20)
///     .rate(Rate::per_second(50).with_burst(10))
///     .wait(Duration::from_millis(200));
///
/// async fn fetch_address(id: u64) -> u64 {
///     ADDRESS.run(async move { id * 2 }).await
/// }
///
/// async fn fetch_user(id: u64) -> Result<u64, limit_runtime::Error> {
///     let _permit = USERS.acquire_declared().await?; // WaitTimeout after 200 ms
///     Ok(id)
/// }
///
/// assert_eq!(fetch_address(21).await, 42);
/// assert_eq!(fetch_user(7).await.unwrap(), 7);
/// assert_eq!(ADDRESS.max(), 10); // derefs to `Limiter`
/// # }
/// ```
///
/// The *name* options (`max`, `rate` with its burst) belong to the limiter:
/// two declarations of one name that disagree are a bug. On the first use
/// of the second one, debug builds panic with a message that names the
/// limiter and both declarations; release builds keep the first. The
/// *function* options (`wait`, `queue`) belong to the declaration: each
/// function decides how patient its own calls are.
pub struct StaticLimiter {
    name: &'static str,
    named: bool,
    max: usize,
    rate: Option<Rate>,
    reserve: usize,
    adaptive: Option<AdaptiveOptions>,
    patience: Patience,
    file: &'static str,
    line: u32,
    strict: bool,
    cell: OnceLock<Limiter>,
}

impl StaticLimiter {
    /// A declaration of the shared limiter `name` with `max` permits,
    /// recording where it is written (for conflict and error messages).
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
            rate: None,
            reserve: 0,
            adaptive: None,
            patience: Patience::UNLIMITED,
            file: at.file(),
            line: at.line(),
            strict: cfg!(debug_assertions),
            cell: OnceLock::new(),
        }
    }

    /// A declaration of the shared limiter `name` with no concurrency cap:
    /// give it a [`rate`](StaticLimiter::rate).
    #[track_caller]
    pub const fn uncapped(name: &'static str) -> Self {
        let mut this = StaticLimiter::new(name, 1);
        this.max = usize::MAX;
        this
    }

    /// A limiter of this declaration's own, labelled `label` (the macro
    /// uses the function's module path and name).
    ///
    /// # Panics
    ///
    /// At compile time if `max` is 0.
    #[track_caller]
    pub const fn private(label: &'static str, max: usize) -> Self {
        StaticLimiter::new(label, max).unshared()
    }

    /// Makes the declaration's limiter its own instead of the shared one
    /// with its name (the name becomes a label).
    pub const fn unshared(mut self) -> Self {
        self.named = false;
        self
    }

    /// Starts of bodies are limited to this rate (a *name* option).
    pub const fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Permits that batch work never takes (a *name* option; see
    /// [`Limiter::set_reserve`]).
    pub const fn reserve(mut self, reserve: usize) -> Self {
        self.reserve = reserve;
        self
    }

    /// Makes the limit adaptive, with `max` (from
    /// [`new`](StaticLimiter::new)) as its ceiling (a *name* option; see
    /// [`Limiter::adaptive`]).
    pub const fn adaptive(mut self, options: AdaptiveOptions) -> Self {
        self.adaptive = Some(options);
        self
    }

    /// Calls through [`acquire_declared`](StaticLimiter::acquire_declared)
    /// give up with [`ErrorKind::WaitTimeout`](crate::ErrorKind::WaitTimeout)
    /// after waiting this long (a *function* option).
    pub const fn wait(mut self, wait: Duration) -> Self {
        self.patience = self.patience.with_wait(wait);
        self
    }

    /// Calls through [`acquire_declared`](StaticLimiter::acquire_declared)
    /// are refused with [`ErrorKind::QueueFull`](crate::ErrorKind::QueueFull)
    /// when this many calls already wait (a *function* option; 0: never
    /// wait).
    pub const fn queue(mut self, queue: usize) -> Self {
        self.patience = self.patience.with_queue(queue);
        self
    }

    /// Overrides where the declaration is said to be written (by default,
    /// where [`new`](StaticLimiter::new) is called).
    pub const fn declared_at(mut self, file: &'static str, line: u32) -> Self {
        self.file = file;
        self.line = line;
        self
    }

    /// Waits for a start with this declaration's `wait` and `queue`; a
    /// refusal names the option and this declaration's `file:line`.
    #[inline]
    pub fn acquire_declared(&'static self) -> AcquireWith<'static> {
        self.limiter()
            .acquire_patient(self.patience, Origin::Declared(self))
    }

    /// Waits as long as it takes (what a function that cannot carry an
    /// error does): never refused, even by a shared name that fails closed.
    #[doc(hidden)]
    #[inline]
    pub fn acquire_unrefused(&'static self) -> AcquireWith<'static> {
        self.limiter()
            .acquire_patient(Patience::UNLIMITED, Origin::None)
    }

    pub(super) fn declared_file_line(&self) -> (&'static str, u32) {
        (self.file, self.line)
    }

    /// The limiter, created or looked up on first use.
    ///
    /// # Panics
    ///
    /// In builds with debug assertions, if another declaration of the same
    /// name has different *name* options (`max`, `rate`, `burst`,
    /// `reserve`).
    #[inline]
    pub fn limiter(&self) -> &Limiter {
        self.cell.get_or_init(|| self.resolve())
    }

    #[cold]
    fn resolve(&self) -> Limiter {
        if !self.named {
            let limiter = Limiter::create_private(self.name, self.max, self.rate, self.adaptive);
            limiter.set_reserve(self.reserve);
            return limiter;
        }
        let mine = Declaration {
            max: self.max,
            rate: self.rate,
            reserve: self.reserve,
            adaptive: self.adaptive,
            file: self.file,
            line: self.line,
        };
        let mut reg = registry();
        let Some(entry) = reg.named.get(self.name) else {
            let limiter = Limiter::create(self.name, true, self.max, self.rate, self.adaptive);
            limiter.set_reserve(self.reserve);
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
        if !first.same_options(&mine) && self.strict {
            panic!(
                "limiter \"{}\" is declared twice with different options: {} and {}; \
                 give both declarations the same `max`, `rate`, `burst`, `reserve` and `adaptive` options, or use two names \
                 (release builds keep the first declaration)",
                self.name, first, mine
            );
        }
        limiter
    }
}

impl std::ops::Deref for StaticLimiter {
    type Target = Limiter;

    #[inline]
    fn deref(&self) -> &Limiter {
        self.limiter()
    }
}

impl fmt::Debug for StaticLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("StaticLimiter");
        d.field("name", &self.name);
        if self.max < MAX_PERMITS {
            d.field("max", &self.max);
        }
        if let Some(r) = &self.rate {
            d.field("rate", r);
        }
        if let Some(w) = self.patience.wait() {
            d.field("wait", &format_args!("{}", Written(w)));
        }
        if let Some(q) = self.patience.queue() {
            d.field("queue", &q);
        }
        d.field("declared_at", &format_args!("{}:{}", self.file, self.line))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{registry, MIN_PRUNE_AT};
    use crate::{limiter, limiters, Limiter};

    fn listed(name: &str) -> usize {
        limiters().iter().filter(|l| l.name() == name).count()
    }

    #[test]
    fn a_private_limiter_is_listed_while_a_handle_lives_and_then_forgotten() {
        let kept = Limiter::private("registry-kept", 2);
        for _ in 0..10 * MIN_PRUNE_AT {
            let gone = Limiter::private("registry-gone", 2);
            assert_eq!(gone.max(), 2);
        }
        let clone = kept.clone();
        drop(kept);
        assert_eq!(listed("registry-kept"), 1);
        assert!(limiter("registry-kept").is_some_and(|l| l.same_as(&clone)));
        assert_eq!(listed("registry-gone"), 0);
        assert!(limiter("registry-gone").is_none());
        // The dead entries were dropped along the way: at most as many
        // are left as twice the live ones (other tests may be making
        // limiters at the same time), far fewer than the 640 made here.
        let reg = registry();
        let dead = reg.private.len() - reg.private().count();
        assert!(dead < 10 * MIN_PRUNE_AT, "{dead} dead entries kept");
        drop(reg);
        drop(clone);
        assert_eq!(listed("registry-kept"), 0);
    }
}
