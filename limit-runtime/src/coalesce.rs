//! Single-flight: concurrent identical calls share one execution.
//!
//! A [`Group`] runs at most one future per key at a time. While a call with
//! key `K` is in flight, every other [`Group::run`] with an equal key waits
//! for it and receives a clone of its output, instead of running its own
//! future. Nothing is cached: once the call completes its key is forgotten,
//! and the next call runs its future again.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use limit_runtime::coalesce::Group;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! let group: Group<u64, String> = Group::new();
//! let loads = &AtomicUsize::new(0);
//! let load = |id: u64| async move {
//!     loads.fetch_add(1, Ordering::Relaxed);
//!     tokio::task::yield_now().await; // the other calls arrive meanwhile
//!     format!("user {id}")
//! };
//!
//! let (a, b, c) = tokio::join!(
//!     group.run(7, load(7)),
//!     group.run(7, load(7)),
//!     group.run(7, load(7)),
//! );
//! assert_eq!((a.as_str(), b.as_str(), c.as_str()), ("user 7", "user 7", "user 7"));
//! assert_eq!(loads.load(Ordering::Relaxed), 1); // one body ran, two calls shared it
//! assert!(group.is_empty()); // nothing is kept once the call is over
//! # }
//! ```
//!
//! # No task, no `'static`
//!
//! No task is spawned: the first caller (the *leader*) polls its own future
//! in its own task, so the future may borrow local data. The other callers
//! (*waiters*) keep their own future unpolled while they wait.
//!
//! # Cancellation and panics
//!
//! If the leader is dropped before its future completes, or its future
//! panics, one waiter takes over and runs *its own* future; the others keep
//! waiting for the new leader. A panic reaches only the caller whose future
//! panicked. So no waiter ever hangs, and the futures of one key never run
//! two at once. A waiter that is dropped simply leaves.
//!
//! # `#[coalesce]`
//!
//! The `#[coalesce]` attribute expands to a [`StaticGroup`] inside the
//! function. The same code without the macro:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use limit_runtime::coalesce::StaticGroup;
//! use std::sync::Arc;
//!
//! # #[derive(Debug)]
//! struct Config {
//!     tenant: String,
//! }
//!
//! // #[coalesce]
//! async fn load_config(tenant: &str) -> Arc<Config> {
//!     static GROUP: StaticGroup = StaticGroup::new();
//!     // `()` names the instantiation: a generic function passes its type
//!     // parameters (and `Self`) instead, so each instantiation has a group.
//!     GROUP
//!         .run::<(), _, _>(tenant.to_owned(), async {
//!             // The body, which may borrow `tenant`:
//!             tokio::task::yield_now().await; // (a real one would fetch something)
//!             Arc::new(Config { tenant: tenant.to_owned() })
//!         })
//!         .await
//! }
//!
//! let (a, b) = tokio::join!(load_config("acme"), load_config("acme"));
//! assert!(Arc::ptr_eq(&a, &b)); // the second call got a clone of the first's result
//! assert_eq!(a.tenant, "acme");
//! # }
//! ```
//!
//! # Costs
//!
//! A call that finds no other call with its key (the common case) takes two
//! short critical sections on one shard of the group's map and allocates
//! nothing but its map entry. The state that waiters share is created only
//! when the first waiter arrives. The leader returns its own output; if
//! anybody waited, one clone is stored for them and each waiter clones it
//! (the last one takes the stored copy instead), so `V` is cloned about once
//! per waiter. No lock is held while any future runs, so unrelated keys
//! never wait on each other.

use std::any::{Any, TypeId};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

// ---------------------------------------------------------------------------
// Bounds with readable errors
// ---------------------------------------------------------------------------

/// A type that can be a `#[coalesce]` key: `Hash + Eq + Send + Sync + 'static`.
///
/// Implemented for every such type; it exists so that a wrong key type gets
/// an error that says what `#[coalesce]` needs:
///
/// ```compile_fail,E0277
/// use limit_runtime::coalesce::StaticGroup;
/// static GROUP: StaticGroup = StaticGroup::new();
/// async fn f() -> u32 {
///     GROUP.run::<(), _, _>(1.5_f64, async { 1 }).await // `f64` is not `Eq`
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a #[coalesce] key",
    label = "not usable as a #[coalesce] key",
    note = "a key must be Hash + Eq + Send + Sync + 'static; pick one with #[coalesce(key = ...)]"
)]
pub trait CoalesceKey: Hash + Eq + Send + Sync + 'static {}

// `do_not_recommend` makes rustc report `T: CoalesceKey` itself, with the
// message above, instead of whichever of the bounds below failed.
#[diagnostic::do_not_recommend]
impl<T: Hash + Eq + Send + Sync + 'static> CoalesceKey for T {}

/// An output that `#[coalesce]` can share: `Clone + Send + Sync + 'static`.
///
/// Implemented for every such type; it exists so that a wrong output type
/// gets an error that says what `#[coalesce]` needs:
///
/// ```compile_fail,E0277
/// use limit_runtime::coalesce::StaticGroup;
/// struct Report; // not `Clone`
/// static GROUP: StaticGroup = StaticGroup::new();
/// async fn f() -> Report {
///     GROUP.run::<(), _, _>(1_u32, async { Report }).await
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "#[coalesce] hands a clone of the result to every waiting caller, so `{Self}` must be Clone + Send + Sync + 'static",
    label = "the output of a #[coalesce] function must be Clone + Send + Sync + 'static",
    note = "wrap the output in `Arc` (e.g. `Arc<T>` or `Result<T, Arc<E>>`)"
)]
pub trait SharedOutput: Clone + Send + Sync + 'static {}

#[diagnostic::do_not_recommend]
impl<T: Clone + Send + Sync + 'static> SharedOutput for T {}

// ---------------------------------------------------------------------------
// Group
// ---------------------------------------------------------------------------

/// Runs at most one future per key at a time and shares its output with the
/// calls that arrive meanwhile.
///
/// See the [module docs](self) for an overview. A `Group` is usually shared
/// by reference (a field of a long-lived struct, an `Arc`, or a
/// [`StaticGroup`]).
///
/// `Group<K, V>` is `Send` and `Sync` when `K: Send` and `V: Send + Sync`.
pub struct Group<K, V> {
    hasher: RandomState,
    shards: Box<[Shard<K, V>]>,
}

/// A point-in-time copy of a group's counters, from [`Group::stats`] or
/// [`StaticGroup::stats`].
///
/// Reading it takes no lock; the counters are read one after another, so
/// under load they may be a few operations apart.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Futures that were run: one per leader, take-overs included.
    pub runs: u64,
    /// Calls that received the output of another call's future.
    pub shared: u64,
    /// Keys in flight now.
    pub in_flight: usize,
}

/// One lock's worth of the map, on a cache line of its own.
#[repr(align(128))]
struct Shard<K, V> {
    table: Mutex<Table<K, V>>,
    in_flight: AtomicUsize,
    runs: AtomicU64,
    shared: AtomicU64,
}

