//! When a waiter's wait ended, mostly without a clock read of its own.
//!
//! A queued call's wait is timed for the limiter's statistics
//! (`wait_total`, `wait_max`, the `metrics` histogram) with tokio's clock,
//! so that it is exact under a paused clock. That costs two clock reads per
//! queued call, one when it queues and one when it starts, and a clock read
//! is as dear as the whole hand-off (25–55 ns on a VM).
//!
//! The second read can usually be shared. Every caller that queues reads
//! the clock anyway, and its reading is later than every grant that had
//! been made before it looked. [`Stamp`] keeps, per thread, the latest such
//! reading and, per class, the latest grant it is known to follow. A
//! waiter that was granted a start and finds its grant covered by its
//! thread's stamp takes the stamp as the end of its wait: a time after its
//! grant and no later than now, so the wait it records lies between being
//! granted and starting, as one measured by its own read would. Under a
//! busy limiter (where the cost matters) the releaser queues again right
//! after its grant, and the waiter it woke runs next on the same thread
//! (tokio runs a task woken by the running one next, on the same worker),
//! so nearly every wake-up is covered. A waiter whose grant is not covered
//! reads the clock itself, and so does one whose stamp is older than its
//! own queueing (a slot passed on from an ended thread, or tickets that
//! wrapped while the thread did not queue: such a stamp could claim a
//! grant it never saw).
//!
//! Per thread, not one stamp per limiter: a paused clock belongs to one
//! current-thread runtime, and tests running side by side each have their
//! own, at different times; a named limiter is shared by all of them. A
//! reading taken on the waiter's own thread comes from the waiter's own
//! clock. Only the thread itself writes and reads its slot.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::queue::Class;
use crate::shard::{thread_slot, SLOTS};

/// Whether ticket `a` is at or after ticket `b` (tickets wrap).
#[inline]
pub(crate) fn at_or_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// One thread's stamp, on a cache line of its own.
#[repr(align(64))]
struct Slot {
    /// Per class: every grant up to this ticket was made before `ns` was
    /// read.
    upto: [AtomicU32; 2],
    /// A clock reading, in the rate gate's time.
    ns: AtomicU64,
}

pub(crate) struct Stamp {
    slots: [Slot; SLOTS],
}

impl Stamp {
    pub(crate) const fn new() -> Stamp {
        Stamp {
            slots: [const {
                Slot {
                    upto: [AtomicU32::new(0), AtomicU32::new(0)],
                    ns: AtomicU64::new(0),
                }
            }; SLOTS],
        }
    }

    /// Records this thread's clock reading `now`, taken after the grants up
    /// to `granted` (per class, loaded before reading the clock) were seen.
    /// A thread without a slot records nothing.
    #[inline]
    pub(crate) fn record(&self, granted: [u32; 2], now: u64) {
        let Some(i) = thread_slot() else { return };
        let slot = &self.slots[i];
        // Only this thread writes and reads its slot (a slot passes to a
        // later thread through the lease's mutex): relaxed is enough.
        slot.ns.store(now, Ordering::Relaxed);
        for (upto, g) in slot.upto.iter().zip(granted) {
            upto.store(g, Ordering::Relaxed);
        }
    }

    /// A clock reading this thread took after the grant of `ticket` in
    /// `class` (the caller has seen that grant), if it took one, and not
    /// before `since`, when the waiter queued: an older reading is stale
    /// (a slot passed on from an ended thread, or tickets that wrapped).
    #[inline]
    pub(crate) fn after_grant(&self, class: Class, ticket: u32, since: u64) -> Option<u64> {
        let slot = &self.slots[thread_slot()?];
        let upto = slot.upto[class as usize].load(Ordering::Relaxed);
        let ns = slot.ns.load(Ordering::Relaxed);
        (at_or_after(upto, ticket) && ns >= since).then_some(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_is_covered_by_a_reading_taken_after_it() {
        let s = Stamp::new();
        assert_eq!(s.after_grant(Class::Online, 1, 0), None);
        s.record([3, 0], 100);
        assert_eq!(s.after_grant(Class::Online, 1, 0), Some(100));
        assert_eq!(s.after_grant(Class::Online, 3, 0), Some(100));
        assert_eq!(s.after_grant(Class::Online, 4, 0), None, "not granted yet");
        assert_eq!(s.after_grant(Class::Batch, 1, 0), None, "classes apart");
        s.record([5, 2], 200);
        assert_eq!(s.after_grant(Class::Online, 5, 0), Some(200));
        assert_eq!(s.after_grant(Class::Batch, 2, 0), Some(200));
    }

    #[test]
    fn a_reading_serves_only_its_own_thread() {
        let s = Stamp::new();
        // This thread takes its slot first: the other thread's must be
        // another one, not this one's once given back.
        s.record([0, 0], 1);
        // Another thread (another runtime, perhaps with a paused clock far
        // ahead) stamps every grant so far.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                s.record([10, 10], 3_600_000_000_000);
                assert_eq!(s.after_grant(Class::Online, 10, 0), Some(3_600_000_000_000));
            });
        });
        assert_eq!(s.after_grant(Class::Online, 10, 0), None);
        s.record([10, 0], 7);
        assert_eq!(s.after_grant(Class::Online, 10, 0), Some(7));
    }

    #[test]
    fn a_later_clock_that_is_behind_replaces_the_stamp() {
        // A runtime whose paused clock ran far ahead ended; the next one on
        // this thread starts behind it. Its readings replace the stamp.
        let s = Stamp::new();
        s.record([4, 0], 3_600_000_000_000);
        s.record([6, 0], 50);
        assert_eq!(s.after_grant(Class::Online, 6, 0), Some(50));
    }

    #[test]
    fn tickets_wrap() {
        let s = Stamp::new();
        s.record([u32::MAX, 0], 10);
        assert_eq!(s.after_grant(Class::Online, u32::MAX - 1, 0), Some(10));
        assert_eq!(s.after_grant(Class::Online, 0, 0), None);
        s.record([1, 0], 20);
        assert_eq!(s.after_grant(Class::Online, 0, 0), Some(20));
        assert_eq!(s.after_grant(Class::Online, u32::MAX, 0), Some(20));
        assert!(at_or_after(1, u32::MAX) && !at_or_after(u32::MAX, 1));
    }
}
