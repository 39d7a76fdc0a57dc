//! The batch job driver and the batch class with real `#[limited]`
//! functions. Paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use limit_runtime::{batch, limited, Limiter};
use tokio::time::sleep;

#[limited(name = "t-job", max = 4)]
async fn lookup(id: u64) -> Result<u64, String> {
    assert!(batch::is_batch(), "the class reaches the limited call");
    sleep(Duration::from_millis(10)).await;
    if id % 50 == 49 {
        return Err(format!("no record {id}"));
    }
    Ok(id)
}

/// A call two levels down from the job's function.
async fn label(id: u64) -> Result<u64, String> {
    let a = nested(id).await?;
    Ok(a + 1)
}

async fn nested(id: u64) -> Result<u64, String> {
    lookup(id).await
}

#[tokio::test(start_paused = true)]
async fn a_job_runs_every_item_as_batch_work_within_the_limit() {
    let report = batch::job(16).run(0..200u64, label).await;
    assert_eq!(report.succeeded(), 196);
    let mut failed: Vec<u64> = report.failures().iter().map(|f| f.0).collect();
    failed.sort_unstable();
    assert_eq!(failed, [49, 99, 149, 199]);
    let l = limit_runtime::limiter("t-job").unwrap();
    let s = l.stats();
    assert_eq!((s.peak_active, s.active, s.waiting), (4, 0, 0));
    assert_eq!(l.batch_active(), 0);
    // 200 items, 4 at a time, 10 ms each.
    assert_eq!(report.elapsed(), Duration::from_millis(500));
}

