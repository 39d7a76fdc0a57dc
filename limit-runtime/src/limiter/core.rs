//! The core of every [`Limiter`](crate::Limiter): permits, one queue, and
//! the dispatcher that decides who starts.
//!
//! Design, in short:
//!
//! * One atomic word holds `permits * 2 + queued`, where `permits` is signed
//!   (negative while [`Core::set_max`] has lowered the limit below the
//!   number of running bodies) and `queued` says that callers are waiting.
//! * While nobody waits, a start is one compare-and-swap on that word (plus
//!   one on the rate gate when a rate is set) and a release is one more: no
//!   lock, no queue node.
//! * Once anybody waits, every newcomer queues, and every event that could
//!   let a waiter start (a release, a resize, a new rate or reserve, a
//!   rate timer, a waiter leaving, an arrival while a permit is free) runs
//!   [`Core::dispatch`] under the queue lock. The dispatcher starts
//!   waiters in order (online before batch, FIFO within a class) while a
//!   permit is free, the rate gate allows a start now, and, for batch
//!   work, the reserve is respected.
//!   Each part (the [`Queue`], the [`Gcra`] rate gate, the reserve) is a
//!   condition the dispatcher checks; none has a code path of its own.
//! * A waiter's own options (`wait`, `queue`) belong to its future: it
//!   refuses itself when the queue is too long on arrival, and leaves when
//!   its deadline passes.
//! * A queued call's wait is timed with tokio's clock (exact under a paused
//!   clock): read once it has queued, after the lock; its end is usually
//!   the reading of the next caller that queued on the same thread after
//!   its grant ([`Stamp`]).
//! * Fields are grouped on cache lines by who writes them (see [`Core`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::queue::{Class, Queue};
use super::rate::{Gcra, Rate};
use super::stamp::{at_or_after, Stamp};
use crate::shard::Sharded;

/// The largest limit a core accepts; larger values mean "no cap".
///
/// Leaves head room in the signed permit counter for any sequence of
/// `set_max` calls.
pub(crate) const MAX_PERMITS: usize = (isize::MAX >> 3) as usize;

const QUEUED: isize = 1;
const ONE: isize = 2;

#[inline]
fn permits(state: isize) -> isize {
    state >> 1
}

/// Starts the next field on a cache line of its own (in a `repr(C)`
/// struct): zero bytes, aligned to 64.
#[repr(align(64))]
struct Line;

/// Fields are grouped by who writes them, so that a waiter handing over
/// under the lock does not take the line every caller reads from under it.
#[repr(C)]
pub(crate) struct Core {
    pub(crate) counters: Counters,
    /// Per thread, a clock reading taken after recent grants: the end of
    /// most waits (see [`Stamp`]).
    stamp: Stamp,
    _read: Line,
    // Read by every call; written only by an uncontended start or release
    // and when the queue empties or fills.
    /// `permits * 2 + queued`.
    state: AtomicIsize,
    /// The configured limit.
    max: AtomicUsize,
    /// Permits batch work never takes.
    reserve: AtomicUsize,
    pub(crate) rate: Gcra,
    _locked: Line,
    // Written under the queue lock (and read without it). One line holds
    // the count, the lock and the queue's lists: taking the lock brings
    // over all that a queued call or a hand-off writes, but the nodes and
    // the grants.
    /// Callers in the queue (mirrors the queue's length, lock-free).
    waiting: AtomicUsize,
    queue: Mutex<Queue>,
    _granted: Line,
    // Written by each grant, under the lock; read without it by the woken
    // waiter (which mostly runs next on the granting thread) and by each
    // caller that queues. Apart from the lock, so that those reads do not
    // pull the lock's line away from its next holder.
    /// The ticket of the latest grant, per class: a waiter whose ticket is
    /// not after it has been granted (grants go out in ticket order), which
    /// it can tell without the lock.
    granted_upto: [AtomicU32; 2],
    /// Permits held by batch work now.
    batch_active: AtomicUsize,
}

