//! The counting semaphore behind every [`Limiter`](crate::Limiter).
//!
//! Design, in short:
//!
//! * One atomic word holds `permits * 2 + queued`, where `permits` is signed
//!   (negative while [`Semaphore::set_max`] has lowered the limit below the
//!   number of running bodies) and `queued` says that callers are waiting.
//! * Uncontended acquire and release are a single compare-and-swap each and
//!   build no queue node: while nobody waits, permits live in the word.
//! * Waiters sit in a FIFO list protected by a mutex. While anybody waits,
//!   newcomers queue behind them and a released permit is handed straight to
//!   the oldest waiter, so nobody can overtake the queue.
//! * The list is an index-linked list inside one `Vec`, so a queued caller
//!   costs one small slot and no allocation of its own, and leaving the queue
//!   from the middle (a dropped waiter) is O(1). No `unsafe` code.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::LimiterStats;

/// The largest limit a semaphore accepts; larger values are clamped to it.
///
/// Leaves head room in the signed permit counter for any sequence of
/// `set_max` calls.
pub(crate) const MAX_PERMITS: usize = (isize::MAX >> 3) as usize;

const QUEUED: isize = 1;
const ONE: isize = 2;
const NIL: u32 = u32::MAX;

#[inline]
fn permits(state: isize) -> isize {
    state >> 1
}

pub(crate) struct Semaphore {
    /// `permits * 2 + queued`.
    state: AtomicIsize,
    /// The configured limit.
    max: AtomicUsize,
    /// Callers in the queue (mirrors `queue.len`, readable without the lock).
    waiting: AtomicUsize,
    queue: Mutex<Queue>,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    acquired: AtomicU64,
    peak_active: AtomicUsize,
    waited: AtomicU64,
    wait_total_ns: AtomicU64,
    wait_max_ns: AtomicU64,
}

/// FIFO of waiters: a doubly linked list threaded through `nodes` by index,
/// with the free slots chained through `next`.
struct Queue {
    nodes: Vec<Node>,
    head: u32,
    tail: u32,
    free: u32,
    len: usize,
    /// Slots owned by a caller: queued, or granted and not yet collected.
    used: usize,
}

/// 24 bytes: what a queued caller costs beyond its own future.
struct Node {
    waker: Option<Waker>,
    /// The previous node, `NIL` at the head, or `GRANTED` once a permit
    /// was handed to this node's owner (it is then out of the list).
    prev: u32,
    /// The next node (`NIL` at the tail), or the next free slot.
    next: u32,
}

const GRANTED: u32 = NIL - 1;

impl Node {
    fn granted(&self) -> bool {
        self.prev == GRANTED
    }
}

impl Queue {
    fn new() -> Self {
        Queue {
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            free: NIL,
            len: 0,
            used: 0,
        }
    }

    /// Appends a waiter and returns its slot.
    fn push(&mut self, waker: Waker) -> u32 {
        let node = Node {
            waker: Some(waker),
            prev: self.tail,
            next: NIL,
        };
        let idx = if self.free != NIL {
            let idx = self.free;
            self.free = self.nodes[idx as usize].next;
            self.nodes[idx as usize] = node;
            idx
        } else {
            // More than u32::MAX - 1 simultaneous waiters cannot be
            // represented; that many tasks do not fit in memory anyway.
            let idx = u32::try_from(self.nodes.len()).expect("too many waiters");
            self.nodes.push(node);
            idx
        };
        if self.tail == NIL {
            self.head = idx;
        } else {
            self.nodes[self.tail as usize].next = idx;
        }
        self.tail = idx;
        self.len += 1;
        self.used += 1;
        idx
    }

