//! Counters that every call bumps and only `stats()` reads, without an
//! atomic read-modify-write per bump.
//!
//! A lock-prefixed add on a counter that every thread shares costs more
//! than the rest of an uncontended start, and under contention it moves
//! the counter's cache line from core to core on every call. So each
//! thread counts in a slot of its own, on a cache line of its own, with a
//! plain load and store; a read adds the slots up, and the total is exact.
//!
//! Slots are leased to threads on their first count and given back when
//! the thread ends; a slot passes to its next thread only through the
//! lease list's mutex, after its last holder is done with it. Threads
//! beyond [`SLOTS`] (or one whose thread-locals are being torn down) count
//! in one shared set of atomics instead.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots per counter set: threads beyond this many share one set of
/// atomics. Async runtimes run a few threads per core, so this covers
/// their workers on common machines.
pub(crate) const SLOTS: usize = 16;

/// One thread's share of a [`Sharded`] set.
#[derive(Debug)]
#[repr(align(64))]
struct Slot<const N: usize>([AtomicU64; N]);

/// `N` counters, each exact, bumped without contention (see the module
/// docs). `N` counters of one slot share a cache line: keep `N * 8 <= 64`.
#[derive(Debug)]
pub(crate) struct Sharded<const N: usize> {
    slots: [Slot<N>; SLOTS],
    shared: [AtomicU64; N],
}

impl<const N: usize> Sharded<N> {
    pub(crate) const fn new() -> Self {
        Sharded {
            slots: [const { Slot([const { AtomicU64::new(0) }; N]) }; SLOTS],
            shared: [const { AtomicU64::new(0) }; N],
        }
    }

    /// Adds `v` to counter `i`; returns what this thread's slot (or the
    /// shared set) held before, which is 0 on the first count in it.
    ///
    /// # Panics
    ///
    /// If `i >= N` (a bug in the caller, with a constant index).
    #[inline]
    pub(crate) fn add(&self, i: usize, v: u64) -> u64 {
        match lease::mine() {
            Some(s) => {
                let c = &self.slots[s].0[i];
                let before = c.load(Ordering::Relaxed);
                c.store(before.wrapping_add(v), Ordering::Relaxed);
                before
            }
            None => self.add_shared(i, v),
        }
    }

    /// [`add`](Sharded::add) for a thread without a slot: out of line, so
    /// that the common path falls through.
    #[cold]
    #[inline(never)]
    fn add_shared(&self, i: usize, v: u64) -> u64 {
        self.shared[i].fetch_add(v, Ordering::Relaxed)
    }

    /// Adds each `(i, v)` of `adds`: [`add`](Sharded::add) for several
    /// counters of one event, finding this thread's slot once.
    #[inline]
    pub(crate) fn add_each<const K: usize>(&self, adds: [(usize, u64); K]) {
        match lease::mine() {
            Some(s) => {
                let slot = &self.slots[s].0;
                for (i, v) in adds {
                    let c = &slot[i];
                    c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
                }
            }
            None => {
                for (i, v) in adds {
                    self.shared[i].fetch_add(v, Ordering::Relaxed);
                }
            }
        }
    }

    /// Raises counter `i` to `v` if it is lower: a running maximum, kept
    /// per thread like the sums (read with [`max`](Sharded::max)).
    #[inline]
    pub(crate) fn raise(&self, i: usize, v: u64) {
        match lease::mine() {
            Some(s) => {
                let c = &self.slots[s].0[i];
                if v > c.load(Ordering::Relaxed) {
                    c.store(v, Ordering::Relaxed);
                }
            }
            None => {
                self.shared[i].fetch_max(v, Ordering::Relaxed);
            }
        }
    }

    /// Counter `i` as a maximum: the largest of every slot and the shared
    /// set.
    pub(crate) fn max(&self, i: usize) -> u64 {
        let slots = self.slots.iter().map(|s| s.0[i].load(Ordering::Relaxed));
        slots.fold(self.shared[i].load(Ordering::Relaxed), u64::max)
    }

    /// Counter `i`: every slot and the shared set, added up.
    pub(crate) fn sum(&self, i: usize) -> u64 {
        let slots = self.slots.iter().map(|s| s.0[i].load(Ordering::Relaxed));
        slots.fold(self.shared[i].load(Ordering::Relaxed), u64::wrapping_add)
    }
}

/// This thread's slot index (`0..SLOTS`), if it has one: the same in every
/// per-thread structure, so a thread's shares of them can be found with
/// one thread-local load.
#[inline]
pub(crate) fn thread_slot() -> Option<usize> {
    lease::mine()
}