/// The core's counters; read by `Limiter::stats`.
pub(crate) struct Counters {
    /// The counters every start bumps, per thread (no atomic
    /// read-modify-write on the hot paths): indexed by [`ACQUIRED`],
    /// [`WAITED`], [`WAIT_NS`], [`WAITED_BATCH`], [`WAIT_BATCH_NS`], and
    /// the running maximum [`WAIT_MAX_NS`] (when a queue drains, nearly
    /// every wait is the longest yet).
    pub(crate) hot: Sharded<6>,
    pub(crate) peak_active: AtomicUsize,
    pub(crate) rejected_full: AtomicU64,
    pub(crate) rejected_wait: AtomicU64,
    /// The batch class's share of the refusals.
    pub(crate) rejected_batch: AtomicU64,
}

/// Starts.
pub(crate) const ACQUIRED: usize = 0;
/// Starts that waited in the queue first, and their total wait.
pub(crate) const WAITED: usize = 1;
pub(crate) const WAIT_NS: usize = 2;
/// The batch class's share of [`WAITED`] and [`WAIT_NS`].
pub(crate) const WAITED_BATCH: usize = 3;
pub(crate) const WAIT_BATCH_NS: usize = 4;
/// The longest wait ([`Sharded::raise`], read with [`Sharded::max`]).
pub(crate) const WAIT_MAX_NS: usize = 5;

impl Counters {
    fn new() -> Self {
        Counters {
            hot: Sharded::new(),
            peak_active: AtomicUsize::new(0),
            rejected_full: AtomicU64::new(0),
            rejected_wait: AtomicU64::new(0),
            rejected_batch: AtomicU64::new(0),
        }
    }
}

/// Wakers collected under the lock, called once it is released (a waker
/// may run arbitrary code). One inline, more on the heap.
#[derive(Default)]
struct Wakers {
    one: Option<Waker>,
    more: Vec<Waker>,
}

impl Wakers {
    fn push(&mut self, waker: Option<Waker>) {
        let Some(w) = waker else { return };
        if self.one.is_none() {
            self.one = Some(w);
        } else {
            self.more.push(w);
        }
    }