    /// Takes `idx` out of the list (it stays allocated to its owner).
    fn unlink(&mut self, idx: u32) {
        let (prev, next) = {
            let n = &self.nodes[idx as usize];
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        self.len -= 1;
    }

    /// Returns a slot to the free list.
    fn release_slot(&mut self, idx: u32) {
        let n = &mut self.nodes[idx as usize];
        n.waker = None;
        n.prev = NIL;
        n.next = self.free;
        self.free = idx;
        self.used -= 1;
        if self.used == 0 && self.nodes.len() > 64 {
            // The queue drained after a burst: give the memory back.
            self.nodes.clear();
            self.nodes.shrink_to(16);
            self.free = NIL;
        }
    }
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // Nothing panics while the lock is held except a foreign waker's clone;
    // the queue is consistent at every such point, so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Semaphore {
    pub(crate) fn new(max: usize) -> Self {
        let max = max.min(MAX_PERMITS);
        Semaphore {
            state: AtomicIsize::new(max as isize * ONE),
            max: AtomicUsize::new(max),
            waiting: AtomicUsize::new(0),
            queue: Mutex::new(Queue::new()),
            stats: Counters::default(),
        }
    }

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

    /// The counters, read without blocking anybody.
    pub(crate) fn stats(&self, name: String) -> LimiterStats {
        let s = &self.stats;
        LimiterStats {
            name,
            max: self.max(),
            active: self.active(),
            waiting: self.waiting(),
            acquired: s.acquired.load(Ordering::Relaxed),
            peak_active: s.peak_active.load(Ordering::Relaxed),
            waited: s.waited.load(Ordering::Relaxed),
            wait_total: Duration::from_nanos(s.wait_total_ns.load(Ordering::Relaxed)),
            wait_max: Duration::from_nanos(s.wait_max_ns.load(Ordering::Relaxed)),
        }
    }

    /// Bookkeeping for a permit just taken; `free_after` is the permit
    /// count the taker left behind.
    #[inline]
    fn note_acquired(&self, free_after: isize) {
        self.stats.acquired.fetch_add(1, Ordering::Relaxed);
        let active = usize::try_from(self.max() as isize - free_after).unwrap_or(0);
        if active > self.stats.peak_active.load(Ordering::Relaxed) {
            self.stats.peak_active.fetch_max(active, Ordering::Relaxed);
        }
    }

    fn note_waited(&self, since: Instant) {
        let waited = Instant::now().saturating_duration_since(since);
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        let s = &self.stats;
        s.waited.fetch_add(1, Ordering::Relaxed);
        s.wait_total_ns.fetch_add(ns, Ordering::Relaxed);
        s.wait_max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Takes a permit if one is free and nobody is queued.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        while s & QUEUED == 0 && permits(s) > 0 {
            match self
                .state
                .compare_exchange_weak(s, s - ONE, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.note_acquired(permits(s) - 1);
                    return true;
                }
                Err(actual) => s = actual,
            }
        }
        false
    }

    /// Gives a permit back: to the oldest waiter if there is one.
    #[inline]
    pub(crate) fn release(&self) {
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
        let mut q = lock(&self.queue);
        let waker = self.release_locked(&mut q);
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Release with the queue locked. Returns the waker to call once the
    /// lock is dropped.
    fn release_locked(&self, q: &mut Queue) -> Option<Waker> {
        // With the lock held nobody sets or clears QUEUED, and while it is
        // set no lock-free path touches the word.
        let s = self.state.load(Ordering::Acquire);
        if s & QUEUED == 0 {
            self.state.fetch_add(ONE, Ordering::Release);
            return None;
        }
        if permits(s) < 0 {
            // The limit was lowered: this permit retires.
            self.state.fetch_add(ONE, Ordering::Release);
            return None;
        }
        self.grant_front(q)
    }

    /// Hands the permit in hand to the oldest waiter (queue not empty).
    fn grant_front(&self, q: &mut Queue) -> Option<Waker> {
        let idx = q.head;
        debug_assert!(idx != NIL, "QUEUED set with an empty queue");
        if idx == NIL {
            self.state.fetch_add(ONE, Ordering::Release);
            return None;
        }
        q.unlink(idx);
        let node = &mut q.nodes[idx as usize];
        node.prev = GRANTED;
        let waker = node.waker.take();
        self.after_dequeue(q);
        waker
    }

    /// Keeps `waiting` and the QUEUED bit in step with the queue.
    fn after_dequeue(&self, q: &Queue) {
        self.waiting.store(q.len, Ordering::Relaxed);
        if q.len == 0 {
            self.state.fetch_and(!QUEUED, Ordering::AcqRel);
        }
    }

    /// Changes the limit. Raising admits waiters at once; lowering lets
    /// running bodies finish and retires their permits as they return.
    pub(crate) fn set_max(&self, new: usize) {
        let new = new.min(MAX_PERMITS);
        let mut wakers = Vec::new();
        {
            let mut q = lock(&self.queue);
            let old = self.max.swap(new, Ordering::Relaxed);
            if new >= old {
                let delta = (new - old) as isize * ONE;
                self.state.fetch_add(delta, Ordering::AcqRel);
                loop {
                    let s = self.state.load(Ordering::Acquire);
                    if s & QUEUED == 0 || permits(s) <= 0 {
                        break;
                    }
                    self.state.fetch_sub(ONE, Ordering::AcqRel);
                    wakers.extend(self.grant_front(&mut q));
                }
            } else {
                let delta = (old - new) as isize * ONE;
                self.state.fetch_sub(delta, Ordering::AcqRel);
            }
        }
        for w in wakers {
            w.wake();
        }
    }

    pub(crate) fn acquire(&self) -> Acquire<'_> {
        Acquire {
            sem: self,
            slot: NOT_QUEUED,
            since: None,
        }
    }
}

