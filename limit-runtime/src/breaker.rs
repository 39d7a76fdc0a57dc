//! Circuit breakers: a failing service locks its callers out instead of
//! being hammered.
//!
//! A [`Breaker`] is **closed** while calls mostly succeed. When, over the
//! last `window`, at least `min_calls` calls finished and at least
//! `failure_rate` of them failed, it **opens**: every call fails at once
//! with [`ErrorKind::CircuitOpen`], without
//! running. After `open_for` it is **half-open**: exactly `half_open` trial
//! calls run and the rest are refused. If all trials succeed it closes; if
//! one fails it opens again.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! use limit_runtime::{Breaker, BreakerConfig, BreakerState};
//! use std::time::Duration;
//!
//! let billing = Breaker::named("doc-billing", BreakerConfig::new().min_calls(4));
//! for _ in 0..4 {
//!     let trial = billing.admit().unwrap();
//!     trial.failure(); // four failures of four calls
//! }
//! assert_eq!(billing.state(), BreakerState::Open);
//! let refused = billing.admit().unwrap_err();
//! assert!(refused.to_string().starts_with("breaker \"doc-billing\": circuit open"));
//! tokio::time::sleep(Duration::from_secs(10)).await; // open_for
//! assert_eq!(billing.state(), BreakerState::HalfOpen);
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Subject, Written};

/// The state of a [`Breaker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls run; outcomes are counted.
    Closed,
    /// Calls are refused.
    Open,
    /// A few trial calls run; the rest are refused.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// The options of a breaker (the *name* options of `#[circuit_breaker]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerConfig {
    failure_rate: f64,
    min_calls: u32,
    window: Duration,
    open_for: Duration,
    half_open: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig::new()
    }
}

impl BreakerConfig {
    /// The defaults: `failure_rate = 0.5`, `min_calls = 20`,
    /// `window = "30s"`, `open_for = "10s"`, `half_open = 3`.
    pub const fn new() -> Self {
        BreakerConfig {
            failure_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(10),
            half_open: 3,
        }
    }

    /// Open when at least this share of the calls in the window failed
    /// (values outside (0, 1] are clamped into it).
    pub const fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = if rate > 1.0 {
            1.0
        } else if rate > 0.0 {
            rate
        } else {
            f64::MIN_POSITIVE
        };
        self
    }

    /// ... and at least this many calls finished in the window (0 counts as
    /// 1).
    pub const fn min_calls(mut self, n: u32) -> Self {
        self.min_calls = if n == 0 { 1 } else { n };
        self
    }

    /// The sliding time window the failure rate is measured over. It is
    /// counted in a hundred steps: an outcome counts until it is between
    /// 99 % and 100 % of `window` old, never longer.
    pub const fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long an open breaker refuses calls before it lets trials through.
    pub const fn open_for(mut self, open_for: Duration) -> Self {
        self.open_for = open_for;
        self
    }

    /// How many trial calls run while half-open (0 counts as 1).
    pub const fn half_open(mut self, n: u32) -> Self {
        self.half_open = if n == 0 { 1 } else { n };
        self
    }
}

/// Buckets of the sliding window. An outcome counts until it is `window`
/// old, or up to `window / BUCKETS` less: time is counted in buckets of
/// `window / BUCKETS`, and a bucket leaves the window whole, when its start
/// is `window` old.
const BUCKETS: usize = 100;

struct Machine {
    state: BreakerState,
    /// Set by `force_open`: open until `reset`.
    forced: bool,
    /// Bumped at every transition: trials of an older generation are not
    /// counted.
    generation: u64,
    opened_at: Instant,
    /// Half-open: trials started, and trials that succeeded.
    trials: u32,
    trials_ok: u32,
    transitions: Vec<Transition>,
}

/// One change of state, from [`BreakerStats::transitions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state entered.
    pub to: BreakerState,
    /// When, since the breaker was created.
    pub at: Duration,
}

/// A copy of a breaker's counters, from [`Breaker::stats`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The breaker's name.
    pub name: String,
    /// The state now.
    pub state: BreakerState,
    /// Calls let through (trials included).
    pub calls: u64,
    /// Calls that counted as failures.
    pub failures: u64,
    /// Calls refused because the breaker was open.
    pub refused: u64,
    /// The last 64 changes of state.
    pub transitions: Vec<Transition>,
}