struct Table<K, V> {
    map: HashMap<Keyed<K>, Entry<V>, PreHashed>,
    /// Source of `Tag::id`.
    next_id: u64,
}

/// The map's key: the caller's key with its hash and an id that is unique
/// among the entries in the map.
///
/// A call is found by its key (`Keyed::eq` compares keys); once in the map,
/// an entry is found by its [`Tag`] (`Keyed: Borrow<Tag>`), so the leader
/// does not need a second copy of the key to remove its entry. Both views
/// agree on every pair of entries in the map, as `Borrow` requires: no two
/// entries have equal keys, and no two have the same id.
struct Keyed<K> {
    tag: Tag,
    key: K,
}

/// Names one map entry: the key's hash and the entry's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tag {
    hash: u64,
    id: u64,
}

impl Hash for Tag {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<K> Hash for Keyed<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must match `Tag::hash`.
        state.write_u64(self.tag.hash);
    }
}

impl<K: Eq> PartialEq for Keyed<K> {
    fn eq(&self, other: &Self) -> bool {
        self.tag.hash == other.tag.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for Keyed<K> {}

impl<K> Borrow<Tag> for Keyed<K> {
    fn borrow(&self) -> &Tag {
        &self.tag
    }
}

/// The map hashes the precomputed hash: `write_u64` is the only call it gets.
#[derive(Clone, Copy, Default)]
struct PreHashed;

struct PassThrough(u64);

impl BuildHasher for PreHashed {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached (see `Tag::hash`); a plain FNV-1a keeps it correct.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A key in flight. `flight` is created when the first waiter arrives.
struct Entry<V> {
    flight: Option<Arc<Flight<V>>>,
}

/// What the waiters of one key share: their wakers and, at the end, the
/// output. Outlives the map entry until the last waiter has taken its copy.
struct Flight<V> {
    tag: Tag,
    value: OnceLock<V>,
    waiters: Mutex<Waiters>,
}

/// The waiters of one flight in a `Vec`, free slots chained by index.
struct Waiters {
    slots: Vec<Waiter>,
    free: u32,
    used: u32,
    /// The output is published and `slots` drained: slot numbers are void.
    closed: bool,
}

struct Waiter {
    waker: Option<Waker>,
    state: WaiterState,
}

#[derive(Clone, Copy)]
enum WaiterState {
    Free {
        next: u32,
    },
    Waiting,
    /// Chosen to run its own future after the leader went away.
    Promoted,
}

const NIL: u32 = u32::MAX;

/// A shard whose map can hold more than this many entries gives memory
/// back once it is three-quarters empty.
const KEEP_CAPACITY: usize = 128;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under these locks (a foreign waker's clone or drop
    // at most), and every structure is consistent wherever that can happen,
    // so a poisoned lock is used as it is.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cpus * 4).next_power_of_two().clamp(4, 64)
    })
}

impl<K: Eq, V> Table<K, V> {
    /// Called after a removal: keeps the capacity within 4 × len (above a
    /// small floor), so a burst of keys does not pin its memory forever.
    fn after_remove(&mut self) {
        let cap = self.map.capacity();
        if cap > KEEP_CAPACITY && self.map.len() * 4 < cap {
            self.map.shrink_to(self.map.len() * 2);
        }
    }
}

impl Waiters {
    const fn new() -> Self {
        Waiters {
            slots: Vec::new(),
            free: NIL,
            used: 0,
            closed: false,
        }
    }

    fn push(&mut self, waker: Waker) -> u32 {
        let node = Waiter {
            waker: Some(waker),
            state: WaiterState::Waiting,
        };
        self.used += 1;
        if self.free == NIL {
            // More than u32::MAX - 1 waiters on one key do not fit in memory.
            let idx = u32::try_from(self.slots.len()).expect("too many waiters on one key");
            self.slots.push(node);
            idx
        } else {
            let idx = self.free;
            let slot = &mut self.slots[idx as usize];
            if let WaiterState::Free { next } = slot.state {
                self.free = next;
            }
            *slot = node;
            idx
        }
    }

    /// Frees slot `idx`; returns its waker, to be dropped after unlocking.
    fn remove(&mut self, idx: u32) -> Option<Waker> {
        let free = Waiter {
            waker: None,
            state: WaiterState::Free { next: self.free },
        };
        let old = std::mem::replace(&mut self.slots[idx as usize], free);
        self.free = idx;
        self.used -= 1;
        if self.used == 0 {
            // Every slot is free (they hold no wakers): start over.
            if self.slots.capacity() > 64 {
                self.slots = Vec::new();
            } else {
                self.slots.clear();
            }
            self.free = NIL;
        }
        old.waker
    }

    /// Promotes the oldest waiting slot. `None` if nobody waits; otherwise
    /// the waiter's waker, to be woken after unlocking.
    fn promote(&mut self) -> Option<Option<Waker>> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| matches!(s.state, WaiterState::Waiting))?;
        slot.state = WaiterState::Promoted;
        Some(slot.waker.take())
    }

    /// Marks the output published and hands back every slot, whose wakers
    /// are to be woken after unlocking.
    fn close(&mut self) -> Vec<Waiter> {
        self.closed = true;
        self.free = NIL;
        self.used = 0;
        std::mem::take(&mut self.slots)
    }
}

impl<V> Flight<V> {
    fn new(tag: Tag) -> Self {
        Flight {
            tag,
            value: OnceLock::new(),
            waiters: Mutex::new(Waiters::new()),
        }
    }
}

impl<K, V> Group<K, V> {
    /// An empty group.
    pub fn new() -> Self {
        let shards = (0..shard_count())
            .map(|_| Shard {
                table: Mutex::new(Table {
                    map: HashMap::with_hasher(PreHashed),
                    next_id: 0,
                }),
                in_flight: AtomicUsize::new(0),
                runs: AtomicU64::new(0),
                shared: AtomicU64::new(0),
            })
            .collect();
        Group {
            hasher: RandomState::new(),
            shards,
        }
    }

    /// The number of keys in flight now.
    ///
    /// ```
    /// use limit_runtime::coalesce::Group;
    ///
    /// let group: Group<&str, u32> = Group::new();
    /// assert_eq!(group.len(), 0);
    /// assert!(group.is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.in_flight.load(Relaxed)).sum()
    }

    /// Whether no key is in flight now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The group's counters. Reading them never blocks a call.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use limit_runtime::coalesce::Group;
    ///
    /// let group: Group<u32, u32> = Group::new();
    /// let slow = || async {
    ///     tokio::task::yield_now().await;
    ///     42
    /// };
    /// tokio::join!(group.run(1, slow()), group.run(1, slow()));
    /// let stats = group.stats();
    /// assert_eq!((stats.runs, stats.shared, stats.in_flight), (1, 1, 0));
    /// # }
    /// ```
    pub fn stats(&self) -> GroupStats {
        self.shards
            .iter()
            .fold(GroupStats::default(), |acc, s| GroupStats {
                runs: acc.runs + s.runs.load(Relaxed),
                shared: acc.shared + s.shared.load(Relaxed),
                in_flight: acc.in_flight + s.in_flight.load(Relaxed),
            })
    }

    fn shard(&self, hash: u64) -> &Shard<K, V> {
        // The map uses the low bits (bucket) and the top 7 (tag byte);
        // bits 32.. pick the shard independently of both.
        &self.shards[(hash >> 32) as usize & (self.shards.len() - 1)]
    }
}

