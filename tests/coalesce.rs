//! Behaviour of `#[coalesce]` and of the full pipeline.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use limit_runtime::{coalesce, limited, retry};
use tokio::sync::Notify;

static FAN_IN_RUNS: AtomicUsize = AtomicUsize::new(0);

#[coalesce]
async fn fan_in(id: u64) -> Arc<String> {
    FAN_IN_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10)).await;
    Arc::new(format!("value {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_identical_calls_run_the_body_once() {
    let tasks: Vec<_> = (0..1000).map(|_| tokio::spawn(fan_in(7))).collect();
    let mut first = None;
    for t in tasks {
        let v = t.await.unwrap();
        assert_eq!(*v, "value 7");
        let first = first.get_or_insert_with(|| v.clone());
        assert!(
            Arc::ptr_eq(first, &v),
            "every caller gets a clone of the one result"
        );
    }
    assert_eq!(FAN_IN_RUNS.load(Ordering::SeqCst), 1);
    // Nothing is kept: the next call runs again.
    fan_in(7).await;
    assert_eq!(FAN_IN_RUNS.load(Ordering::SeqCst), 2);
}

static DISTINCT_NOW: AtomicUsize = AtomicUsize::new(0);
static DISTINCT_PEAK: AtomicUsize = AtomicUsize::new(0);

#[coalesce]
async fn distinct(id: u64) -> u64 {
    let now = DISTINCT_NOW.fetch_add(1, Ordering::SeqCst) + 1;
    DISTINCT_PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    DISTINCT_NOW.fetch_sub(1, Ordering::SeqCst);
    id
}

#[tokio::test(start_paused = true)]
async fn distinct_keys_run_concurrently() {
    let tasks: Vec<_> = (0..50).map(|i| tokio::spawn(distinct(i))).collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), i as u64);
    }
    assert_eq!(DISTINCT_PEAK.load(Ordering::SeqCst), 50);
}

static STR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[coalesce]
async fn by_str(tenant: &str, region: &str) -> String {
    STR_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    format!("{tenant}/{region}")
}

#[tokio::test]
async fn borrowed_str_arguments_key_on_their_owned_form() {
    let a = String::from("acme");
    let (x, y, z) = tokio::join!(by_str(&a, "eu"), by_str("acme", "eu"), by_str("acme", "us"));
    assert_eq!(
        (x.as_str(), y.as_str(), z.as_str()),
        ("acme/eu", "acme/eu", "acme/us")
    );
    assert_eq!(STR_RUNS.load(Ordering::SeqCst), 2);
}

struct Repo {
    runs: AtomicUsize,
}

impl Repo {
    #[coalesce]
    async fn get(&self, id: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        id
    }

    #[coalesce]
    async fn get_arc(self: Arc<Self>, id: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        id
    }

    #[coalesce(key = id)]
    async fn shared_across_instances(&self, id: u32, trace: u64) -> u32 {
        let _ = trace;
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        id * 10
    }
}

#[tokio::test]
async fn receiver_identity_separates_instances_and_key_overrides_it() {
    let a = Repo {
        runs: AtomicUsize::new(0),
    };
    let b = Repo {
        runs: AtomicUsize::new(0),
    };
    let _ = tokio::join!(a.get(1), a.get(1), b.get(1));
    assert_eq!(a.runs.load(Ordering::SeqCst), 1, "same instance shares");
    assert_eq!(
        b.runs.load(Ordering::SeqCst),
        1,
        "another instance does not"
    );

    let arc = Arc::new(Repo {
        runs: AtomicUsize::new(0),
    });
    let _ = tokio::join!(arc.clone().get_arc(1), arc.clone().get_arc(1));
    assert_eq!(
        arc.runs.load(Ordering::SeqCst),
        1,
        "self: Arc<Self> keys on the shared value"
    );

    let (x, y) = tokio::join!(
        a.shared_across_instances(2, 1),
        b.shared_across_instances(2, 99)
    );
    assert_eq!((x, y), (20, 20));
    let total = a.runs.load(Ordering::SeqCst) + b.runs.load(Ordering::SeqCst);
    assert_eq!(total, 3, "the key ignores the instance and the trace id");
}

static GENERIC_RUNS: AtomicUsize = AtomicUsize::new(0);

trait Source {
    const NAME: &'static str;
}
struct Db;
struct Cache;
impl Source for Db {
    const NAME: &'static str = "db";
}
impl Source for Cache {
    const NAME: &'static str = "cache";
}

#[coalesce]
async fn generic<S: Source>(id: u32) -> String {
    GENERIC_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    format!("{}:{id}", S::NAME)
}

#[tokio::test]
async fn each_instantiation_of_a_generic_function_has_its_own_group() {
    let (a, b, c) = tokio::join!(generic::<Db>(1), generic::<Cache>(1), generic::<Db>(1));
    assert_eq!(
        (a.as_str(), b.as_str(), c.as_str()),
        ("db:1", "cache:1", "db:1")
    );
    assert_eq!(GENERIC_RUNS.load(Ordering::SeqCst), 2);
}

// Instantiations the function's own generics do not show: an associated
// function of a generic impl, a trait's default method without receiver,
// const parameters of any type, and `impl Trait` arguments.
struct Maker<T>(std::marker::PhantomData<T>);

impl<T> Maker<T> {
    #[coalesce]
    async fn make(id: u32) -> String {
        tokio::task::yield_now().await;
        format!("{id}:{}", std::any::type_name::<T>())
    }
}

trait Loader {
    const NAME: &'static str;