    #[inline]
    fn wake(self) {
        if let Some(w) = self.one {
            w.wake();
        }
        if !self.more.is_empty() {
            Self::wake_all(self.more);
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_all(more: Vec<Waker>) {
        for w in more {
            w.wake();
        }
    }
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // Nothing panics while the lock is held; the queue is consistent at
    // every point where a panic could start, so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    pub(crate) fn new(max: usize, rate: Option<Rate>) -> Core {
        let max = max.min(MAX_PERMITS);
        Core {
            state: AtomicIsize::new(max as isize * ONE),
            max: AtomicUsize::new(max),
            reserve: AtomicUsize::new(0),
            batch_active: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            _read: Line,
            _locked: Line,
            _granted: Line,
            granted_upto: [AtomicU32::new(0), AtomicU32::new(0)],
            stamp: Stamp::new(),
            rate: Gcra::new(rate),
            queue: Mutex::new(Queue::new()),
            counters: Counters::new(),
        }
    }

    #[inline]
    pub(crate) fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    pub(crate) fn active(&self) -> usize {
        let max = self.max.load(Ordering::Relaxed) as isize;
        let free = permits(self.state.load(Ordering::Relaxed));
        usize::try_from(max - free).unwrap_or(0)
    }

    /// Permits that a caller could take right now.
    pub(crate) fn available(&self) -> usize {
        usize::try_from(permits(self.state.load(Ordering::Relaxed))).unwrap_or(0)
    }

    pub(crate) fn reserve(&self) -> usize {
        self.reserve.load(Ordering::Relaxed)
    }

    pub(crate) fn batch_active(&self) -> usize {
        self.batch_active.load(Ordering::Relaxed)
    }

    /// Whether the waiter of `class` with `ticket` has been granted a start.
    #[inline]
    fn is_granted(&self, class: Class, ticket: u32) -> bool {
        at_or_after(
            self.granted_upto[class as usize].load(Ordering::Acquire),
            ticket,
        )
    }

    /// The tickets granted so far, per class.
    #[inline]
    fn granted(&self) -> [u32; 2] {
        [
            self.granted_upto[0].load(Ordering::Acquire),
            self.granted_upto[1].load(Ordering::Acquire),
        ]
    }

    /// Bookkeeping for a start; `free_after` is the permit count the taker
    /// left behind.
    #[inline]
    fn note_acquired(&self, free_after: isize) {
        self.counters.hot.add(ACQUIRED, 1);
        self.note_peak(free_after);
    }

    #[inline]
    fn note_peak(&self, free_after: isize) {
        let c = &self.counters;
        let active = usize::try_from(self.max() as isize - free_after).unwrap_or(0);
        if active > c.peak_active.load(Ordering::Relaxed) {
            c.peak_active.fetch_max(active, Ordering::Relaxed);
        }
    }

    /// Bookkeeping for a start that waited `ns` nanoseconds in the queue
    /// (one pass over this thread's counters).
    fn note_acquired_after(&self, ns: u64, class: Class) {
        let c = &self.counters;
        if class == Class::Batch {
            c.hot.add_each([
                (ACQUIRED, 1),
                (WAITED, 1),
                (WAIT_NS, ns),
                (WAITED_BATCH, 1),
                (WAIT_BATCH_NS, ns),
            ]);
        } else {
            c.hot.add_each([(ACQUIRED, 1), (WAITED, 1), (WAIT_NS, ns)]);
        }
        c.hot.raise(WAIT_MAX_NS, ns);
        self.note_peak(permits(self.state.load(Ordering::Relaxed)));
    }

    /// Bookkeeping for a call on a shared name that waited `added_ns` more
    /// for its lease after the local queue (`counted`: the local queue
    /// already counted it as a wait), `total_ns` in all.
    #[cfg(feature = "redis")]
    pub(crate) fn note_remote_wait(
        &self,
        added_ns: u64,
        total_ns: u64,
        counted: bool,
        class: Class,
    ) {
        let c = &self.counters;
        let waited = u64::from(!counted);
        if class == Class::Batch {
            c.hot.add_each([
                (WAITED, waited),
                (WAIT_NS, added_ns),
                (WAITED_BATCH, waited),
                (WAIT_BATCH_NS, added_ns),
            ]);
        } else {
            c.hot.add_each([(WAITED, waited), (WAIT_NS, added_ns)]);
        }
        c.hot.raise(WAIT_MAX_NS, total_ns);
    }

    fn note_refused(&self, counter: &AtomicU64, class: Class) {
        counter.fetch_add(1, Ordering::Relaxed);
        if class == Class::Batch {
            self.counters.rejected_batch.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether batch work may take one more permit under the reserve.
    fn batch_may_start(&self) -> bool {
        let reserve = self.reserve.load(Ordering::Relaxed);
        reserve == 0
            || self.batch_active.load(Ordering::Relaxed) + reserve
                < self.max.load(Ordering::Relaxed)
    }

    /// Counts a batch start against the reserve, lock-free; `false` (and no
    /// change) if the reserve forbids it.
    fn enter_batch(&self) -> bool {
        let reserve = self.reserve.load(Ordering::Relaxed);
        let before = self.batch_active.fetch_add(1, Ordering::AcqRel);
        if reserve != 0 && before + 1 + reserve > self.max.load(Ordering::Relaxed) {
            self.batch_active.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Starts now if a permit is free, nobody is queued, the rate allows it
    /// and (for batch work) the reserve does. The uncontended path.
    #[inline]
    pub(crate) fn try_acquire(&self, class: Class) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & QUEUED != 0 || permits(s) <= 0 {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(s, s - ONE, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        if class == Class::Batch || self.rate.enabled() {
            return self.try_acquire_gated(class, s);
        }
        self.note_acquired(permits(s) - 1);
        true
    }

    /// The rest of [`try_acquire`](Core::try_acquire) once a permit is
    /// taken, for batch work or under a rate: out of line, so that the
    /// plain start stays small enough to inline everywhere.
    #[inline(never)]
    fn try_acquire_gated(&self, class: Class, s: isize) -> bool {
        if class == Class::Batch && !self.enter_batch() {
            self.release(Class::Online);
            return false;
        }
        if self.rate.enabled() && self.rate.try_take(self.rate.now()).is_err() {
            self.release(class);
            return false;
        }
        self.note_acquired(permits(s) - 1);
        true
    }

    /// Gives a permit back: to the next waiter allowed to start, if any.
    #[inline]
    pub(crate) fn release(&self, class: Class) {
        if class == Class::Batch {
            self.batch_active.fetch_sub(1, Ordering::AcqRel);
        }
        let mut s = self.state.load(Ordering::Relaxed);
        while s & QUEUED == 0 {
            match self
                .state
                .compare_exchange_weak(s, s + ONE, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
        self.release_queued();
    }

    #[cold]
    #[inline(never)]
    fn release_queued(&self) {
        self.locked(|core, q, w| core.dispatch(q, true, None, w));
    }

    /// Runs `f` with the queue locked, then calls the wakers it collected.
    fn locked<R>(&self, f: impl FnOnce(&Core, &mut Queue, &mut Wakers) -> R) -> R {
        let mut wakers = Wakers::default();
        let out = {
            let mut q = lock(&self.queue);
            f(self, &mut q, &mut wakers)
        };
        wakers.wake();
        out
    }

    /// Starts every waiter that may start now, in order: online before
    /// batch, FIFO within a class. A waiter starts when a permit is free
    /// (or `in_hand`, a permit being released), the rate gate allows a start
    /// now, and, for batch work, the reserve allows one more. `me` is the
    /// waiter running this (not woken: it is already running).
    ///
    /// With the queue lock held. While the queue is not empty the QUEUED bit
    /// is set, and then only lock holders change the state word.
    fn dispatch(&self, q: &mut Queue, mut in_hand: bool, me: Option<u32>, w: &mut Wakers) {
        if in_hand && permits(self.state.load(Ordering::Acquire)) < 0 {
            // The limit was lowered below the running bodies: this permit
            // retires.
            self.state.fetch_add(ONE, Ordering::AcqRel);
            in_hand = false;
        }
        // Written only when set: the line is shared with every hand-off.
        if q.rate_due.is_some() {
            q.rate_due = None;
        }
        let mut now = None;
        loop {
            let class = if q.front(Class::Online).is_some() {
                Class::Online
            } else if q.front(Class::Batch).is_some() && self.batch_may_start() {
                Class::Batch
            } else {
                break;
            };
            if !in_hand && permits(self.state.load(Ordering::Acquire)) <= 0 {
                break;
            }
            if self.rate.enabled() {
                let t = *now.get_or_insert_with(|| self.rate.now());
                if let Err(at) = self.rate.try_take(t) {
                    // A permit is free but the rate holds the front waiter
                    // back: make sure it has a timer for `at`.
                    let idx = q.front(class).expect("front exists");
                    q.rate_due = Some((idx, at));
                    if q.rate_armed != Some((idx, at)) && me != Some(idx) {
                        w.push(q.take_waker(idx));
                    }
                    break;
                }
            }
            if in_hand {
                in_hand = false;
            } else {
                self.state.fetch_sub(ONE, Ordering::AcqRel);
            }
            if class == Class::Batch {
                self.batch_active.fetch_add(1, Ordering::AcqRel);
            }
            let (ticket, waker) = q.pop_front(class).expect("front exists");
            self.granted_upto[class as usize].store(ticket, Ordering::Release);
            w.push(waker);
        }
        if in_hand {
            self.state.fetch_add(ONE, Ordering::AcqRel);
        }
        self.waiting.store(q.len(), Ordering::Relaxed);
        if q.len() == 0 {
            self.state.fetch_and(!QUEUED, Ordering::AcqRel);
        }
    }

    /// Changes the limit. Raising admits waiters at once; lowering lets
    /// running bodies finish and retires their permits as they return.
    pub(crate) fn set_max(&self, new: usize) {
        let new = new.min(MAX_PERMITS);
        self.locked(|core, q, w| {
            let old = core.max.swap(new, Ordering::Relaxed);
            if new >= old {
                let delta = (new - old) as isize * ONE;
                core.state.fetch_add(delta, Ordering::AcqRel);
            } else {
                let delta = (old - new) as isize * ONE;
                core.state.fetch_sub(delta, Ordering::AcqRel);
            }
            core.dispatch(q, false, None, w);
        });
    }

    /// Changes the rate (or removes it); waiters it held back start as the
    /// new rate allows.
    pub(crate) fn set_rate(&self, rate: Option<Rate>) {
        self.locked(|core, q, w| {
            core.rate.set(rate);
            q.rate_armed = None;
            core.dispatch(q, false, None, w);
        });
    }

    /// Changes the reserve; batch waiters it held back start if allowed.
    pub(crate) fn set_reserve(&self, reserve: usize) {
        self.locked(|core, q, w| {
            core.reserve.store(reserve, Ordering::Relaxed);
            core.dispatch(q, false, None, w);
        });
    }

    #[inline]
    pub(crate) fn acquire(&self, class: Class, patience: Patience) -> Waiter<'_> {
        Waiter {
            core: self,
            timer: None,
            since: u64::MAX,
            patience,
            slot: NOT_QUEUED,
            ticket: 0,
            class,
        }
    }
}

/// How long, and behind how many others, one call is willing to wait: the
/// per-declaration options `wait` and `queue`, packed small (every parked
/// caller carries a copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Patience {
    /// Nanoseconds; `u64::MAX`: no limit.
    wait_ns: u64,
    /// `u32::MAX`: no limit.
    queue: u32,
}

impl Default for Patience {
    fn default() -> Self {
        Patience::UNLIMITED
    }
}

impl Patience {
    pub(crate) const UNLIMITED: Patience = Patience {
        wait_ns: u64::MAX,
        queue: u32::MAX,
    };

    pub(crate) const fn with_wait(mut self, wait: Duration) -> Patience {
        let ns = wait.as_nanos();
        // A wait of 584 years or more is no limit.
        self.wait_ns = if ns >= u64::MAX as u128 {
            u64::MAX
        } else {
            ns as u64
        };
        self
    }

    pub(crate) const fn with_queue(mut self, queue: usize) -> Patience {
        // Four billion waiters or more is no limit.
        self.queue = if queue >= u32::MAX as usize {
            u32::MAX
        } else {
            queue as u32
        };
        self
    }

    pub(crate) fn wait(&self) -> Option<Duration> {
        (self.wait_ns != u64::MAX).then(|| Duration::from_nanos(self.wait_ns))
    }

    pub(crate) fn queue(&self) -> Option<usize> {
        (self.queue != u32::MAX).then_some(self.queue as usize)
    }
}

/// Why a waiter gave up (the limiter turns it into an [`Error`](crate::Error)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `waiting` calls were queued already.
    QueueFull { waiting: usize },
    /// Waited `waited` without starting.
    WaitTimeout { waited: Duration },
}

const NOT_QUEUED: u32 = super::queue::NIL;
const DONE: u32 = super::queue::NIL - 1;

/// Future of [`Core::acquire`]: resolves once the caller may start (and
/// then holds a permit, which it gives back with [`Core::release`]), or
/// with the reason it gave up.
///
/// Dropping it while queued leaves the queue; dropping it after a start was
/// granted but before it was polled passes the permit on.
pub(crate) struct Waiter<'a> {
    core: &'a Core,
    /// Wakes the waiter at its deadline, or when the rate allows it to
    /// start; allocated only if it is needed.
    timer: Option<Pin<Box<Sleep>>>,
    /// When the caller queued, in the rate gate's time (`u64::MAX`: not
    /// queued); once a queued caller is finished, how long it waited.
    since: u64,
    patience: Patience,
    /// `NOT_QUEUED`, `DONE`, or the caller's slot in the queue (stale once
    /// it was granted: the slot is freed by the grant).
    slot: u32,
    /// The caller's ticket, while queued.
    ticket: u32,
    class: Class,
}

impl Waiter<'_> {
    #[inline]
    fn deadline(&self) -> Option<Instant> {
        let wait = self.patience.wait()?;
        Some(self.core.rate.instant(self.since) + wait)
    }

    /// The class the caller waits (and will hold its permit) in.
    #[inline]
    pub(crate) fn class(&self) -> Class {
        self.class
    }

    /// Whether the future has not been polled yet (nor decided).
    #[inline]
    pub(crate) fn unpolled(&self) -> bool {
        self.slot == NOT_QUEUED
    }

    /// Sets the class, before the first poll.
    #[inline]
    pub(crate) fn set_class(&mut self, class: Class) {
        debug_assert!(self.unpolled());
        self.class = class;
    }

    /// The options it waits with.
    pub(crate) fn patience(&self) -> Patience {
        self.patience
    }

    /// Whether the caller had to queue (for the wait-time histogram and a
    /// shared name's remote wait).
    #[cfg(any(feature = "metrics", feature = "redis"))]
    #[inline]
    pub(crate) fn queued(&self) -> bool {
        self.since != u64::MAX
    }

    /// How long the caller waited, once it started after
    /// [`queued`](Waiter::queued).
    #[cfg(any(feature = "metrics", feature = "redis"))]
    pub(crate) fn waited(&self) -> Duration {
        Duration::from_nanos(self.since)
    }

    /// First poll that could not start lock-free: queue, unless the queue
    /// bound refuses. `Ok` if the call is decided; otherwise the time to be
    /// woken at, if any (its deadline, or the rate's next slot).
    fn enqueue(&mut self, cx: &Context<'_>) -> Result<Result<(), Refusal>, Option<Instant>> {
        // Cloned before locking: a foreign waker runs arbitrary code.
        let waker = cx.waker().clone();
        let core = self.core;
        let class = self.class;
        let bound = self.patience.queue();
        let outcome = core.locked(|core, q, w| {
            let before = q.len();
            // Set by whoever queued first; writing the hot word again would
            // only bounce its cache line.
            if core.state.load(Ordering::Acquire) & QUEUED == 0 {
                core.state.fetch_or(QUEUED, Ordering::AcqRel);
            }
            let (idx, ticket) = q.push(class, waker);
            // Nobody can start without a free permit, and while callers
            // are queued the free permits change only in `dispatch` (and
            // in `set_max`, which then dispatches): with none free, the
            // last dispatch left nothing to do, so only the count changes.
            if permits(core.state.load(Ordering::Acquire)) > 0 {
                core.dispatch(q, false, Some(idx), w);
            } else {
                core.waiting.store(q.len(), Ordering::Relaxed);
            }
            if core.is_granted(class, ticket) {
                return Ok(Ok(()));
            }
            if bound.is_some_and(|b| before >= b) {
                q.unlink(class, idx);
                q.release_slot(idx);
                core.dispatch(q, false, None, w);
                return Ok(Err(Refusal::QueueFull { waiting: before }));
            }
            self.slot = idx;
            self.ticket = ticket;
            Err(take_rate_turn(q, idx).map(|at| core.rate.instant(at)))
        });
        match outcome {
            Ok(Ok(())) => {
                self.slot = DONE;
                core.note_acquired(permits(core.state.load(Ordering::Relaxed)));
            }
            Ok(Err(_)) => {
                self.slot = DONE;
                core.note_refused(&core.counters.rejected_full, self.class);
            }
            Err(rate_at) => {
                // Queued: the wait starts now. The clock is read after the
                // lock is released (not in the critical section, and only
                // by a caller that waits), and after the grants it will
                // stamp were seen.
                let granted = core.granted();
                let now = core.rate.now();
                core.stamp.record(granted, now);
                self.since = now;
                return Err(earliest(self.deadline(), rate_at));
            }
        }
        outcome
    }

    /// A queued waiter's poll past the lock-free check for a grant (see
    /// `poll_slow`): started, gave up, or still waiting (with the time to
    /// be woken at, if any).
    fn check(&mut self, cx: &Context<'_>) -> Result<Result<(), Refusal>, Option<Instant>> {
        let (idx, ticket, class) = (self.slot, self.ticket, self.class);
        let deadline = self.deadline();
        self.core.locked(|core, q, w| {
            if !core.is_granted(class, ticket) {
                core.dispatch(q, false, Some(idx), w);
            }
            if core.is_granted(class, ticket) {
                return Ok(Ok(()));
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    q.unlink(class, idx);
                    q.release_slot(idx);
                    core.dispatch(q, false, None, w);
                    return Ok(Err(Refusal::WaitTimeout {
                        waited: Duration::ZERO,
                    }));
                }
            }
            q.set_waker(idx, cx.waker());
            let rate_at = take_rate_turn(q, idx).map(|at| core.rate.instant(at));
            Err(earliest(deadline, rate_at))
        })
    }
}

/// If `idx` is the waiter the rate alone holds back, marks its timer armed
/// and returns when the rate allows it to start.
fn take_rate_turn(q: &mut Queue, idx: u32) -> Option<u64> {
    match q.rate_due {
        Some((i, at)) if i == idx => {
            q.rate_armed = Some((idx, at));
            Some(at)
        }
        _ => None,
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Future for Waiter<'_> {
    type Output = Result<(), Refusal>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        let this = self.get_mut();
        if this.slot == NOT_QUEUED && this.core.try_acquire(this.class) {
            this.slot = DONE;
            return Poll::Ready(Ok(()));
        }
        this.poll_slow(cx)
    }
}

impl Waiter<'_> {
    /// Everything but the uncontended start: queueing, timers, grants.
    #[cold]
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        let this = self;
        if this.slot == DONE {
            panic!("a limiter's acquire future was polled after it completed");
        }
        // Granted: known without the lock (the common wake-up).
        if this.slot != NOT_QUEUED && this.core.is_granted(this.class, this.ticket) {
            return Poll::Ready(this.finish(Ok(())));
        }
        // `Err(wake_at)`: still waiting, to be woken then (or by a grant).
        let mut state = if this.slot == NOT_QUEUED {
            match this.enqueue(cx) {
                Ok(decided) => return Poll::Ready(decided),
                Err(wake_at) => Err(wake_at),
            }
        } else {
            this.check(cx)
        };
        // Bounded: a timer that fires loops once more to act on it.
        for _ in 0..4 {
            match state {
                Ok(outcome) => return Poll::Ready(this.finish(outcome)),
                Err(None) => return Poll::Pending,
                Err(Some(at)) => {
                    let timer = match &mut this.timer {
                        Some(t) => {
                            if t.deadline() != at {
                                t.as_mut().reset(at);
                            }
                            t
                        }
                        slot => slot.insert(Box::pin(tokio::time::sleep_until(at))),
                    };
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    state = this.check(cx);
                }
            }
        }
        // A timer kept firing without the state changing (clock
        // granularity): try again on the next turn of the executor.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Waiter<'_> {
    /// Bookkeeping for a queued waiter that started or gave up.
    fn finish(&mut self, outcome: Result<(), Refusal>) -> Result<(), Refusal> {
        self.slot = DONE;
        let core = self.core;
        let started = match outcome {
            // A reading this thread took after the grant (a caller that
            // queued since), if there is one; else a read of our own.
            Ok(()) => core.stamp.after_grant(self.class, self.ticket, self.since),
            Err(_) => None,
        };
        let now = started.unwrap_or_else(|| core.rate.now());
        let waited_ns = now.saturating_sub(self.since);
        // From here on, `since` holds the wait (for the metrics histogram).
        self.since = waited_ns;
        match outcome {
            Ok(()) => {
                core.note_acquired_after(waited_ns, self.class);
                Ok(())
            }
            Err(_) => {
                core.note_refused(&core.counters.rejected_wait, self.class);
                let waited = Duration::from_nanos(waited_ns);
                Err(Refusal::WaitTimeout { waited })
            }
        }
    }
}

impl Drop for Waiter<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.slot != DONE && self.slot != NOT_QUEUED {
            self.leave();
        }
    }
}