impl<K: Hash + Eq, V: Clone> Group<K, V> {
    /// Runs `fut`, unless a call with an equal key is in flight: then waits
    /// for that call and returns a clone of its output, and `fut` is dropped
    /// unpolled.
    ///
    /// The first caller polls `fut` in its own task; no task is spawned and
    /// `fut` need not be `'static`. If that caller is dropped, or `fut`
    /// panics, one waiting call takes over and runs its own future; the panic
    /// reaches only the caller whose future panicked. A call dropped while it
    /// waits just leaves.
    ///
    /// The returned future is `Send` when `K: Send`, `V: Send + Sync` and
    /// `F: Send`. It holds `fut` by value, and today's rustc reserves room
    /// for an `async fn` argument twice (once as the argument, once while it
    /// is awaited); for a large future, pass `std::pin::pin!(fut)` to keep
    /// it in the caller's frame.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use limit_runtime::coalesce::Group;
    /// use std::sync::Arc;
    ///
    /// let group: Group<String, Arc<Vec<u8>>> = Group::new();
    /// let path = String::from("/etc/hosts");
    /// // The future may borrow: it runs in the caller's task.
    /// let bytes = group
    ///     .run(path.clone(), async { Arc::new(path.as_bytes().to_vec()) })
    ///     .await;
    /// assert_eq!(bytes.len(), 10);
    /// # }
    /// ```
    pub async fn run<F>(&self, key: K, fut: F) -> V
    where
        F: Future<Output = V>,
    {
        let lead = match (Join {
            group: self,
            state: JoinState::Start(key),
        })
        .await
        {
            Joined::Value(value) => return value,
            Joined::Lead(lead) => lead,
        };
        let value = fut.await;
        lead.finish(value)
    }

    /// Joins the call in flight for `key`, or starts one.
    fn enter(&self, key: K, waker: &Waker) -> Entered<'_, K, V> {
        let hash = self.hasher.hash_one(&key);
        let shard = self.shard(hash);
        let mut table = lock(&shard.table);
        let probe = Keyed {
            tag: Tag {
                hash,
                id: table.next_id,
            },
            key,
        };
        if let Some(tag) = table.map.get_key_value(&probe).map(|(k, _)| k.tag) {
            let entry = table.map.get_mut(&tag).expect("the entry was just found");
            let flight = entry
                .flight
                .get_or_insert_with(|| Arc::new(Flight::new(tag)));
            let flight = Arc::clone(flight);
            let slot = lock(&flight.waiters).push(waker.clone());
            drop(table);
            drop(probe); // the caller's key: user code, dropped unlocked
            Entered::Wait { flight, slot }
        } else {
            table.next_id = table.next_id.wrapping_add(1);
            let tag = probe.tag;
            table.map.insert(probe, Entry { flight: None });
            shard.in_flight.fetch_add(1, Relaxed);
            shard.runs.fetch_add(1, Relaxed);
            drop(table);
            Entered::Lead(Lead { group: self, tag })
        }
    }
}

impl<K: Eq, V> Group<K, V> {
    /// The current leader of `tag` is gone (dropped, panicked, or a promoted
    /// waiter dropped before it ran): promotes a waiter, or removes the entry
    /// if nobody waits.
    fn abandon(&self, tag: Tag) {
        let shard = self.shard(tag.hash);
        let mut table = lock(&shard.table);
        let Some(entry) = table.map.get(&tag) else {
            return; // not reached: the entry stays while it has a leader
        };
        let promoted = entry
            .flight
            .as_ref()
            .and_then(|flight| lock(&flight.waiters).promote());
        match promoted {
            Some(waker) => {
                drop(table);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            None => {
                let removed = table.map.remove_entry(&tag);
                shard.in_flight.fetch_sub(1, Relaxed);
                table.after_remove();
                drop(table);
                drop(removed);
            }
        }
    }
}

impl<K, V> Default for Group<K, V> {
    fn default() -> Self {
        Group::new()
    }
}

impl<K, V> fmt::Debug for Group<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = self.stats();
        f.debug_struct("Group")
            .field("in_flight", &stats.in_flight)
            .field("runs", &stats.runs)
            .field("shared", &stats.shared)
            .finish_non_exhaustive()
    }
}

/// How a call continues after joining: with a value, or as the leader.
enum Joined<'a, K: Eq, V> {
    Value(V),
    Lead(Lead<'a, K, V>),
}

/// What [`Group::enter`] found: nobody (lead), or a call to wait for.
enum Entered<'a, K: Eq, V> {
    Lead(Lead<'a, K, V>),
    Wait { flight: Arc<Flight<V>>, slot: u32 },
}

/// The first step of a call: finds or creates its key's entry and, as a
/// waiter, waits for a value or a promotion.
struct Join<'a, K: Eq, V> {
    group: &'a Group<K, V>,
    state: JoinState<K, V>,
}

enum JoinState<K, V> {
    Start(K),
    Waiting { flight: Arc<Flight<V>>, slot: u32 },
    Done,
}

// No field is pinned: the key and the `Arc` move freely.
impl<K: Eq, V> Unpin for Join<'_, K, V> {}

impl<'a, K: Hash + Eq, V: Clone> Future for Join<'a, K, V> {
    type Output = Joined<'a, K, V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (flight, slot) = match std::mem::replace(&mut this.state, JoinState::Done) {
            JoinState::Start(key) => match this.group.enter(key, cx.waker()) {
                Entered::Wait { flight, slot } => {
                    this.state = JoinState::Waiting { flight, slot };
                    return Poll::Pending;
                }
                Entered::Lead(lead) => return Poll::Ready(Joined::Lead(lead)),
            },
            JoinState::Waiting { flight, slot } => (flight, slot),
            JoinState::Done => panic!("`Join` polled after completion"),
        };
        if flight.value.get().is_some() {
            return Poll::Ready(Joined::Value(this.take(flight)));
        }
        let mut waiters = lock(&flight.waiters);
        if waiters.closed {
            drop(waiters);
            return Poll::Ready(Joined::Value(this.take(flight)));
        }
        let waiter = &mut waiters.slots[slot as usize];
        match waiter.state {
            WaiterState::Waiting => {
                let old = match &waiter.waker {
                    Some(w) if w.will_wake(cx.waker()) => None,
                    _ => waiter.waker.replace(cx.waker().clone()),
                };
                drop(waiters);
                drop(old);
                this.state = JoinState::Waiting { flight, slot };
                Poll::Pending
            }
            WaiterState::Promoted => {
                let waker = waiters.remove(slot);
                drop(waiters);
                drop(waker);
                let tag = flight.tag;
                drop(flight);
                this.group.shard(tag.hash).runs.fetch_add(1, Relaxed);
                Poll::Ready(Joined::Lead(Lead {
                    group: this.group,
                    tag,
                }))
            }
            WaiterState::Free { .. } => unreachable!("a waiter's slot was freed under it"),
        }
    }
}

