//! Behaviour of `#[limited]` and the limiter runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use limit_runtime::{limited, Limiter};
use limit_suite::Gauge;
use tokio::sync::Notify;

static SHARED: Gauge = Gauge::new();

#[limited(name = "tests-shared", max = 8)]
async fn shared_a() -> usize {
    let _g = SHARED.enter();
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    1
}

#[limited(name = "tests-shared", max = 8)]
async fn shared_b(x: usize) -> usize {
    let _g = SHARED.enter();
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    x
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_functions_sharing_a_name_never_exceed_max_together_and_reach_it() {
    let mut tasks = Vec::new();
    for i in 0..1000 {
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                shared_a().await
            } else {
                shared_b(1).await
            }
        }));
    }
    let mut sum = 0;
    for t in tasks {
        sum += t.await.unwrap();
    }
    assert_eq!(sum, 1000);
    assert_eq!(SHARED.total(), 1000);
    assert_eq!(
        SHARED.peak(),
        8,
        "peak concurrency must reach max and never pass it"
    );
    let l = limit_runtime::limiter("tests-shared").expect("created by the first call");
    assert_eq!(l.active(), 0);
    assert_eq!(l.waiting(), 0);
    assert_eq!(l.available(), 8);
    let stats = l.stats();
    assert_eq!(stats.acquired, 1000);
    assert_eq!(stats.peak_active, 8);
    assert!(
        stats.waited > 0,
        "with 1000 callers and 8 permits, some waited"
    );
}

#[tokio::test(start_paused = true)]
async fn waiters_start_in_fifo_order() {
    let l = Limiter::named("tests-fifo", 1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Notify::new());
    // Hold the only permit so that everybody queues.
    let holder = {
        let (l, gate) = (l.clone(), gate.clone());
        tokio::spawn(async move { l.run(gate.notified()).await })
    };
    tokio::task::yield_now().await;
    assert_eq!(l.active(), 1);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (l, order) = (l.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            l.run(async {
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
            })
            .await
        }));
        // Let task i queue before task i + 1 exists.
        tokio::task::yield_now().await;
    }
    assert_eq!(l.waiting(), 50);
    gate.notify_one();
    holder.await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..50).collect::<Vec<_>>());
    assert_eq!((l.active(), l.waiting(), l.available()), (0, 0, 1));
}

#[limited(max = 2)]
async fn private_limit(gate: Arc<Notify>) {
    gate.notified().await;
}

#[limited(name = "tests_limited::private_limit", max = 1)]
async fn named_like_the_private_one(gate: Arc<Notify>) {
    gate.notified().await;
}

