//! The waiters of one limiter: a FIFO list per class, threaded by index
//! through one `Vec`.
//!
//! A queued caller costs one 32-byte slot and no allocation of its own;
//! leaving from the middle (a dropped or timed-out waiter) is O(1). The
//! queue knows nothing of permits or rates: [`Core`](super::core::Core)
//! decides who may start and calls [`Queue::pop_front`].
//!
//! The slots of a drained burst are kept for the next one, so that a
//! limiter that fills up again and again (a batch job's waves, a busy
//! service) does not grow the vector under the lock each time, copying
//! every slot. They are given back when a burst drains that used less
//! than a quarter of them: the load changed. What is kept is at most 32
//! bytes per caller of an earlier burst, each of which was a parked task
//! many times that size.
//!
//! Every waiter gets a ticket, increasing within its class, so the list of
//! a class is in ticket order and grants go out in ticket order. That lets
//! a waiter learn that it was granted without taking the lock: the core
//! publishes the ticket of each grant (see `Core::granted_upto`).

use std::task::Waker;

pub(crate) const NIL: u32 = u32::MAX;

/// Which list a waiter is in. Online waiters start before batch ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Online = 0,
    Batch = 1,
}

struct Node {
    waker: Option<Waker>,
    ticket: u32,
    /// The previous node (`NIL` at the head).
    prev: u32,
    /// The next node (`NIL` at the tail), or the next free slot.
    next: u32,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
    len: 0,
};

/// `repr(C)`, hot fields first: the core keeps the lock and these on one
/// cache line (see `Core`), so that a lock holder's writes stay on it.
#[repr(C)]
pub(crate) struct Queue {
    lists: [List; 2],
    /// The last ticket handed out, per class.
    tickets: [u32; 2],
    free: u32,
    /// Slots owned by a caller: queued, or granted and not yet collected.
    used: u32,
    // Read on every operation, written only when the vector grows.
    nodes: Vec<Node>,
    /// The waiter held back by the rate alone, and when the rate next
    /// allows a start (set by the dispatcher).
    pub(crate) rate_due: Option<(u32, u64)>,
    /// The waiter that armed a timer for `rate_due`, and for when.
    pub(crate) rate_armed: Option<(u32, u64)>,
}

impl Queue {
    /// Where the fields every queued call writes end.
    #[cfg(test)]
    pub(crate) const HOT_END: usize = std::mem::offset_of!(Queue, nodes);

    pub(crate) fn new() -> Queue {
        Queue {
            lists: [EMPTY; 2],
            tickets: [0; 2],
            free: NIL,
            used: 0,
            nodes: Vec::new(),
            rate_due: None,
            rate_armed: None,
        }
    }

    /// Waiters in both lists.
    pub(crate) fn len(&self) -> usize {
        (self.lists[0].len + self.lists[1].len) as usize
    }

    pub(crate) fn front(&self, class: Class) -> Option<u32> {
        let head = self.lists[class as usize].head;
        (head != NIL).then_some(head)
    }

    /// Appends a waiter to its class's list and returns its slot and its
    /// ticket.
    #[inline]
    pub(crate) fn push(&mut self, class: Class, waker: Waker) -> (u32, u32) {
        // Wrapping is fine: a waiter is only ever compared with grants of
        // the waiters queued ahead of it, far fewer than 2^31.
        let ticket = self.tickets[class as usize].wrapping_add(1);
        self.tickets[class as usize] = ticket;
        let list = &mut self.lists[class as usize];
        let node = Node {
            waker: Some(waker),
            ticket,
            prev: list.tail,
            next: NIL,
        };
        let idx = if self.free != NIL {
            let idx = self.free;
            self.free = self.nodes[idx as usize].next;
            self.nodes[idx as usize] = node;
            idx
        } else {
            // More than u32::MAX - 2 simultaneous waiters cannot be
            // represented; that many tasks do not fit in memory anyway.
            let idx = u32::try_from(self.nodes.len())
                .ok()
                .filter(|&i| i < NIL - 1)
                .expect("too many waiters");
            self.nodes.push(node);
            idx
        };
        if list.tail == NIL {
            list.head = idx;
        } else {
            self.nodes[list.tail as usize].next = idx;
        }
        list.tail = idx;
        list.len += 1;
        self.used += 1;
        (idx, ticket)
    }

