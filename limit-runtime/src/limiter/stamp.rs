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
//! been made before it looked. [`Stamp`] keeps the latest such reading and,
//! per class, the latest grant it is known to follow. A waiter that was
//! granted a start and finds its grant covered takes the stamp as the end
//! of its wait: a time after its grant and no later than now, so the wait
//! it records lies between being granted and starting, as one measured by
//! its own read would. Under a busy limiter (where the cost matters) the
//! releaser's next call queues right after its grant, before the granted
//! waiter runs, so nearly every wake-up is covered. A waiter whose grant is
//! not covered yet reads the clock itself.
//!
//! Written only under the queue lock; read without it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::queue::Class;

/// Whether ticket `a` is at or after ticket `b` (tickets wrap).
#[inline]
pub(crate) fn at_or_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

pub(crate) struct Stamp {
    /// Per class: every grant up to this ticket was made before `ns` was
    /// read.
    upto: [AtomicU32; 2],
    /// A clock reading, in the rate gate's time; never decreases.
    ns: AtomicU64,
}

impl Stamp {
    pub(crate) const fn new() -> Stamp {
        Stamp {
            upto: [AtomicU32::new(0), AtomicU32::new(0)],
            ns: AtomicU64::new(0),
        }
    }

    /// Records the clock reading `now`, taken after the grants up to
    /// `granted` (per class, loaded before reading the clock) were seen.
    /// Under the queue lock, so there is one writer at a time.
    #[inline]
    pub(crate) fn record(&self, granted: [u32; 2], now: u64) {
        let mut newer = false;
        for (upto, g) in self.upto.iter().zip(granted) {
            if !at_or_after(upto.load(Ordering::Relaxed), g) {
                newer = true;
            }
        }
        if !newer {
            return;
        }
        // The time first, released with each `upto`: a reader that sees an
        // `upto` sees this time or a later one. Readings taken before the
        // lock may arrive out of order; keeping the larger keeps every
        // `upto` covered.
        if now > self.ns.load(Ordering::Relaxed) {
            self.ns.store(now, Ordering::Relaxed);
        }
        for (upto, g) in self.upto.iter().zip(granted) {
            if !at_or_after(upto.load(Ordering::Relaxed), g) {
                upto.store(g, Ordering::Release);
            }
        }
    }

    /// A clock reading taken after the grant of `ticket` in `class`, if one
    /// was recorded (the caller has seen that grant).
    #[inline]
    pub(crate) fn after_grant(&self, class: Class, ticket: u32) -> Option<u64> {
        let upto = self.upto[class as usize].load(Ordering::Acquire);
        at_or_after(upto, ticket).then(|| self.ns.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_is_covered_by_a_reading_taken_after_it() {
        let s = Stamp::new();
        assert_eq!(s.after_grant(Class::Online, 1), None);
        s.record([3, 0], 100);
        assert_eq!(s.after_grant(Class::Online, 1), Some(100));
        assert_eq!(s.after_grant(Class::Online, 3), Some(100));
        assert_eq!(s.after_grant(Class::Online, 4), None, "not granted yet");
        assert_eq!(s.after_grant(Class::Batch, 1), None, "classes apart");
    }

    #[test]
    fn readings_out_of_order_never_move_the_time_back() {
        let s = Stamp::new();
        s.record([5, 2], 200);
        // Read earlier, locked later: it covers nothing new.
        s.record([4, 2], 150);
        assert_eq!(s.after_grant(Class::Online, 5), Some(200));
        // Covers a newer grant, but its reading is older than the stamp's:
        // the stamp keeps the larger time (still after both grants).
        s.record([6, 2], 190);
        assert_eq!(s.after_grant(Class::Online, 6), Some(200));
        assert_eq!(s.after_grant(Class::Batch, 2), Some(200));
        s.record([6, 3], 250);
        assert_eq!(s.after_grant(Class::Batch, 3), Some(250));
        assert_eq!(s.after_grant(Class::Online, 7), None);
    }

    #[test]
    fn tickets_wrap() {
        let s = Stamp::new();
        // Tickets move on by less than 2^31 between two records.
        s.record([0x7000_0000, 0], 1);
        s.record([0xe000_0000, 0], 2);
        s.record([u32::MAX, 0], 10);
        assert_eq!(s.after_grant(Class::Online, u32::MAX - 1), Some(10));
        assert_eq!(s.after_grant(Class::Online, 0), None);
        s.record([1, 0], 20);
        assert_eq!(s.after_grant(Class::Online, 0), Some(20));
        assert_eq!(s.after_grant(Class::Online, u32::MAX), Some(20));
        assert!(at_or_after(1, u32::MAX) && !at_or_after(u32::MAX, 1));
    }
}