impl<K: Eq, V: Clone> Join<'_, K, V> {
    /// A waiter's copy of the published output: moved out if this is the
    /// last reference to the flight, cloned otherwise.
    fn take(&self, flight: Arc<Flight<V>>) -> V {
        self.group
            .shard(flight.tag.hash)
            .shared
            .fetch_add(1, Relaxed);
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "limit_runtime::coalesce",
            key_hash = flight.tag.hash,
            "result shared with a concurrent identical call"
        );
        match Arc::try_unwrap(flight) {
            Ok(flight) => flight.value.into_inner(),
            Err(flight) => flight.value.get().cloned(),
        }
        .expect("a closed flight has a value")
    }
}

impl<K: Eq, V> Drop for Join<'_, K, V> {
    fn drop(&mut self) {
        let JoinState::Waiting { flight, slot } =
            std::mem::replace(&mut self.state, JoinState::Done)
        else {
            return;
        };
        let mut waiters = lock(&flight.waiters);
        if waiters.closed {
            return;
        }
        let promoted = matches!(waiters.slots[slot as usize].state, WaiterState::Promoted);
        let waker = waiters.remove(slot);
        drop(waiters);
        drop(waker);
        if promoted {
            // Chosen to take over but dropped before running: pass it on.
            self.group.abandon(flight.tag);
        }
    }
}

/// The leader's duty: publish the output, or hand over if dropped first.
struct Lead<'a, K: Eq, V> {
    group: &'a Group<K, V>,
    tag: Tag,
}

impl<K: Eq, V: Clone> Lead<'_, K, V> {
    /// Removes the entry and hands `value` to the waiters, if any.
    fn finish(self, value: V) -> V {
        let shard = self.group.shard(self.tag.hash);
        let mut table = lock(&shard.table);
        // Found by tag, so no user code (`K::eq`) runs under the lock.
        let waited = table
            .map
            .get(&self.tag)
            .is_some_and(|entry| entry.flight.is_some());
        let copy = if waited {
            // Clone outside any lock: `V::clone` is the user's code. If it
            // panics, `self` drops and hands over as if the future had
            // panicked. Calls arriving meanwhile still join.
            drop(table);
            let copy = value.clone();
            table = lock(&shard.table);
            Some(copy)
        } else {
            None
        };
        let removed = table.map.remove_entry(&self.tag);
        shard.in_flight.fetch_sub(1, Relaxed);
        table.after_remove();
        drop(table);
        std::mem::forget(self);
        let Some((key, entry)) = removed else {
            unreachable!("a leader's entry stays until it finishes");
        };
        drop(key);
        if let (Some(flight), Some(copy)) = (entry.flight, copy) {
            let unused = flight.value.set(copy);
            debug_assert!(unused.is_ok(), "a flight is published once");
            let slots = lock(&flight.waiters).close();
            for waker in slots.into_iter().filter_map(|s| s.waker) {
                waker.wake();
            }
        }
        value
    }
}

impl<K: Eq, V> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        // Dropped or unwinding before the output existed.
        self.group.abandon(self.tag);
    }
}

// ---------------------------------------------------------------------------
// StaticGroup
// ---------------------------------------------------------------------------

/// The groups of one `#[coalesce]` function, one per instantiation, in a
/// `static`.
///
/// Every distinct `(M, K, V)` (a marker type `M` naming the instantiation,
/// the key type and the output type) gets its own [`Group<K, V>`], created
/// on first use and kept for the life of the process. Finding the group of
/// the first instantiation used is one atomic read and a type-id comparison;
/// further instantiations go through a short mutex-protected list.
///
/// `M` may be any type, lifetimes included (`(Self, T)` in a generic
/// method, `()` in a plain function); lifetimes do not tell instantiations
/// apart.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use limit_runtime::coalesce::StaticGroup;
/// use std::fmt::Display;
///
/// // #[coalesce]
/// async fn describe<T: Display + Send + Sync + 'static>(id: u32, what: T) -> String {
///     static GROUP: StaticGroup = StaticGroup::new();
///     GROUP
///         .run::<(T,), _, _>(id, async move { format!("{id}: {what}") })
///         .await
/// }
///
/// assert_eq!(describe(1, "one").await, "1: one");
/// assert_eq!(describe(2, 2.5).await, "2: 2.5"); // another instantiation, another group
/// # }
/// ```
pub struct StaticGroup {
    name: &'static str,
    first: OnceLock<Instance>,
    more: Mutex<Vec<Instance>>,
}

/// Every `StaticGroup` used so far, for [`stats`].
static USED: Mutex<Vec<&'static StaticGroup>> = Mutex::new(Vec::new());

/// Counters of one `#[coalesce]` function (one [`StaticGroup`]), from
/// [`stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoalesceStats {
    /// The function's path (`module::path::function`), or the name given to
    /// [`StaticGroup::named`].
    pub name: String,
    /// Bodies run (leaders, take-overs included).
    pub runs: u64,
    /// Calls that received another call's result instead of running.
    pub shared: u64,
    /// Keys in flight now.
    pub in_flight: usize,
}