#[limited(name = "t-job-drop", max = 2)]
async fn slow(_id: u64) -> Result<(), ()> {
    sleep(Duration::from_secs(1)).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn dropping_a_job_mid_run_leaves_every_limiter_quiet() {
    let started = std::sync::Arc::new(AtomicUsize::new(0));
    let s2 = started.clone();
    let job = tokio::spawn(async move {
        batch::job(64)
            .run(0..10_000u64, move |id| {
                s2.fetch_add(1, Ordering::SeqCst);
                slow(id)
            })
            .await
    });
    sleep(Duration::from_millis(2500)).await;
    let l = limit_runtime::limiter("t-job-drop").unwrap();
    assert_eq!((l.active(), l.waiting(), l.batch_active()), (2, 62, 2));
    job.abort();
    assert!(job.await.unwrap_err().is_cancelled());
    assert_eq!((l.active(), l.waiting(), l.batch_active()), (0, 0, 0));
    assert_eq!(
        started.load(Ordering::SeqCst),
        64 + 4,
        "only the window was ever created"
    );
    // The limiter still works, for online work too.
    slow(0).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_spawned_task_starts_online_unless_wrapped() {
    batch::scope(async {
        assert!(batch::is_batch());
        assert!(!tokio::spawn(async { batch::is_batch() }).await.unwrap());
        assert!(tokio::spawn(batch::scope(async { batch::is_batch() }))
            .await
            .unwrap());
        assert!(!batch::online(async { batch::is_batch() }).await);
        assert!(batch::is_batch(), "restored after the inner scope");
    })
    .await;
    assert!(!batch::is_batch());
}

#[tokio::test(start_paused = true)]
async fn online_calls_overtake_a_saturating_job_and_the_reserve_keeps_room() {
    let l = Limiter::named("t-job-online", 16);
    l.set_reserve(2);
    let job = {
        let l = l.clone();
        tokio::spawn(async move {
            batch::job(10_000)
                .run(0..10_000u32, move |_| {
                    let l = l.clone();
                    async move {
                        let _p = l.acquire().await;
                        sleep(Duration::from_millis(10)).await;
                        Ok::<_, ()>(())
                    }
                })
                .await
        })
    };
    sleep(Duration::from_millis(5)).await;
    assert_eq!(l.active(), 14, "batch stops at limit - reserve");
    assert!(l.waiting() > 9_000);
    // Online calls start at once, while thousands of batch calls wait.
    let t0 = tokio::time::Instant::now();
    let online: Vec<_> = (0..2).map(|_| l.acquire()).collect();
    for p in futures::future::join_all(online).await {
        drop(p);
    }
    assert_eq!(t0.elapsed(), Duration::ZERO);
    // A third online call waits for one body (not for the backlog).
    let held: Vec<_> = futures::future::join_all((0..2).map(|_| l.acquire())).await;
    let t1 = tokio::time::Instant::now();
    let _third = l.acquire().await;
    assert!(
        t1.elapsed() <= Duration::from_millis(10),
        "{:?}",
        t1.elapsed()
    );
    drop(held);
    drop(_third);
    let report = job.await.unwrap();
    assert_eq!(report.succeeded(), 10_000);
}

#[limited(name = "t-job-stats", max = 1, wait = "50ms")]
async fn counted(hold: Duration) -> Result<(), limit_runtime::Error> {
    sleep(hold).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn stats_split_waits_and_refusals_by_class() {
    let holder = tokio::spawn(counted(Duration::from_millis(100)));
    tokio::task::yield_now().await;
    // Two batch calls and one online call queue; the batch ones give up.
    let b1 = tokio::spawn(batch::scope(counted(Duration::ZERO)));
    let b2 = tokio::spawn(batch::scope(counted(Duration::ZERO)));
    assert!(b1.await.unwrap().is_err());
    assert!(b2.await.unwrap().is_err());
    holder.await.unwrap().unwrap();
    let waiter = tokio::spawn(counted(Duration::from_millis(10)));
    tokio::task::yield_now().await;
    let batch_waiter = tokio::spawn(batch::scope(counted(Duration::ZERO)));
    waiter.await.unwrap().unwrap();
    batch_waiter.await.unwrap().unwrap();
    let s = limit_runtime::limiter("t-job-stats").unwrap().stats();
    assert_eq!((s.rejected_wait, s.rejected_batch), (2, 2));
    assert_eq!((s.waited, s.waited_batch), (1, 1));
    assert_eq!(s.wait_total_batch, Duration::from_millis(10));
    assert_eq!((s.batch_active, s.reserve), (0, 0));
}

/// The class is the poller's: an acquire future built outside a batch
/// scope and awaited inside one is batch work (and the other way round).
#[tokio::test]
async fn an_acquire_future_takes_the_class_of_the_scope_it_is_awaited_in() {
    let l = limit_runtime::Limiter::named("t-class-at-poll", 4);
    let built_online = l.acquire();
    let permit = limit_runtime::batch::scope(built_online).await;
    assert_eq!(l.batch_active(), 1);
    drop(permit);
    // Built inside a scope, awaited outside it: online.
    #[allow(clippy::async_yields_async)]
    let built_in_batch = limit_runtime::batch::scope(async { l.acquire() }).await;
    let permit = built_in_batch.await;
    assert_eq!(l.batch_active(), 0);
    drop(permit);
}

/// The job's function runs as batch work itself, not only the future it
/// returns: what it does before returning (building an acquire future,
/// reading `is_batch`) belongs to the job.
#[tokio::test]
async fn the_job_function_itself_runs_as_batch_work() {
    let limiter = limit_runtime::Limiter::named("t-job-fn-class", 4);
    limiter.set_reserve(1);
    let l = &limiter;
    let report = limit_runtime::batch::job(8)
        .run(0..20u32, move |_| {
            let batch = limit_runtime::batch::is_batch();
            let acquire = l.acquire();
            async move {
                let _permit = acquire.await;
                tokio::task::yield_now().await;
                if batch && l.batch_active() <= 3 {
                    Ok(())
                } else {
                    Err(l.batch_active())
                }
            }
        })
        .await;
    assert!(report.is_success(), "{:?}", report.failures());
    assert_eq!(report.succeeded(), 20);
}