struct Inner {
    name: Box<str>,
    config: BreakerConfig,
    created: Instant,
    /// Nanoseconds per bucket of the window.
    bucket_ns: u64,
    /// Per bucket: the slot of time it counts, and its counts packed as
    /// `calls << 32 | failures`. A success is counted lock-free when its
    /// bucket is current; everything else goes through the lock.
    slots: [AtomicU64; BUCKETS],
    counts: [AtomicU64; BUCKETS],
    /// The sums of the buckets in the window ending at `head`, kept as
    /// outcomes come in and buckets leave (no sum over the buckets per
    /// call).
    window_calls: AtomicU64,
    window_failures: AtomicU64,
    /// The newest slot the window was slid to (under the lock).
    head: AtomicU64,
    /// `BreakerState` as a number, readable without the lock.
    state: AtomicU8,
    machine: Mutex<Machine>,
    calls: AtomicU64,
    failures: AtomicU64,
    refused: AtomicU64,
}

/// A circuit breaker, shared by name. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

fn state_code(s: BreakerState) -> u8 {
    match s {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

impl Breaker {
    fn create(name: &str, config: BreakerConfig) -> Breaker {
        let now = Instant::now();
        let bucket_ns = u64::try_from((config.window / BUCKETS as u32).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        Breaker {
            inner: Arc::new(Inner {
                name: name.into(),
                config,
                created: now,
                bucket_ns,
                slots: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
                window_calls: AtomicU64::new(0),
                window_failures: AtomicU64::new(0),
                head: AtomicU64::new(0),
                state: AtomicU8::new(0),
                machine: Mutex::new(Machine {
                    state: BreakerState::Closed,
                    forced: false,
                    generation: 0,
                    opened_at: now,
                    trials: 0,
                    trials_ok: 0,
                    transitions: Vec::new(),
                }),
                calls: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Returns the breaker called `name`, creating it with `config` if it
    /// does not exist yet (the first declaration stands).
    pub fn named(name: &str, config: BreakerConfig) -> Breaker {
        let mut reg = registry();
        if let Some((b, _)) = reg.get(name) {
            return b.clone();
        }
        let b = Breaker::create(name, config);
        reg.insert(name.into(), (b.clone(), None));
        b
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its options.
    pub fn config(&self) -> BreakerConfig {
        self.inner.config
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // Every update leaves the machine consistent: poisoning is ignored.
        self.inner
            .machine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The state now (an open breaker whose `open_for` has passed reads as
    /// half-open).
    pub fn state(&self) -> BreakerState {
        let mut m = self.lock();
        self.advance(&mut m, Instant::now());
        m.state
    }

    /// Open → half-open once `open_for` has passed.
    fn advance(&self, m: &mut Machine, now: Instant) {
        if m.state == BreakerState::Open
            && !m.forced
            && now.saturating_duration_since(m.opened_at) >= self.inner.config.open_for
        {
            self.enter(m, BreakerState::HalfOpen, now);
        }
    }

    fn enter(&self, m: &mut Machine, to: BreakerState, now: Instant) {
        m.state = to;
        m.generation += 1;
        m.trials = 0;
        m.trials_ok = 0;
        match to {
            BreakerState::Open => m.opened_at = now,
            BreakerState::Closed => {
                for j in 0..BUCKETS {
                    self.empty(j);
                }
            }
            BreakerState::HalfOpen => {}
        }
        if m.transitions.len() == 64 {
            m.transitions.remove(0);
        }
        m.transitions.push(Transition {
            to,
            at: now.saturating_duration_since(self.inner.created),
        });
        self.inner.state.store(state_code(to), Ordering::Release);
        #[cfg(feature = "tracing")]
        tracing::warn!(
            target: "limit_runtime::breaker",
            breaker = &*self.inner.name,
            state = %to,
            "circuit breaker state changed"
        );
    }

    /// Asks to run one call. `Ok` holds a [`Trial`] to report the outcome
    /// with; `Err` is the [`ErrorKind::CircuitOpen`] refusal.
    pub fn admit(&self) -> Result<Trial<'_>, Error> {
        if self.inner.state.load(Ordering::Acquire) == 0 {
            self.inner.calls.fetch_add(1, Ordering::Relaxed);
            return Ok(Trial {
                breaker: self,
                generation: None,
                done: false,
            });
        }
        self.admit_slow()
    }

    #[cold]
    fn admit_slow(&self) -> Result<Trial<'_>, Error> {
        let now = Instant::now();
        let mut m = self.lock();
        self.advance(&mut m, now);
        let admitted = match m.state {
            BreakerState::Closed => Some(None),
            BreakerState::HalfOpen if m.trials < self.inner.config.half_open => {
                m.trials += 1;
                Some(Some(m.generation))
            }
            _ => None,
        };
        match admitted {
            Some(generation) => {
                self.inner.calls.fetch_add(1, Ordering::Relaxed);
                Ok(Trial {
                    breaker: self,
                    generation,
                    done: false,
                })
            }
            None => {
                self.inner.refused.fetch_add(1, Ordering::Relaxed);
                Err(self.refusal(&m, now))
            }
        }
    }

    fn refusal(&self, m: &Machine, now: Instant) -> Error {
        let what = if m.forced {
            "circuit open (forced open by hand until reset)".to_owned()
        } else if m.state == BreakerState::Open {
            let left = self
                .inner
                .config
                .open_for
                .saturating_sub(now.saturating_duration_since(m.opened_at));
            format!(
                "circuit open; trying again in {}",
                Written(Duration::from_millis(
                    left.as_millis().try_into().unwrap_or(u64::MAX)
                ))
            )
        } else {
            format!(
                "circuit half-open and its {} trial calls are running; refused",
                self.inner.config.half_open
            )
        };
        let err = Error::new(ErrorKind::CircuitOpen, Subject::Breaker, self.name(), what);
        match registry().get(self.name()).and_then(|(_, at)| *at) {
            Some((file, line)) => err.caused_by("#[circuit_breaker]".into(), file, line),
            None => err,
        }
    }

    /// The window's slot of time at `now`.
    fn slot(&self, now: Instant) -> u64 {
        let ns = u64::try_from(now.saturating_duration_since(self.inner.created).as_nanos())
            .unwrap_or(u64::MAX);
        ns / self.inner.bucket_ns
    }

    /// Counts one outcome of a trial.
    #[inline]
    fn record(&self, generation: Option<u64>, failed: bool) {
        if generation.is_none() && !failed {
            // A success while closed: counted without the lock when its
            // bucket is current. It opens the breaker only by bringing the
            // window up to `min_calls` with failures already at the rate,
            // which the lock then checks again.
            let now = Instant::now();
            let slot = self.slot(now);
            let i = (slot % BUCKETS as u64) as usize;
            // A current bucket was claimed under the lock after the window
            // was slid to its slot: the window's sums are up to date.
            if self.inner.slots[i].load(Ordering::Acquire) == slot
                && self.inner.state.load(Ordering::Acquire) == 0
            {
                self.inner.counts[i].fetch_add(1 << 32, Ordering::Relaxed);
                self.inner.window_calls.fetch_add(1, Ordering::Relaxed);
                if self.should_open() {
                    let mut m = self.lock();
                    if m.state == BreakerState::Closed {
                        self.slide(slot);
                        if self.should_open() {
                            self.enter(&mut m, BreakerState::Open, now);
                        }
                    }
                }
                return;
            }
        }
        self.record_locked(generation, failed);
    }

    /// Whether the window's outcomes call for opening.
    fn should_open(&self) -> bool {
        let calls = self.inner.window_calls.load(Ordering::Relaxed);
        let failures = self.inner.window_failures.load(Ordering::Relaxed);
        let config = &self.inner.config;
        failures > 0
            && calls >= u64::from(config.min_calls)
            && failures as f64 >= config.failure_rate * calls as f64
    }

    /// Slides the window to end at `slot`: the buckets whose start is a
    /// window old or older leave it, and their counts leave its sums. Under
    /// the lock; does nothing unless `slot` is newer than the last slide.
    fn slide(&self, slot: u64) {
        let inner = &self.inner;
        if slot <= inner.head.load(Ordering::Relaxed) {
            return;
        }
        inner.head.store(slot, Ordering::Relaxed);
        for (j, s) in inner.slots.iter().enumerate() {
            let at = s.load(Ordering::Relaxed);
            if at != u64::MAX && at.saturating_add(BUCKETS as u64) <= slot {
                self.empty(j);
            }
        }
    }

    /// Frees bucket `j`, taking its counts out of the window's sums. The
    /// counts are taken, not zeroed: a lock-free success that raced a
    /// `reset` and landed after it leaves its bucket and the sums agreeing.
    fn empty(&self, j: usize) {
        let inner = &self.inner;
        inner.slots[j].store(u64::MAX, Ordering::Relaxed);
        let gone = inner.counts[j].swap(0, Ordering::Relaxed);
        inner.window_calls.fetch_sub(gone >> 32, Ordering::Relaxed);
        inner
            .window_failures
            .fetch_sub(gone & 0xFFFF_FFFF, Ordering::Relaxed);
    }

    #[cold]
    fn record_locked(&self, generation: Option<u64>, failed: bool) {
        if failed {
            self.inner.failures.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        let mut m = self.lock();
        match generation {
            None => {
                if m.state != BreakerState::Closed {
                    return; // a call admitted before the breaker opened
                }
                let slot = self.slot(now);
                self.slide(slot);
                let inner = &self.inner;
                if slot.saturating_add(BUCKETS as u64) <= inner.head.load(Ordering::Relaxed) {
                    return; // read the time long before the lock: out of the window
                }
                let i = (slot % BUCKETS as u64) as usize;
                if inner.slots[i].load(Ordering::Acquire) != slot {
                    // Free (its last slot left the window in the slide),
                    // or holding what a success that raced a reset left.
                    self.empty(i);
                    inner.slots[i].store(slot, Ordering::Release);
                }
                inner.counts[i].fetch_add((1 << 32) | u64::from(failed), Ordering::Relaxed);
                inner.window_calls.fetch_add(1, Ordering::Relaxed);
                inner
                    .window_failures
                    .fetch_add(u64::from(failed), Ordering::Relaxed);
                if self.should_open() {
                    self.enter(&mut m, BreakerState::Open, now);
                }
            }
            Some(g) if g == m.generation && m.state == BreakerState::HalfOpen => {
                if failed {
                    self.enter(&mut m, BreakerState::Open, now);
                } else {
                    m.trials_ok += 1;
                    if m.trials_ok >= self.inner.config.half_open {
                        self.enter(&mut m, BreakerState::Closed, now);
                    }
                }
            }
            Some(_) => {} // a trial of an earlier half-open period
        }
    }

    /// A trial dropped without an outcome (a limiter refused the call, or
    /// the call was cancelled): its half-open slot goes back.
    fn forget(&self, generation: Option<u64>) {
        if let Some(g) = generation {
            let mut m = self.lock();
            if g == m.generation && m.state == BreakerState::HalfOpen && m.trials > 0 {
                m.trials -= 1;
            }
        }
    }

    /// Locks callers out by hand (during an incident), until
    /// [`reset`](Breaker::reset).
    pub fn force_open(&self) {
        let mut m = self.lock();
        m.forced = true;
        self.enter(&mut m, BreakerState::Open, Instant::now());
    }

    /// Closes the breaker and forgets the window (and a forced opening).
    pub fn reset(&self) {
        let mut m = self.lock();
        m.forced = false;
        self.enter(&mut m, BreakerState::Closed, Instant::now());
    }

    /// A copy of the counters.
    pub fn stats(&self) -> BreakerStats {
        let state = self.state();
        let m = self.lock();
        BreakerStats {
            name: self.name().to_owned(),
            state,
            calls: self.inner.calls.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
            refused: self.inner.refused.load(Ordering::Relaxed),
            transitions: m.transitions.clone(),
        }
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}

/// The right to run one call through a [`Breaker`]: report its outcome
/// with [`success`](Trial::success) or [`failure`](Trial::failure).
/// Dropped without an outcome, it is not counted (and a half-open trial
/// slot goes back).
#[must_use = "report the call's outcome with success() or failure()"]
pub struct Trial<'a> {
    breaker: &'a Breaker,
    /// `Some` for a half-open trial: the generation it belongs to.
    generation: Option<u64>,
    done: bool,
}

impl Trial<'_> {
    /// The call succeeded.
    pub fn success(mut self) {
        self.done = true;
        self.breaker.record(self.generation, false);
    }

    /// The call failed.
    pub fn failure(mut self) {
        self.done = true;
        self.breaker.record(self.generation, true);
    }

    /// Reports `failed`.
    pub fn finish(self, failed: bool) {
        if failed {
            self.failure();
        } else {
            self.success();
        }
    }
}

impl Drop for Trial<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.forget(self.generation);
        }
    }
}

impl fmt::Debug for Trial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trial")
            .field("breaker", &self.breaker.name())
            .field("half_open", &self.generation.is_some())
            .finish()
    }
}

type Registry = HashMap<Box<str>, (Breaker, Option<(&'static str, u32)>)>;

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The breaker called `name`, if it exists (a `#[circuit_breaker]`
/// function creates its breaker on its first call).
pub fn breaker(name: &str) -> Option<Breaker> {
    registry().get(name).map(|(b, _)| b.clone())
}

/// Every breaker in the process, sorted by name.
pub fn breakers() -> Vec<Breaker> {
    let mut all: Vec<Breaker> = registry().values().map(|(b, _)| b.clone()).collect();
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all
}

/// A breaker declared in a `static`: what `#[circuit_breaker]` expands to.
pub struct StaticBreaker {
    name: &'static str,
    config: BreakerConfig,
    file: &'static str,
    line: u32,
    strict: bool,
    cell: OnceLock<Breaker>,
}

impl StaticBreaker {
    /// A declaration of the breaker `name` with `config`, recording where
    /// it is written.
    #[track_caller]
    pub const fn new(name: &'static str, config: BreakerConfig) -> Self {
        let at = std::panic::Location::caller();
        StaticBreaker {
            name,
            config,
            file: at.file(),
            line: at.line(),
            strict: cfg!(debug_assertions),
            cell: OnceLock::new(),
        }
    }

    /// Overrides where the declaration is said to be written (by default,
    /// where [`new`](StaticBreaker::new) is called): `#[timeout]` and
    /// `#[circuit_breaker]` expanded by another attribute of the function
    /// give their own line.
    pub const fn declared_at(mut self, file: &'static str, line: u32) -> Self {
        self.file = file;
        self.line = line;
        self
    }

    /// The breaker, created or looked up on first use.
    ///
    /// # Panics
    ///
    /// In builds with debug assertions, if another declaration of the same
    /// name has different options.
    #[inline]
    pub fn breaker(&self) -> &Breaker {
        self.cell.get_or_init(|| self.resolve())
    }

    #[cold]
    fn resolve(&self) -> Breaker {
        let mut reg = registry();
        if let Some((b, at)) = reg.get(self.name) {
            let (b, at) = (b.clone(), *at);
            drop(reg);
            if b.config() != self.config && self.strict {
                let first = at.map_or_else(|| "by hand".to_owned(), |(f, l)| format!("at {f}:{l}"));
                panic!(
                    "breaker \"{}\" is declared twice with different options: {:?} {first} and {:?} at {}:{}; \
                     give both the same options, or use two names (release builds keep the first)",
                    self.name,
                    b.config(),
                    self.config,
                    self.file,
                    self.line
                );
            }
            return b;
        }
        let b = Breaker::create(self.name, self.config);
        reg.insert(self.name.into(), (b.clone(), Some((self.file, self.line))));
        b
    }
}

impl std::ops::Deref for StaticBreaker {
    type Target = Breaker;

    #[inline]
    fn deref(&self) -> &Breaker {
        self.breaker()
    }
}

impl fmt::Debug for StaticBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticBreaker")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("declared_at", &format_args!("{}:{}", self.file, self.line))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(config: BreakerConfig) -> Breaker {
        Breaker::create("unit", config)
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_the_failure_rate_over_min_calls_in_the_window() {
        let b = fresh(BreakerConfig::new().min_calls(10).failure_rate(0.5));
        for i in 0..9 {
            b.admit().unwrap().finish(i % 2 == 0); // 5 of 9 failed, below min_calls
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.admit().unwrap().success(); // 10 calls, 5 failed: 50 %
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn old_outcomes_leave_the_window() {
        let b = fresh(
            BreakerConfig::new()
                .min_calls(4)
                .window(Duration::from_secs(10)),
        );
        for _ in 0..3 {
            b.admit().unwrap().failure();
        }
        tokio::time::sleep(Duration::from_secs(11)).await;
        // The three failures are out of the window: one more is 1 of 1.
        b.admit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..3 {
            b.admit().unwrap().failure();
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_count_until_they_are_nearly_a_window_old_and_not_after() {
        use tokio::time::sleep;
        let config = BreakerConfig::new()
            .min_calls(4)
            .window(Duration::from_secs(30));
        let b = fresh(config);
        b.admit().unwrap().success(); // t = 0
        sleep(Duration::from_millis(2_900)).await;
        b.admit().unwrap().failure();
        b.admit().unwrap().failure(); // t = 2.9 s
        sleep(Duration::from_millis(27_600)).await;
        // t = 30.5 s: the success has left, both failures are 27.6 s old.
        b.admit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Closed, "3 calls of min_calls 4");
        b.admit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open, "4 failures in the window");

        // An outcome in the middle of a bucket (0.3 s here) counts until it
        // is at least 29.7 s old, and never once it is 30 s old.
        let b = fresh(config);
        sleep(Duration::from_millis(150)).await;
        for _ in 0..3 {
            b.admit().unwrap().failure();
        }
        sleep(Duration::from_millis(29_550)).await; // 29.55 s old
        b.admit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        let b = fresh(config);
        for _ in 0..3 {
            b.admit().unwrap().failure();
        }
        sleep(Duration::from_secs(30)).await; // exactly a window old
        b.admit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Closed, "1 call in the window");
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_sums_follow_successes_failures_slides_and_resets() {
        use tokio::time::sleep;
        let b = fresh(
            BreakerConfig::new()
                .min_calls(1000)
                .window(Duration::from_secs(1)),
        );
        let sums = |b: &Breaker| {
            let i = &b.inner;
            let (calls, failures) = i.counts.iter().fold((0, 0), |(c, f), n| {
                let n = n.load(Ordering::Relaxed);
                (c + (n >> 32), f + (n & 0xFFFF_FFFF))
            });
            assert_eq!(calls, i.window_calls.load(Ordering::Relaxed));
            assert_eq!(failures, i.window_failures.load(Ordering::Relaxed));
            (calls, failures)
        };
        for step in 0..250u64 {
            b.admit().unwrap().finish(step % 7 == 0);
            if step % 3 == 0 {
                sleep(Duration::from_millis(7)).await;
            }
            sums(&b);
        }
        // 250 calls over 581 ms, all in the window.
        assert_eq!(sums(&b), (250, 36));
        sleep(Duration::from_millis(700)).await;
        let (calls, _) = sums(&b);
        assert_eq!(calls, 250, "nothing slid yet: no outcome since");
        b.admit().unwrap().success(); // slides: what is older than 1 s left
        let (calls, _) = sums(&b);
        assert!(calls < 250 && calls > 1, "{calls}");
        b.reset();
        assert_eq!(sums(&b), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_exactly_n_trials_and_a_dropped_trial_gives_its_slot_back() {
        let b = fresh(BreakerConfig::new().min_calls(1).half_open(2));
        b.admit().unwrap().failure();
        assert!(b.admit().is_err());
        tokio::time::sleep(Duration::from_secs(10)).await;
        let t1 = b.admit().unwrap();
        let t2 = b.admit().unwrap();
        assert!(b.admit().is_err(), "only two trials");
        drop(t2); // refused by a limiter: not counted
        let t3 = b.admit().unwrap();
        t1.success();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        t3.success();
        assert_eq!(b.state(), BreakerState::Closed);
        let s = b.stats();
        assert_eq!(
            s.transitions.iter().map(|t| t.to).collect::<Vec<_>>(),
            [
                BreakerState::Open,
                BreakerState::HalfOpen,
                BreakerState::Closed
            ]
        );
        assert_eq!(s.transitions[1].at, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_opens_again_and_stale_trials_do_not_count() {
        let b = fresh(BreakerConfig::new().min_calls(1).half_open(2));
        b.admit().unwrap().failure();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let t1 = b.admit().unwrap();
        let t2 = b.admit().unwrap();
        t1.failure();
        assert_eq!(b.state(), BreakerState::Open);
        t2.success(); // belongs to the half-open period that ended
        assert_eq!(b.state(), BreakerState::Open);
        let e = b.admit().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CircuitOpen);
        assert!(e.to_string().contains("trying again in 10s"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn force_open_holds_until_reset() {
        let b = fresh(BreakerConfig::new());
        b.force_open();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit().unwrap_err().to_string().contains("forced open"));
        b.reset();
        assert_eq!(b.state(), BreakerState::Closed);
        b.admit().unwrap().success();
        let s = b.stats();
        assert_eq!((s.calls, s.refused, s.failures), (1, 1, 0));
    }
}