const NOT_QUEUED: u32 = NIL;
const DONE: u32 = NIL - 1;

/// Future of [`Semaphore::acquire`]: resolves once the caller holds a
/// permit (which it must give back with [`Semaphore::release`]).
///
/// Dropping it while queued leaves the queue; dropping it after a permit was
/// handed to it but before it was polled passes that permit on.
pub(crate) struct Acquire<'a> {
    sem: &'a Semaphore,
    /// `NOT_QUEUED`, `DONE`, or the caller's slot in the queue.
    slot: u32,
    /// When the caller queued (for the wait-time counters).
    since: Option<Instant>,
}

impl Future for Acquire<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let sem = this.sem;
        match this.slot {
            DONE => panic!("`Acquire` polled after completion"),
            NOT_QUEUED => {
                if sem.try_acquire() {
                    this.slot = DONE;
                    return Poll::Ready(());
                }
                // Cloned before locking: a foreign waker runs arbitrary code.
                let waker = cx.waker().clone();
                let mut q = lock(&sem.queue);
                let mut s = sem.state.load(Ordering::Acquire);
                loop {
                    if s & QUEUED != 0 {
                        break;
                    }
                    let next = if permits(s) > 0 { s - ONE } else { s | QUEUED };
                    match sem
                        .state
                        .compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) if next & QUEUED == 0 => {
                            drop(q);
                            sem.note_acquired(permits(next));
                            this.slot = DONE;
                            return Poll::Ready(());
                        }
                        Ok(_) => break,
                        Err(actual) => s = actual,
                    }
                }
                this.slot = q.push(waker);
                sem.waiting.store(q.len, Ordering::Relaxed);
                drop(q);
                this.since = Some(Instant::now());
                Poll::Pending
            }
            idx => {
                let mut q = lock(&sem.queue);
                let node = &mut q.nodes[idx as usize];
                if node.granted() {
                    q.release_slot(idx);
                    drop(q);
                    this.slot = DONE;
                    let free = permits(sem.state.load(Ordering::Relaxed));
                    sem.note_acquired(free);
                    if let Some(since) = this.since {
                        sem.note_waited(since);
                    }
                    return Poll::Ready(());
                }
                match &mut node.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        let idx = self.slot;
        if idx == DONE || idx == NOT_QUEUED {
            return;
        }
        let sem = self.sem;
        let mut q = lock(&sem.queue);
        let waker = if q.nodes[idx as usize].granted() {
            // A permit was handed to us: pass it on.
            q.release_slot(idx);
            sem.release_locked(&mut q)
        } else {
            q.unlink(idx);
            q.release_slot(idx);
            sem.after_dequeue(&q);
            None
        };
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }
}