    /// Takes a waiting `idx` out of its list (the slot stays its owner's).
    #[inline]
    pub(crate) fn unlink(&mut self, class: Class, idx: u32) {
        let (prev, next) = {
            let n = &self.nodes[idx as usize];
            (n.prev, n.next)
        };
        let list = &mut self.lists[class as usize];
        if prev == NIL {
            list.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        list.len -= 1;
        if self.rate_armed.is_some_and(|(i, _)| i == idx) {
            self.rate_armed = None;
        }
    }

    /// Grants the front waiter of `class` a start: takes it out of the list,
    /// frees its slot (its owner learns of the grant from its ticket, not
    /// from the slot), and returns its ticket and waker.
    #[inline]
    pub(crate) fn pop_front(&mut self, class: Class) -> Option<(u32, Option<Waker>)> {
        let idx = self.front(class)?;
        self.unlink(class, idx);
        let node = &mut self.nodes[idx as usize];
        let granted = (node.ticket, node.waker.take());
        self.release_slot(idx);
        Some(granted)
    }

    /// Stores the waker to call when `idx` may start (kept if equivalent).
    pub(crate) fn set_waker(&mut self, idx: u32, waker: &Waker) {
        match &mut self.nodes[idx as usize].waker {
            Some(w) if w.will_wake(waker) => {}
            w => *w = Some(waker.clone()),
        }
    }

    /// Takes the waker of a waiting `idx` (to wake it without granting).
    pub(crate) fn take_waker(&mut self, idx: u32) -> Option<Waker> {
        self.nodes[idx as usize].waker.take()
    }

    /// Returns a slot to the free list.
    #[inline]
    pub(crate) fn release_slot(&mut self, idx: u32) {
        let n = &mut self.nodes[idx as usize];
        n.waker = None;
        n.prev = NIL;
        n.next = self.free;
        self.free = idx;
        self.used -= 1;
        if self.used == 0 {
            self.drained();
        }
    }

    /// The queue drained: every slot is free. Keeps the memory for the
    /// next burst, unless this one used less than a quarter of it; either
    /// way the next burst fills the slots in order (writes only, no walk
    /// along a free list through lines another core last wrote).
    #[inline]
    fn drained(&mut self) {
        if self.nodes.capacity() <= 64 {
            // A few slots: reused from the free list as they are.
            return;
        }
        // A slot is appended only when none is free: since the last clear,
        // the length is the most slots used at once.
        let peak = self.nodes.len();
        self.nodes.clear();
        self.free = NIL;
        if peak < self.nodes.capacity() / 4 {
            self.nodes.shrink_to(peak.max(16));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn order(q: &Queue, class: Class) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = q.lists[class as usize].head;
        while at != NIL {
            out.push(at);
            at = q.nodes[at as usize].next;
        }
        out
    }

    #[test]
    fn fifo_per_class_and_unlink_from_the_middle() {
        let mut q = Queue::new();
        let w = Waker::noop().clone();
        let (a, ta) = q.push(Class::Online, w.clone());
        let (b, tb) = q.push(Class::Batch, w.clone());
        let (c, tc) = q.push(Class::Online, w.clone());
        let (d, _) = q.push(Class::Online, w.clone());
        assert_eq!((ta, tb, tc), (1, 1, 2), "tickets count per class");
        assert_eq!(order(&q, Class::Online), [a, c, d]);
        assert_eq!(order(&q, Class::Batch), [b]);
        q.unlink(Class::Online, c);
        q.release_slot(c);
        assert_eq!(order(&q, Class::Online), [a, d]);
        assert_eq!(q.pop_front(Class::Online).map(|g| g.0), Some(1));
        assert_eq!(order(&q, Class::Online), [d]);
        assert_eq!((q.len(), q.lists[Class::Batch as usize].len), (2, 1));
        // Freed slots are reused, last freed first.
        let (e, te) = q.push(Class::Batch, w);
        assert_eq!((e, te), (a, 2));
        assert_eq!(order(&q, Class::Batch), [b, e]);
    }

    /// Queues `n` waiters, then lets them go: the front half granted in
    /// order, the rest leaving from the back.
    fn burst(q: &mut Queue, n: usize) {
        let w = Waker::noop().clone();
        let idx: Vec<u32> = (0..n).map(|_| q.push(Class::Online, w.clone()).0).collect();
        for _ in 0..n / 2 {
            assert!(q.pop_front(Class::Online).is_some());
        }
        for &i in idx[n / 2..].iter().rev() {
            q.unlink(Class::Online, i);
            q.release_slot(i);
        }
        assert_eq!((q.len(), q.used), (0, 0));
    }

    #[test]
    fn a_burst_keeps_its_slots_for_the_next_and_a_small_one_gives_them_back() {
        let mut q = Queue::new();
        burst(&mut q, 1000);
        let (kept, capacity) = (q.nodes.as_ptr(), q.nodes.capacity());
        assert!(capacity >= 1000, "kept for the next burst");
        assert_eq!((q.nodes.len(), q.free), (0, NIL), "all slots free");
        // The next burst of that size reuses them: no growth, no copy.
        burst(&mut q, 1000);
        assert_eq!((q.nodes.as_ptr(), q.nodes.capacity()), (kept, capacity));
        // A burst of a quarter or more keeps them too.
        burst(&mut q, capacity / 4);
        assert_eq!(q.nodes.capacity(), capacity);
        // One of less than a quarter: the load changed, the memory goes.
        burst(&mut q, capacity / 4 - 1);
        assert!(
            q.nodes.capacity() < capacity / 4 + 16,
            "{}",
            q.nodes.capacity()
        );
        assert_eq!((q.nodes.len(), q.free), (0, NIL));
        // And the queue works on from empty.
        let (a, _) = q.push(Class::Online, Waker::noop().clone());
        assert_eq!((a, q.len()), (0, 1));
    }

    #[test]
    fn a_small_queue_keeps_its_few_slots() {
        let mut q = Queue::new();
        burst(&mut q, 64);
        burst(&mut q, 1);
        assert_eq!(q.nodes.len(), 64, "not cleared");
        // The first burst freed slot 32 last (see `burst`): reused first.
        assert_eq!(q.free, 32);
    }
}