    #[coalesce]
    async fn load(id: u32) -> String {
        tokio::task::yield_now().await;
        format!("{id}:{}", Self::NAME)
    }
}

impl Loader for Db {
    const NAME: &'static str = "db";
}
impl Loader for Cache {
    const NAME: &'static str = "cache";
}

#[coalesce]
async fn flagged<const ON: bool>(id: u32) -> (u32, bool) {
    tokio::task::yield_now().await;
    (id, ON)
}

#[coalesce(key = id)]
async fn shown(id: u32, what: impl std::fmt::Display) -> String {
    tokio::task::yield_now().await;
    format!("{id}:{what}")
}

#[tokio::test]
async fn instantiations_of_an_impl_a_trait_a_const_or_an_impl_trait_do_not_share() {
    let (a, b, c) = tokio::join!(
        Maker::<u8>::make(1),
        Maker::<u16>::make(1),
        Maker::<u8>::make(1)
    );
    assert_eq!(
        (a.as_str(), b.as_str(), c.as_str()),
        ("1:u8", "1:u16", "1:u8")
    );
    let (a, b) = tokio::join!(Db::load(2), Cache::load(2));
    assert_eq!((a.as_str(), b.as_str()), ("2:db", "2:cache"));
    let (a, b) = tokio::join!(flagged::<true>(3), flagged::<false>(3));
    assert_eq!((a, b), ((3, true), (3, false)));
    let (a, b, c) = tokio::join!(shown(4, "x"), shown(4, 2.5), shown(4, "y"));
    assert_eq!((a.as_str(), b.as_str()), ("4:x", "4:2.5"));
    assert_eq!(c, "4:x", "same instantiation and key: shared");
}

static PAIR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, PartialEq, Eq, Hash)]
struct Span {
    from: u32,
    to: u32,
}

/// Destructured arguments are part of the default key, whole.
#[coalesce]
async fn pair((a, b): (u32, u32), Span { from, to }: Span) -> u32 {
    PAIR_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    a * 1000 + b * 100 + from * 10 + to
}

#[tokio::test]
async fn destructured_arguments_are_part_of_the_default_key() {
    let span = |from, to| Span { from, to };
    let (x, y, z, w) = tokio::join!(
        pair((1, 2), span(3, 4)),
        pair((5, 6), span(3, 4)),
        pair((1, 2), span(7, 8)),
        pair((1, 2), span(3, 4)),
    );
    assert_eq!((x, y, z, w), (1234, 5634, 1278, 1234));
    assert_eq!(PAIR_RUNS.load(Ordering::SeqCst), 3);
}

async fn slow(id: u32, gate: Arc<Notify>, fail: bool, runs: Arc<AtomicUsize>) -> u32 {
    runs.fetch_add(1, Ordering::SeqCst);
    gate.notified().await;
    if fail {
        panic!("leader failed");
    }
    id
}

// The gate and the counter are not part of a sensible key; key on the id.
#[coalesce(key = id)]
async fn slow_keyed(id: u32, gate: Arc<Notify>, fail: bool, runs: Arc<AtomicUsize>) -> u32 {
    slow(id, gate, fail, runs).await
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_hands_over_to_a_waiter() {
    let gate = Arc::new(Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let leader = tokio::spawn(slow_keyed(1, gate.clone(), false, runs.clone()));
    tokio::task::yield_now().await;
    let waiters: Vec<_> = (0..5)
        .map(|_| tokio::spawn(slow_keyed(1, gate.clone(), false, runs.clone())))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the leader runs");
    leader.abort();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one waiter took over");
    gate.notify_waiters();
    for w in waiters {
        assert_eq!(w.await.unwrap(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_leader_reaches_only_its_caller() {
    let gate = Arc::new(Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let leader = tokio::spawn(slow_keyed(2, gate.clone(), true, runs.clone()));
    tokio::task::yield_now().await;
    let waiters: Vec<_> = (0..5)
        .map(|_| tokio::spawn(slow_keyed(2, gate.clone(), false, runs.clone())))
        .collect();
    tokio::task::yield_now().await;
    gate.notify_waiters();
    assert!(leader.await.unwrap_err().is_panic());
    tokio::time::sleep(Duration::from_millis(1)).await;
    gate.notify_waiters();
    for w in waiters {
        assert_eq!(w.await.unwrap(), 2, "waiters get the take-over's result");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the panicking leader and one take-over"
    );
}

static PIPELINE_BODY: AtomicU32 = AtomicU32::new(0);

#[limited(name = "coalesce-pipeline", max = 1)]
#[retry(attempts = 5, initial = "10ms", jitter = "none")]
#[coalesce]
async fn pipeline(id: u32) -> Result<u32, String> {
    let n = PIPELINE_BODY.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(1)).await;
    if n <= 2 {
        Err(format!("transient {n}"))
    } else {
        Ok(id)
    }
}

#[tokio::test(start_paused = true)]
async fn full_pipeline_shares_one_retried_call_whatever_the_written_order() {
    let tasks: Vec<_> = (0..100).map(|_| tokio::spawn(pipeline(9))).collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(9));
    }
    assert_eq!(
        PIPELINE_BODY.load(Ordering::SeqCst),
        3,
        "3 bodies in all, not 300"
    );
    let l = limit_runtime::limiter("coalesce-pipeline").unwrap();
    assert_eq!((l.active(), l.waiting()), (0, 0));
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_futures_are_send() {
    let t = tokio::spawn(assert_send(by_str("send", "check")));
    assert_eq!(t.await.unwrap(), "send/check");
}