/// The counters of every [`StaticGroup`] (every `#[coalesce]` function)
/// used so far in the process, sorted by name. Reading them takes no lock
/// that a call holds for more than a list update.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use limit_runtime::coalesce::{self, StaticGroup};
///
/// static GROUP: StaticGroup = StaticGroup::named("doc::load");
/// GROUP.run::<(), _, _>(1_u32, async { 'x' }).await;
/// let s = coalesce::stats().into_iter().find(|s| s.name == "doc::load").unwrap();
/// assert_eq!((s.runs, s.shared), (1, 0));
/// # }
/// ```
pub fn stats() -> Vec<CoalesceStats> {
    let used: Vec<&'static StaticGroup> = lock(&USED).clone();
    let mut all: Vec<CoalesceStats> = used
        .into_iter()
        .map(|g| {
            let s = g.stats();
            CoalesceStats {
                name: g.name.to_owned(),
                runs: s.runs,
                shared: s.shared,
                in_flight: s.in_flight,
            }
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

#[derive(Clone, Copy)]
struct Instance {
    id: TypeId,
    group: &'static dyn ErasedGroup,
}

trait ErasedGroup: Send + Sync {
    fn stats(&self) -> GroupStats;
    fn as_any(&self) -> &(dyn Any + Send + Sync);
}

impl<K: Send + 'static, V: Send + Sync + 'static> ErasedGroup for Group<K, V> {
    fn stats(&self) -> GroupStats {
        Group::stats(self)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

impl Instance {
    fn new<K: CoalesceKey, V: SharedOutput>(id: TypeId) -> Self {
        Instance {
            id,
            group: Box::leak(Box::new(Group::<K, V>::new())),
        }
    }

    fn get<K: CoalesceKey, V: SharedOutput>(self) -> &'static Group<K, V> {
        self.group
            .as_any()
            .downcast_ref()
            .expect("the type id names the key and output types")
    }
}

impl StaticGroup {
    /// A `StaticGroup` with no group yet, listed by [`stats`] as
    /// `"(unnamed)"`.
    pub const fn new() -> Self {
        StaticGroup::named("(unnamed)")
    }

    /// A `StaticGroup` listed by [`stats`] under `name` (the macro uses
    /// the function's path).
    pub const fn named(name: &'static str) -> Self {
        StaticGroup {
            name,
            first: OnceLock::new(),
            more: Mutex::new(Vec::new()),
        }
    }

    /// The name given to [`named`](StaticGroup::named).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// [`Group::run`] on the group of instantiation `(M, K, F::Output)`.
    ///
    /// The group is looked up when `run` is called; the returned future is
    /// that of [`Group::run`], with no further layer around it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use limit_runtime::coalesce::StaticGroup;
    ///
    /// static GROUP: StaticGroup = StaticGroup::new();
    /// let n = GROUP.run::<(), _, _>("answer", async { 42_u32 }).await;
    /// assert_eq!(n, 42);
    /// # }
    /// ```
    pub fn run<M: ?Sized, K, F>(&'static self, key: K, fut: F) -> impl Future<Output = F::Output>
    where
        K: CoalesceKey,
        F: Future,
        F::Output: SharedOutput,
    {
        self.group::<M, K, F::Output>().run(key, fut)
    }

    /// The group of instantiation `(M, K, V)`, created on first use.
    ///
    /// ```
    /// use limit_runtime::coalesce::StaticGroup;
    ///
    /// static GROUP: StaticGroup = StaticGroup::new();
    /// let a = GROUP.group::<(), u32, String>();
    /// let b = GROUP.group::<(), u32, String>();
    /// let c = GROUP.group::<(u8,), u32, String>();
    /// assert!(std::ptr::eq(a, b));
    /// assert!(!std::ptr::eq(a, c));
    /// ```
    pub fn group<M: ?Sized, K: CoalesceKey, V: SharedOutput>(
        &'static self,
    ) -> &'static Group<K, V> {
        let id = typeid::of::<(PhantomData<M>, K, V)>();
        match self.first.get() {
            Some(first) if first.id == id => first.get(),
            _ => self.group_slow::<K, V>(id),
        }
    }

    #[cold]
    fn group_slow<K: CoalesceKey, V: SharedOutput>(
        &'static self,
        id: TypeId,
    ) -> &'static Group<K, V> {
        let first = self.first.get_or_init(|| {
            lock(&USED).push(self);
            Instance::new::<K, V>(id)
        });
        if first.id == id {
            return first.get();
        }
        let mut more = lock(&self.more);
        if let Some(found) = more.iter().find(|i| i.id == id) {
            return found.get();
        }
        let made = Instance::new::<K, V>(id);
        more.push(made);
        made.get()
    }

    /// The counters of all its groups, added up.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use limit_runtime::coalesce::StaticGroup;
    ///
    /// static GROUP: StaticGroup = StaticGroup::new();
    /// GROUP.run::<(), _, _>(1_u8, async { 'a' }).await;
    /// GROUP.run::<(), _, _>(1_u16, async { 'b' }).await;
    /// assert_eq!(GROUP.stats().runs, 2);
    /// # }
    /// ```
    pub fn stats(&self) -> GroupStats {
        let add = |acc: GroupStats, i: &Instance| {
            let s = i.group.stats();
            GroupStats {
                runs: acc.runs + s.runs,
                shared: acc.shared + s.shared,
                in_flight: acc.in_flight + s.in_flight,
            }
        };
        let acc = self
            .first
            .get()
            .map_or_else(GroupStats::default, |i| add(GroupStats::default(), i));
        lock(&self.more).iter().fold(acc, add)
    }
}

impl Default for StaticGroup {
    fn default() -> Self {
        StaticGroup::new()
    }
}

impl fmt::Debug for StaticGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups = usize::from(self.first.get().is_some()) + lock(&self.more).len();
        f.debug_struct("StaticGroup")
            .field("groups", &groups)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::panic::AssertUnwindSafe;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::task::Wake;
    use std::time::Duration;
    use tokio::task::JoinSet;
    use tokio::time::{sleep, Instant};

    /// Capacity of all shards' maps.
    fn capacity<K, V>(group: &Group<K, V>) -> usize {
        group
            .shards
            .iter()
            .map(|s| lock(&s.table).map.capacity())
            .sum()
    }

    /// Callers registered on `key`'s flight (`None`: not in flight).
    fn waiting<K: Hash + Eq, V>(group: &Group<K, V>, key: &K) -> Option<usize> {
        let hash = group.hasher.hash_one(key);
        let table = lock(&group.shard(hash).table);
        let (_, entry) = table
            .map
            .iter()
            .find(|(k, _)| k.tag.hash == hash && k.key == *key)?;
        Some(entry.flight.as_ref().map_or(0, |f| {
            let w = lock(&f.waiters);
            w.slots
                .iter()
                .filter(|s| !matches!(s.state, WaiterState::Free { .. }))
                .count()
        }))
    }

    fn poll<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
        fut.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// A future that is pending until its gate opens.
    fn gate(open: &Cell<bool>) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |_| {
            if open.get() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// Counts the bodies of one key running at once; panics on overlap.
    struct Running(Arc<AtomicUsize>);

    impl Running {
        fn enter(active: &Arc<AtomicUsize>) -> Running {
            assert_eq!(active.fetch_add(1, SeqCst), 0, "two bodies ran at once");
            Running(Arc::clone(active))
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn thousand_identical_calls_run_the_body_once() {
        let group = Arc::new(Group::<u32, u64>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for _ in 0..1000 {
            let (group, runs) = (Arc::clone(&group), Arc::clone(&runs));
            set.spawn(async move {
                group
                    .run(1, async move {
                        runs.fetch_add(1, SeqCst);
                        sleep(Duration::from_millis(10)).await;
                        7
                    })
                    .await
            });
        }
        while let Some(value) = set.join_next().await {
            assert_eq!(value.unwrap(), 7);
        }
        assert_eq!(runs.load(SeqCst), 1);
        let stats = group.stats();
        assert_eq!((stats.runs, stats.shared, stats.in_flight), (1, 999, 0));
        assert!(group.is_empty());
        // Nothing is kept: the next call runs again.
        assert_eq!(group.run(1, async { 8 }).await, 8);
    }

    #[tokio::test(start_paused = true)]
    async fn distinct_keys_run_concurrently() {
        let group = Arc::new(Group::<u32, u32>::new());
        let (active, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let start = Instant::now();
        let mut set = JoinSet::new();
        for key in 0..16 {
            let (group, active, peak) = (group.clone(), active.clone(), peak.clone());
            set.spawn(async move {
                group
                    .run(key, async move {
                        let now = active.fetch_add(1, SeqCst) + 1;
                        peak.fetch_max(now, SeqCst);
                        sleep(Duration::from_secs(1)).await;
                        active.fetch_sub(1, SeqCst);
                        key * 10
                    })
                    .await
            });
        }
        let mut values: Vec<u32> = set.join_all().await;
        values.sort_unstable();
        assert_eq!(values, (0..16).map(|k| k * 10).collect::<Vec<_>>());
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(peak.load(SeqCst), 16);
        assert_eq!(group.stats().runs, 16);
    }

    /// Spawns a caller whose body counts itself in `runs`, checks that it
    /// runs alone, sleeps 10 s, then panics or returns `id`.
    fn spawn_caller(
        set: &mut JoinSet<u32>,
        group: &Arc<Group<u32, u32>>,
        runs: &Arc<AtomicUsize>,
        active: &Arc<AtomicUsize>,
        id: u32,
        panics: bool,
    ) -> tokio::task::AbortHandle {
        let (group, runs, active) = (group.clone(), runs.clone(), active.clone());
        set.spawn(async move {
            group
                .run(1, async move {
                    runs.fetch_add(1, SeqCst);
                    let _running = Running::enter(&active);
                    sleep(Duration::from_secs(10)).await;
                    assert!(!panics, "the body of caller {id} panics");
                    id
                })
                .await
        })
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_leader_hands_over_to_a_waiter() {
        let group = Arc::new(Group::new());
        let (runs, active) = (Arc::default(), Arc::default());
        let mut set = JoinSet::new();
        let leader = spawn_caller(&mut set, &group, &runs, &active, 0, false);
        tokio::task::yield_now().await;
        for id in 1..10 {
            spawn_caller(&mut set, &group, &runs, &active, id, false);
        }
        sleep(Duration::from_secs(1)).await;
        assert_eq!(waiting(&group, &1), Some(9));
        leader.abort();
        let mut values = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(value) => values.push(value),
                Err(e) => assert!(e.is_cancelled()),
            }
        }
        // The oldest waiter took over; the 8 others got its output.
        assert_eq!(values, [1; 9]);
        assert_eq!(runs.load(SeqCst), 2);
        let stats = group.stats();
        assert_eq!((stats.runs, stats.shared, stats.in_flight), (2, 8, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn panicking_leader_hands_over_to_a_waiter() {
        let group = Arc::new(Group::new());
        let (runs, active) = (Arc::default(), Arc::default());
        let mut set = JoinSet::new();
        let leader = spawn_caller(&mut set, &group, &runs, &active, 0, true);
        tokio::task::yield_now().await;
        for id in 1..5 {
            spawn_caller(&mut set, &group, &runs, &active, id, false);
        }
        let mut values = Vec::new();
        while let Some(joined) = set.join_next_with_id().await {
            match joined {
                Ok((_, value)) => values.push(value),
                Err(e) => {
                    assert_eq!(e.id(), leader.id());
                    assert!(e.is_panic(), "only the leader's caller sees the panic");
                }
            }
        }
        assert_eq!(values, [1; 4]);
        assert_eq!(runs.load(SeqCst), 2);
        assert!(group.is_empty());
    }

    #[test]
    fn cancelled_waiter_leaves() {
        let group = Group::<u32, u32>::new();
        let open = Cell::new(false);
        let mut leader = Box::pin(group.run(1, async {
            gate(&open).await;
            10
        }));
        let mut w1 = Box::pin(group.run(1, async { 11 }));
        let mut w2 = Box::pin(group.run(1, async { 12 }));
        assert!(poll(leader.as_mut()).is_pending());
        assert!(poll(w1.as_mut()).is_pending());
        assert!(poll(w2.as_mut()).is_pending());
        assert_eq!(waiting(&group, &1), Some(2));
        drop(w1);
        assert_eq!(waiting(&group, &1), Some(1));
        open.set(true);
        assert_eq!(poll(leader.as_mut()), Poll::Ready(10));
        assert_eq!(poll(w2.as_mut()), Poll::Ready(10));
        let stats = group.stats();
        assert_eq!((stats.runs, stats.shared, stats.in_flight), (1, 1, 0));
    }

    #[test]
    fn promoted_waiter_dropped_before_running_passes_the_promotion_on() {
        let group = Group::<u32, u32>::new();
        let mut leader = Box::pin(group.run(1, std::future::pending()));
        let mut w1 = Box::pin(group.run(1, async { 11 }));
        let mut w2 = Box::pin(group.run(1, async { 12 }));
        let mut w3 = Box::pin(group.run(1, async { 13 }));
        assert!(poll(leader.as_mut()).is_pending());
        assert!(poll(w1.as_mut()).is_pending());
        assert!(poll(w2.as_mut()).is_pending());
        assert!(poll(w3.as_mut()).is_pending());
        drop(leader); // promotes w1
        drop(w1); // before it ran: promotes w2
        assert_eq!(poll(w2.as_mut()), Poll::Ready(12));
        assert_eq!(poll(w3.as_mut()), Poll::Ready(12));
        let stats = group.stats();
        assert_eq!((stats.runs, stats.shared, stats.in_flight), (2, 1, 0));
    }

    #[test]
    fn promoted_waiter_dropped_alone_removes_the_entry() {
        let group = Group::<u32, u32>::new();
        let mut leader = Box::pin(group.run(1, std::future::pending()));
        let mut w1 = Box::pin(group.run(1, async { 11 }));
        assert!(poll(leader.as_mut()).is_pending());
        assert!(poll(w1.as_mut()).is_pending());
        drop(leader);
        assert_eq!(group.len(), 1, "the entry waits for the promoted waiter");
        drop(w1);
        assert!(group.is_empty());
        let mut next = Box::pin(group.run(1, async { 20 }));
        assert_eq!(poll(next.as_mut()), Poll::Ready(20));
    }

    #[test]
    fn waiter_that_never_polls_again_is_not_waited_for() {
        // The leader is dropped while the only waiter was never re-polled:
        // the waiter takes over when it is polled, whenever that is.
        let group = Group::<u32, u32>::new();
        let mut leader = Box::pin(group.run(1, std::future::pending()));
        let mut w1 = Box::pin(group.run(1, async { 11 }));
        assert!(poll(leader.as_mut()).is_pending());
        assert!(poll(w1.as_mut()).is_pending());
        drop(leader);
        let mut w2 = Box::pin(group.run(1, async { 12 }));
        assert!(poll(w2.as_mut()).is_pending(), "joins the promoted waiter");
        assert_eq!(poll(w1.as_mut()), Poll::Ready(11));
        assert_eq!(poll(w2.as_mut()), Poll::Ready(11));
        assert!(group.is_empty());
    }

    #[test]
    fn keys_with_equal_hashes_stay_apart() {
        #[derive(PartialEq, Eq)]
        struct Colliding(u32);
        impl Hash for Colliding {
            fn hash<H: Hasher>(&self, state: &mut H) {
                state.write_u8(0);
            }
        }
        let group = Group::<Colliding, u32>::new();
        let (open1, open2) = (Cell::new(false), Cell::new(false));
        let mut l1 = Box::pin(group.run(Colliding(1), async {
            gate(&open1).await;
            1
        }));
        let mut l2 = Box::pin(group.run(Colliding(2), async {
            gate(&open2).await;
            2
        }));
        let mut w2 = Box::pin(group.run(Colliding(2), async { 20 }));
        let mut w1 = Box::pin(group.run(Colliding(1), async { 10 }));
        assert!(poll(l1.as_mut()).is_pending());
        assert!(poll(l2.as_mut()).is_pending());
        assert!(poll(w2.as_mut()).is_pending());
        assert!(poll(w1.as_mut()).is_pending());
        assert_eq!(group.len(), 2);
        assert_eq!(waiting(&group, &Colliding(1)), Some(1));
        assert_eq!(waiting(&group, &Colliding(2)), Some(1));
        open2.set(true);
        assert_eq!(poll(l2.as_mut()), Poll::Ready(2));
        assert_eq!(poll(w2.as_mut()), Poll::Ready(2));
        assert_eq!(
            waiting(&group, &Colliding(1)),
            Some(1),
            "key 1 is untouched"
        );
        drop(l1); // w1 takes over key 1
        assert_eq!(poll(w1.as_mut()), Poll::Ready(10));
        assert!(group.is_empty());
    }

    /// An output that counts its clones and can be told to panic in one.
    struct Counted {
        clones: Arc<AtomicUsize>,
        panic_in_clone: Arc<AtomicBool>,
        value: u32,
    }

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.clones.fetch_add(1, SeqCst);
            if self.panic_in_clone.swap(false, SeqCst) {
                panic!("clone panics");
            }
            Counted {
                clones: self.clones.clone(),
                panic_in_clone: self.panic_in_clone.clone(),
                value: self.value,
            }
        }
    }

    #[test]
    fn output_is_cloned_once_per_waiter() {
        let group = Group::<u32, Counted>::new();
        let clones = Arc::new(AtomicUsize::new(0));
        let panic_in_clone = Arc::new(AtomicBool::new(false));
        let make = |value| {
            let (clones, panic_in_clone) = (clones.clone(), panic_in_clone.clone());
            async move {
                Counted {
                    clones,
                    panic_in_clone,
                    value,
                }
            }
        };
        // Alone: never cloned.
        let mut alone = Box::pin(group.run(1, make(1)));
        assert!(matches!(poll(alone.as_mut()), Poll::Ready(c) if c.value == 1));
        assert_eq!(clones.load(SeqCst), 0);

        let open = Cell::new(false);
        let mut leader = Box::pin(group.run(1, async {
            gate(&open).await;
            make(2).await
        }));
        let mut waiters: Vec<_> = (0..3).map(|_| Box::pin(group.run(1, make(9)))).collect();
        assert!(poll(leader.as_mut()).is_pending());
        for w in &mut waiters {
            assert!(poll(w.as_mut()).is_pending());
        }
        open.set(true);
        assert!(matches!(poll(leader.as_mut()), Poll::Ready(c) if c.value == 2));
        for w in &mut waiters {
            assert!(matches!(poll(w.as_mut()), Poll::Ready(c) if c.value == 2));
        }
        // One copy for the waiters to share, then the last one moves it.
        assert_eq!(clones.load(SeqCst), 3);
    }

    #[test]
    fn panicking_clone_hands_over_like_a_panicking_body() {
        let group = Group::<u32, Counted>::new();
        let clones = Arc::new(AtomicUsize::new(0));
        let panic_in_clone = Arc::new(AtomicBool::new(true));
        let make = |value| Counted {
            clones: clones.clone(),
            panic_in_clone: panic_in_clone.clone(),
            value,
        };
        let open = Cell::new(false);
        let mut leader = Box::pin(group.run(1, async {
            gate(&open).await;
            make(1)
        }));
        let mut w1 = Box::pin(group.run(1, async { make(2) }));
        assert!(poll(leader.as_mut()).is_pending());
        assert!(poll(w1.as_mut()).is_pending());
        open.set(true);
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| poll(leader.as_mut())));
        assert!(caught.is_err());
        assert!(matches!(poll(w1.as_mut()), Poll::Ready(c) if c.value == 2));
        assert!(group.is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_entry_left_after_100_000_distinct_keys() {
        let group = Group::<u64, u64>::new();
        for key in 0..100_000 {
            assert_eq!(group.run(key, async move { key + 1 }).await, key + 1);
        }
        assert_eq!(group.len(), 0);

        // 100,000 keys in flight at once, then done: the maps shrink again.
        let open = Cell::new(false);
        let mut calls: Vec<_> = (0..100_000_u64)
            .map(|key| {
                let open = &open;
                Box::pin(group.run(key, async move {
                    gate(open).await;
                    key
                }))
            })
            .collect();
        for call in &mut calls {
            assert!(poll(call.as_mut()).is_pending());
        }
        assert_eq!(group.len(), 100_000);
        assert!(capacity(&group) >= 100_000);
        open.set(true);
        for (key, call) in calls.iter_mut().enumerate() {
            assert_eq!(poll(call.as_mut()), Poll::Ready(key as u64));
        }
        assert!(group.is_empty());
        let floor = group.shards.len() * KEEP_CAPACITY * 2;
        assert!(capacity(&group) <= floor, "{} > {floor}", capacity(&group));
    }

    #[tokio::test(start_paused = true)]
    async fn stats_count_runs_and_shared_calls() {
        let group = Group::<&'static str, u32>::new();
        assert_eq!(group.stats(), GroupStats::default());
        let slow = |n| async move {
            sleep(Duration::from_millis(5)).await;
            n
        };
        let (a, b, c, d) = tokio::join!(
            group.run("a", slow(1)),
            group.run("a", slow(2)),
            group.run("a", slow(3)),
            group.run("b", slow(4)),
        );
        assert_eq!((a, b, c, d), (1, 1, 1, 4));
        let expected = GroupStats {
            runs: 2,
            shared: 2,
            in_flight: 0,
        };
        assert_eq!(group.stats(), expected);
        assert!(format!("{group:?}").contains("runs: 2"));
    }

    #[tokio::test(start_paused = true)]
    async fn static_group_keeps_instantiations_apart() {
        static GROUP: StaticGroup = StaticGroup::new();
        struct A;
        struct B;

        fn borrowed<'x>(_: &'x str) -> &'static Group<u32, u32> {
            GROUP.group::<(&'x str, A), u32, u32>()
        }

        let a = GROUP.group::<A, u32, u32>();
        let b = GROUP.group::<B, u32, u32>();
        assert!(std::ptr::eq(a, GROUP.group::<A, u32, u32>()));
        assert!(std::ptr::eq(b, GROUP.group::<B, u32, u32>()));
        assert!(!std::ptr::eq(a, b));
        let s = String::from("short-lived");
        assert!(std::ptr::eq(borrowed(&s), borrowed("static")));
        assert!(!std::ptr::eq(borrowed("static"), a));
        // Unsized markers, and another output type under the same marker.
        let u = GROUP.group::<dyn Fn(A), u32, u32>();
        let o = GROUP.group::<A, u32, u64>();
        assert!(!std::ptr::eq(u, a) && !std::ptr::eq(u, b));
        assert!(std::ptr::eq(u, GROUP.group::<dyn Fn(A), u32, u32>()));
        assert!(std::ptr::eq(o, GROUP.group::<A, u32, u64>()));

        let slow = |n: u32| async move {
            sleep(Duration::from_millis(5)).await;
            n
        };
        let (x, y, z) = tokio::join!(
            GROUP.run::<A, _, _>(1_u32, slow(1)),
            GROUP.run::<A, _, _>(1_u32, slow(2)),
            GROUP.run::<B, _, _>(1_u32, slow(3)),
        );
        assert_eq!((x, y, z), (1, 1, 3), "A shares with A, never with B");
        let stats = GROUP.stats();
        assert_eq!((stats.runs, stats.shared, stats.in_flight), (2, 1, 0));
        let debug = format!("{GROUP:?}");
        assert!(debug.contains("groups: 5"), "{debug}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn futures_are_send_and_may_borrow() {
        fn spawnable<T: Send + 'static>(t: T) -> T {
            t
        }
        let group = Arc::new(Group::<u32, Arc<str>>::new());
        let task = spawnable(async move {
            let local = String::from("borrowed");
            let body = || async {
                tokio::task::yield_now().await;
                Arc::<str>::from(local.as_str())
            };
            let (a, b) = tokio::join!(group.run(1, body()), group.run(1, body()));
            assert!(Arc::ptr_eq(&a, &b));
            a
        });
        assert_eq!(&*tokio::spawn(task).await.unwrap(), "borrowed");

        static GROUP: StaticGroup = StaticGroup::new();
        let task = spawnable(async {
            let local = String::from("abc");
            let len = async { local.len() };
            GROUP.run::<(), _, _>("len", len).await
        });
        assert_eq!(tokio::spawn(task).await.unwrap(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn threads_hammering_a_few_keys_share_and_leave_nothing() {
        let group = Arc::new(Group::<u32, u32>::new());
        let actives: Arc<[Arc<AtomicUsize>]> = (0..4).map(|_| Arc::default()).collect();
        let mut set = JoinSet::new();
        for i in 0..2_000_u32 {
            let (group, actives) = (group.clone(), actives.clone());
            let task = set.spawn(async move {
                let key = i % 4;
                let value = group
                    .run(key, async {
                        let _running = Running::enter(&actives[key as usize]);
                        tokio::task::yield_now().await;
                        key
                    })
                    .await;
                assert_eq!(value, key);
            });
            if i % 5 == 0 {
                task.abort(); // a leader or a waiter, or not started yet
            }
        }
        let mut completed = 0;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(()) => completed += 1,
                Err(e) => assert!(e.is_cancelled()),
            }
        }
        assert!(completed >= 1_600);
        let stats = group.stats();
        assert!(stats.runs + stats.shared >= completed);
        assert!(group.is_empty());
    }

    /// A waker that records that it was woken.
    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, SeqCst);
        }
    }

    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// A body that runs alone for its key (checked), is pending `polls`
    /// times (waking itself each time), then returns `value`.
    fn body(active: &Arc<AtomicUsize>, polls: usize, value: u32) -> impl Future<Output = u32> {
        let active = Arc::clone(active);
        async move {
            let _running = Running::enter(&active);
            for _ in 0..polls {
                tokio::task::yield_now().await;
            }
            value
        }
    }

    #[test]
    fn random_cancellation_leaves_no_caller_hanging_and_no_entry_behind() {
        const KEYS: usize = 3;
        struct Caller<'g> {
            key: usize,
            fut: Option<Pin<Box<dyn Future<Output = u32> + 'g>>>,
            woken: Arc<Flag>,
            value: Option<u32>,
            own: u32,
            /// Its first poll found the key in flight.
            waited: Option<bool>,
        }
        let mut take_overs = 0;
        for seed in 1..=200_u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let group = Group::<usize, u32>::new();
            let actives: Vec<Arc<AtomicUsize>> = (0..KEYS).map(|_| Arc::default()).collect();
            let mut callers: Vec<Caller<'_>> = Vec::new();
            let mut cancelled = 0;
            let poll_caller = |c: &mut Caller<'_>| {
                let Some(fut) = c.fut.as_mut() else { return };
                if c.waited.is_none() {
                    c.waited = Some(waiting(&group, &c.key).is_some());
                }
                c.woken.0.store(false, SeqCst);
                let waker = Waker::from(Arc::clone(&c.woken));
                if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
                    assert_eq!(v as usize / 1000, c.key, "a value of another key");
                    c.value = Some(v);
                    c.fut = None;
                }
            };
            for _ in 0..300 {
                match rng.below(10) {
                    0..=2 => {
                        let key = rng.below(KEYS);
                        let value = (key * 1000 + callers.len()) as u32;
                        let fut = group.run(key, body(&actives[key], rng.below(4), value));
                        callers.push(Caller {
                            key,
                            fut: Some(Box::pin(fut)),
                            woken: Arc::default(),
                            value: None,
                            own: value,
                            waited: None,
                        });
                    }
                    3..=7 if !callers.is_empty() => {
                        let i = rng.below(callers.len());
                        poll_caller(&mut callers[i]);
                    }
                    8 | 9 if !callers.is_empty() => {
                        let i = rng.below(callers.len());
                        if callers[i].fut.take().is_some() {
                            cancelled += 1;
                        }
                    }
                    _ => {}
                }
            }
            // Drain: poll only callers that were woken (or never polled). If
            // some are unfinished and none is woken, one hangs.
            let mut polled_once = vec![false; callers.len()];
            loop {
                let mut progress = false;
                for (i, c) in callers.iter_mut().enumerate() {
                    if c.fut.is_some() && (c.woken.0.load(SeqCst) || !polled_once[i]) {
                        polled_once[i] = true;
                        poll_caller(c);
                        progress = true;
                    }
                }
                if !progress {
                    break;
                }
            }
            let hanging = callers.iter().filter(|c| c.fut.is_some()).count();
            assert_eq!(hanging, 0, "seed {seed}: callers never woken");
            let served = callers.iter().filter(|c| c.value.is_some()).count();
            assert_eq!(served + cancelled, callers.len(), "seed {seed}");
            assert!(group.is_empty(), "seed {seed}: entries left");
            let stats = group.stats();
            assert!(stats.runs + stats.shared >= served as u64, "seed {seed}");
            take_overs += callers
                .iter()
                .filter(|c| c.waited == Some(true) && c.value == Some(c.own))
                .count();
        }
        // The seeds do exercise the hand-over.
        assert!(take_overs > 50, "only {take_overs} take-overs");
    }
}