/// Which slot of every [`Sharded`] set the current thread writes: leased
/// on the thread's first count, given back when the thread ends.
mod lease {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};

    use super::SLOTS;

    /// Slots never leased yet are `NEXT..SLOTS`; given-back ones are listed.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static RETURNED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    /// [`MINE`] before the thread's first count.
    const UNASSIGNED: usize = usize::MAX;
    /// [`MINE`] of a thread without a slot: it counts in the shared set.
    const NO_SLOT: usize = SLOTS;

    thread_local! {
        /// This thread's slot: a plain thread-local without destructor, so
        /// reading it is one load.
        static MINE: Cell<usize> = const { Cell::new(UNASSIGNED) };
        /// Gives the slot back when the thread ends.
        static LEASE: Lease = const { Lease(Cell::new(None)) };
    }

    struct Lease(Cell<Option<usize>>);

    impl Drop for Lease {
        fn drop(&mut self) {
            if let Some(i) = self.0.take() {
                // Later counts on this thread (from other thread-locals'
                // destructors) go to the shared set.
                let _ = MINE.try_with(|m| m.set(NO_SLOT));
                // The mutex orders this thread's last counts before the
                // next holder's first.
                give_back(i);
            }
        }
    }

    fn give_back(i: usize) {
        RETURNED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(i);
    }

    /// This thread's slot, if it has one.
    #[inline]
    pub(super) fn mine() -> Option<usize> {
        match MINE.try_with(Cell::get) {
            Ok(i) if i < SLOTS => Some(i),
            Ok(UNASSIGNED) => assign(),
            _ => None,
        }
    }

    #[cold]
    #[inline(never)]
    fn assign() -> Option<usize> {
        let returned = RETURNED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let leased = returned.or_else(|| {
            let i = NEXT.fetch_add(1, Ordering::Relaxed);
            (i < SLOTS).then_some(i)
        });
        // Register the lease for the thread's end; a thread already ending
        // cannot, so it gives the slot back at once and counts shared.
        let slot = leased.filter(|&i| {
            let kept = LEASE.try_with(|l| l.0.set(Some(i))).is_ok();
            if !kept {
                give_back(i);
            }
            kept
        });
        let _ = MINE.try_with(|m| m.set(slot.unwrap_or(NO_SLOT)));
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::{Sharded, SLOTS};

    #[test]
    fn sums_are_exact_with_more_threads_than_slots_and_slots_passed_on() {
        static C: Sharded<2> = Sharded::new();
        const ADDS: u64 = 1_000;
        // More threads at once than there are slots: some count shared.
        let threads = 2 * SLOTS as u64 + 3;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for n in 0..ADDS {
                        // Both ways of adding, alike.
                        if n % 2 == 0 {
                            C.add(0, 1);
                            C.add(1, 3);
                        } else {
                            C.add_each([(0, 1), (1, 3)]);
                        }
                    }
                });
            }
        });
        assert_eq!(C.sum(0), threads * ADDS);
        assert_eq!(C.sum(1), 3 * threads * ADDS);
        // Threads one after another: each takes over a returned slot.
        for _ in 0..3 {
            std::thread::spawn(|| {
                for _ in 0..ADDS {
                    C.add(0, 1);
                }
            })
            .join()
            .unwrap();
        }
        assert_eq!(C.sum(0), (threads + 3) * ADDS);
    }

    #[test]
    fn a_maximum_is_the_largest_value_any_thread_raised_it_to() {
        static C: Sharded<1> = Sharded::new();
        // More threads than slots, so the shared set takes part too; each
        // raises to values below its own peak, before and after it.
        let threads = 2 * SLOTS as u64 + 3;
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || {
                    for v in [t, 10 * t + 7, t / 2, 3] {
                        C.raise(0, v);
                    }
                });
            }
        });
        assert_eq!(C.max(0), 10 * (threads - 1) + 7);
        // A lower value from a fresh thread changes nothing.
        std::thread::spawn(|| C.raise(0, 1)).join().unwrap();
        assert_eq!(C.max(0), 10 * (threads - 1) + 7);
    }

    #[test]
    fn the_first_add_in_a_slot_sees_zero() {
        static C: Sharded<1> = Sharded::new();
        std::thread::spawn(|| {
            assert_eq!(C.add(0, 5), 0);
            assert_eq!(C.add(0, 1), 5);
        })
        .join()
        .unwrap();
        assert_eq!(C.sum(0), 6);
    }
}