impl Waiter<'_> {
    /// Leaves the queue (dropped while queued), passing on a start that was
    /// granted but not collected.
    #[cold]
    #[inline(never)]
    fn leave(&mut self) {
        let idx = self.slot;
        let (class, ticket) = (self.class, self.ticket);
        self.core.locked(|core, q, w| {
            if core.is_granted(class, ticket) {
                // A start was handed to us: pass the permit on.
                if class == Class::Batch {
                    core.batch_active.fetch_sub(1, Ordering::AcqRel);
                }
                core.dispatch(q, true, None, w);
            } else {
                q.unlink(class, idx);
                q.release_slot(idx);
                core.dispatch(q, false, None, w);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{Class, Core, Patience, Queue, WAITED, WAIT_NS};
    use std::future::Future;
    use std::mem::offset_of;
    use std::pin::Pin;
    use std::task::{Context, Waker};

    const FIVE_S: u64 = 5_000_000_000;

    /// Queues one waiter behind a held permit; returns it polled once.
    fn queued(core: &Core) -> super::Waiter<'_> {
        assert!(core.try_acquire(Class::Online));
        let mut w = core.acquire(Class::Online, Patience::UNLIMITED);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        w
    }

    fn poll_ready(w: &mut super::Waiter<'_>) {
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(w).poll(&mut cx).is_ready());
    }

    #[test]
    fn a_wait_ends_at_a_reading_taken_after_its_grant() {
        let core = Core::new(1, None);
        let mut w = queued(&core);
        let since = w.since;
        core.release(Class::Online);
        // Another caller's reading, taken after the grant: five seconds on.
        core.stamp.record(core.granted(), since + FIVE_S);
        poll_ready(&mut w);
        assert_eq!(core.counters.hot.sum(WAITED), 1);
        assert_eq!(core.counters.hot.sum(WAIT_NS), FIVE_S);
    }

    #[test]
    fn a_reading_from_before_the_grant_is_not_used() {
        let core = Core::new(1, None);
        let mut w = queued(&core);
        let since = w.since;
        // Grants seen before the release: the reading does not cover it.
        let seen = core.granted();
        core.release(Class::Online);
        core.stamp.record(seen, since + FIVE_S);
        poll_ready(&mut w);
        // The waiter read the clock itself: far less than five seconds.
        assert_eq!(core.counters.hot.sum(WAITED), 1);
        assert!(core.counters.hot.sum(WAIT_NS) < FIVE_S / 5);
    }

    #[test]
    fn a_reading_from_before_the_wait_began_is_not_used() {
        let core = Core::new(1, None);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut w = queued(&core);
        let since = w.since;
        assert!(since >= 2_000_000);
        core.release(Class::Online);
        // It claims to follow the grant, but it is older than the wait.
        core.stamp.record(core.granted(), since - 1_000_000);
        poll_ready(&mut w);
        // The waiter read the clock itself: not a wait clipped to zero.
        assert_eq!(core.counters.hot.sum(WAITED), 1);
        assert!(core.counters.hot.sum(WAIT_NS) > 0);
    }

    #[test]
    fn an_arrival_starts_at_once_while_a_permit_is_free_behind_held_back_waiters() {
        let core = Core::new(2, None);
        core.set_reserve(1);
        assert!(core.try_acquire(Class::Batch));
        // The reserve holds a second batch call back, with a permit free.
        let mut cx = Context::from_waker(Waker::noop());
        let mut batch = core.acquire(Class::Batch, Patience::UNLIMITED);
        assert!(Pin::new(&mut batch).poll(&mut cx).is_pending());
        assert_eq!((core.available(), core.waiting()), (1, 1));
        // An online arrival queues behind it, and starts on that permit.
        let mut online = core.acquire(Class::Online, Patience::UNLIMITED);
        poll_ready(&mut online);
        assert_eq!((core.available(), core.waiting()), (0, 1));
        // With no permit free, an arrival only joins the count.
        let mut late = core.acquire(Class::Online, Patience::UNLIMITED);
        assert!(Pin::new(&mut late).poll(&mut cx).is_pending());
        assert_eq!(core.waiting(), 2);
        // The online release goes to the online waiter, not the batch one.
        core.release(Class::Online);
        poll_ready(&mut late);
        assert_eq!(core.waiting(), 1);
    }

    #[test]
    fn what_every_call_reads_is_apart_from_what_the_lock_holder_writes() {
        let line = |offset: usize| offset / 64;
        let read = [offset_of!(Core, state), offset_of!(Core, max)];
        let written = [
            offset_of!(Core, queue),
            offset_of!(Core, granted_upto),
            offset_of!(Core, waiting),
        ];
        assert_eq!(std::mem::align_of::<Core>(), 64);
        for r in read {
            for w in written {
                assert_ne!(line(r), line(w), "offsets {r} and {w} share a line");
            }
        }
        // The plain counters are per thread, on lines of their own.
        assert!(line(offset_of!(Core, counters)) < line(offset_of!(Core, state)));
    }

    #[test]
    fn the_lock_and_what_its_holders_write_share_one_line() {
        use std::mem::size_of;
        use std::sync::Mutex;
        let first = offset_of!(Core, waiting);
        assert_eq!(first % 64, 0);
        // A `Mutex` keeps its data after the lock word: the queue's hot
        // fields (all before `nodes`) end on the line the count is on.
        let data = offset_of!(Core, queue) + size_of::<Mutex<Queue>>() - size_of::<Queue>();
        let end = data + Queue::HOT_END;
        assert!(end <= first + 64, "the queue's hot fields end at {end}");
        // The grants are on a line of their own.
        let granted = offset_of!(Core, granted_upto);
        assert!(granted % 64 == 0 && granted >= first + 64);
    }
}