#[tokio::test(start_paused = true)]
async fn private_limiter_is_isolated_from_a_named_one() {
    let gate = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(tokio::spawn(private_limit(gate.clone())));
        tasks.push(tokio::spawn(named_like_the_private_one(gate.clone())));
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    let named = limit_runtime::limiter("tests_limited::private_limit").unwrap();
    assert!(named.is_named());
    assert_eq!((named.active(), named.waiting()), (1, 2));
    let private = limit_runtime::limiters()
        .into_iter()
        .find(|l| !l.is_named() && l.name().ends_with("::private_limit"))
        .expect("the private limiter is listed");
    assert_eq!(private.name(), "limited::private_limit");
    assert_eq!(
        (private.max(), private.active(), private.waiting()),
        (2, 2, 1)
    );
    for _ in 0..6 {
        gate.notify_one();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!((named.active(), private.active()), (0, 0));
}

#[limited(name = "tests-panic", max = 1)]
async fn panics(yes: bool) -> u8 {
    tokio::task::yield_now().await;
    if yes {
        panic!("body failed");
    }
    7
}

#[tokio::test]
async fn a_panicking_body_frees_its_permit() {
    let err = tokio::spawn(panics(true)).await.unwrap_err();
    assert!(err.is_panic());
    let l = limit_runtime::limiter("tests-panic").unwrap();
    assert_eq!((l.active(), l.available()), (0, 1));
    assert_eq!(panics(false).await, 7);
}

#[tokio::test(start_paused = true)]
async fn dropped_waiters_leave_the_queue_and_dropped_bodies_release() {
    let l = Limiter::named("tests-cancel", 2);
    let gate = Arc::new(Notify::new());
    let mut running = Vec::new();
    for _ in 0..2 {
        let (l, gate) = (l.clone(), gate.clone());
        running.push(tokio::spawn(async move { l.run(gate.notified()).await }));
    }
    let mut waiting = Vec::new();
    for _ in 0..5 {
        let l = l.clone();
        waiting.push(tokio::spawn(async move { l.run(async {}).await }));
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!((l.active(), l.waiting()), (2, 5));
    // Cancel three waiters and one running body.
    for t in waiting.drain(..3) {
        t.abort();
    }
    running.pop().unwrap().abort();
    tokio::time::sleep(Duration::from_millis(1)).await;
    // The freed permit went to a waiter, which finished at once.
    for t in waiting {
        t.await.unwrap();
    }
    assert_eq!((l.active(), l.waiting()), (1, 0));
    gate.notify_waiters();
    for t in running {
        t.await.unwrap();
    }
    assert_eq!((l.active(), l.waiting(), l.available()), (0, 0, 2));
}

#[tokio::test(start_paused = true)]
async fn set_max_up_admits_waiters_and_down_never_interrupts() {
    let l = Limiter::named("tests-resize", 2);
    let gate = Arc::new(Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (l, gate, started) = (l.clone(), gate.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            l.run(async {
                started.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
            })
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!((l.active(), l.waiting()), (2, 8));

    l.set_max(6);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        6,
        "raising admits waiters at once"
    );
    assert_eq!((l.active(), l.waiting()), (6, 4));

    l.set_max(3);
    assert_eq!(l.active(), 6, "lowering never interrupts running bodies");
    // Finish three bodies: no new start, since 3 still run and max is 3.
    for _ in 0..3 {
        gate.notify_one();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(started.load(Ordering::SeqCst), 6);
    assert_eq!((l.active(), l.waiting()), (3, 4));
    // One more finishes: one waiter starts.
    gate.notify_one();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(started.load(Ordering::SeqCst), 7);
    assert_eq!((l.active(), l.waiting()), (3, 3));

    // Raise while lowered permits are still owed.
    l.set_max(4);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(started.load(Ordering::SeqCst), 8);
    while started.load(Ordering::SeqCst) < 10 || l.active() > 0 {
        gate.notify_one();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        (l.max(), l.active(), l.waiting(), l.available()),
        (4, 0, 0, 4)
    );
}

#[tokio::test(start_paused = true)]
async fn zero_max_pauses_until_raised() {
    let l = Limiter::named("tests-paused", 0);
    let t = {
        let l = l.clone();
        tokio::spawn(async move { l.run(async { 5 }).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(l.waiting(), 1);
    l.set_max(1);
    assert_eq!(t.await.unwrap(), 5);
}

#[test]
fn named_returns_the_existing_limiter_and_limiter_finds_it() {
    assert!(limit_runtime::limiter("tests-never-declared").is_none());
    let a = Limiter::named("tests-registry", 3);
    let b = Limiter::named("tests-registry", 30);
    assert!(a.same_as(&b));
    assert_eq!(b.max(), 3, "the first declaration stands");
    let found = limit_runtime::limiter("tests-registry").unwrap();
    assert!(found.same_as(&a));
    assert_eq!(found.name(), "tests-registry");
    let names: Vec<_> = limit_runtime::limiters()
        .iter()
        .map(|l| l.name().to_owned())
        .collect();
    assert!(names.contains(&"tests-registry".to_owned()));
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[limited(name = "tests-conflict", max = 2)]
async fn conflict_first() {}

#[limited(name = "tests-conflict", max = 3)]
async fn conflict_second() {}

#[tokio::test]
#[cfg(debug_assertions)]
async fn conflicting_declarations_panic_in_debug_naming_both() {
    conflict_first().await;
    let err = tokio::spawn(conflict_second()).await.unwrap_err();
    let msg = err.into_panic();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("\"tests-conflict\""), "{msg}");
    let file = file!();
    assert!(msg.contains(&format!("max = 2 at {file}:")), "{msg}");
    assert!(msg.contains(&format!("max = 3 at {file}:")), "{msg}");
    // The first declaration is unaffected.
    conflict_first().await;
    // And the second one panics again on its next call.
    assert!(tokio::spawn(conflict_second()).await.is_err());
}

const PARALLELISM: usize = 3;
const fn doubled(n: usize) -> usize {
    n * 2
}

#[limited(name = "tests-const", max = PARALLELISM)]
async fn const_max() -> usize {
    limit_runtime::limiter("tests-const").unwrap().max()
}

#[limited(max = doubled(PARALLELISM))]
async fn const_fn_max() -> usize {
    limit_runtime::limiters()
        .into_iter()
        .find(|l| l.name().ends_with("::const_fn_max"))
        .unwrap()
        .max()
}

#[tokio::test]
async fn max_accepts_const_expressions() {
    assert_eq!(const_max().await, 3);
    assert_eq!(const_fn_max().await, 6);
}

#[tokio::test]
async fn try_acquire_respects_the_queue_and_limit() {
    let l = Limiter::named("tests-try", 1);
    let p = l.try_acquire().expect("free");
    assert!(l.try_acquire().is_none());
    assert_eq!(l.active(), 1);
    drop(p);
    assert_eq!(l.available(), 1);
    let p = l.acquire().await;
    assert!(l.try_acquire().is_none());
    drop(p);
}
