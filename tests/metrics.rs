//! What the `metrics` feature reports (cargo feature `metrics`:
//! `cargo test --features metrics --test metrics`), through
//! `metrics-util`'s debugging recorder.
#![cfg(feature = "metrics")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use std::time::Duration;

use limit_runtime::{coalesce, limited, retry, Breaker, BreakerConfig, ErrorKind};
use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// The process's recorder, installed once.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).expect("no other recorder");
        snapshotter
    })
}

/// The debugging recorder's snapshot resets what it read (histograms
/// included), so the tests take turns.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One metric: its name, labels, unit and value.
type Metric = (String, Vec<(String, String)>, Option<Unit>, DebugValue);

/// What the recorder holds after a `report()`.
struct Reported(Vec<Metric>);

impl Reported {
    fn now() -> Self {
        limit_runtime::metrics::report();
        let all = snapshotter().snapshot().into_vec().into_iter();
        Reported(
            all.map(|(key, unit, _, value)| {
                let key = key.key();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                (key.name().to_owned(), labels, unit, value)
            })
            .collect(),
        )
    }

    /// The one metric named `metric` whose labels include all of `labels`.
    fn one(&self, metric: &str, labels: &[(&str, &str)]) -> (Option<Unit>, &DebugValue) {
        let mut found = self.0.iter().filter(|(name, have, ..)| {
            name == metric
                && labels
                    .iter()
                    .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
        });
        let (_, _, unit, value) = found
            .next()
            .unwrap_or_else(|| panic!("no {metric} {labels:?}"));
        assert!(found.next().is_none(), "more than one {metric} {labels:?}");
        (*unit, value)
    }

    fn counter(&self, metric: &str, labels: &[(&str, &str)]) -> u64 {
        match self.one(metric, labels) {
            (Some(Unit::Count), DebugValue::Counter(n)) => *n,
            other => panic!("{metric}: {other:?}"),
        }
    }

    fn gauge(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        match self.one(metric, labels) {
            (Some(Unit::Count), DebugValue::Gauge(g)) => g.into_inner(),
            other => panic!("{metric}: {other:?}"),
        }
    }
}

#[limited(name = "metrics-users", max = 1)]
async fn hold(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[limited(name = "metrics-users", max = 1, queue = 0)]
async fn never_wait() -> Result<(), limit_runtime::Error> {
    Ok(())
}

#[limited(name = "metrics-users", max = 1, wait = "10ms")]
async fn impatient() -> Result<(), limit_runtime::Error> {
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn limiters_report_their_gauges_counters_and_waits() {
    let _turn = TURN.lock().await;
    let _ = Reported::now(); // from here on, this test's values only
    let first = tokio::spawn(hold(100));
    tokio::task::yield_now().await; // holds the only permit
    let second = tokio::spawn(hold(0)); // waits 100 ms
    tokio::task::yield_now().await;
    assert_eq!(never_wait().await.unwrap_err().kind(), ErrorKind::QueueFull);
    assert_eq!(
        impatient().await.unwrap_err().kind(),
        ErrorKind::WaitTimeout
    );

    let r = Reported::now(); // while one runs and one waits
    let name = ("name", "metrics-users");
    assert_eq!(r.gauge("limit_limiter_active", &[name]), 1.0);
    assert_eq!(r.gauge("limit_limiter_waiting", &[name]), 1.0);
    assert_eq!(r.gauge("limit_limiter_limit", &[name]), 1.0);

    first.await.unwrap();
    second.await.unwrap();
    let r = Reported::now();
    assert_eq!(r.gauge("limit_limiter_active", &[name]), 0.0);
    assert_eq!(r.gauge("limit_limiter_waiting", &[name]), 0.0);
    assert_eq!(r.counter("limit_limiter_acquired_total", &[name]), 2);
    let kind = |k| [name, ("kind", k)];
    assert_eq!(
        r.counter("limit_limiter_refused_total", &kind("queue_full")),
        1
    );
    assert_eq!(
        r.counter("limit_limiter_refused_total", &kind("wait_timeout")),
        1
    );
    // One call queued: it waited exactly 100 ms (paused clock).
    match r.one("limit_limiter_wait_seconds", &[name]) {
        (Some(Unit::Seconds), DebugValue::Histogram(samples)) => {
            let samples: Vec<f64> = samples.iter().map(|s| s.into_inner()).collect();
            assert_eq!(samples, [0.1]);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn breakers_report_their_state_and_refusals() {
    let _turn = TURN.lock().await;
    let _ = Reported::now(); // from here on, this test's values only
    let billing = Breaker::named("metrics-billing", BreakerConfig::new());
    billing.admit().unwrap().success();
    billing.admit().unwrap().failure();
    billing.force_open();
    assert!(billing.admit().is_err());
    let r = Reported::now();
    let name = ("name", "metrics-billing");
    assert_eq!(r.gauge("limit_breaker_state", &[name]), 1.0);
    assert_eq!(r.counter("limit_breaker_calls_total", &[name]), 2);
    assert_eq!(r.counter("limit_breaker_failures_total", &[name]), 1);
    assert_eq!(
        r.counter(
            "limit_breaker_refused_total",
            &[name, ("kind", "circuit_open")]
        ),
        1
    );
    billing.reset();
    let r = Reported::now();
    assert_eq!(r.gauge("limit_breaker_state", &[name]), 0.0);
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[retry(attempts = 3, initial = "1ms")]
async fn flaky(fail: bool) -> Result<u32, String> {
    let n = FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    if fail || n < 2 {
        return Err(format!("attempt {n}"));
    }
    Ok(n)
}

#[coalesce]
async fn profile(id: u64) -> Arc<String> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    Arc::new(format!("profile {id}"))
}

#[tokio::test(start_paused = true)]
async fn retry_and_coalesce_functions_report_their_counters() {
    let _turn = TURN.lock().await;
    let _ = Reported::now(); // from here on, this test's values only
    assert_eq!(flaky(false).await.unwrap(), 2); // 3 attempts
    assert!(flaky(true).await.is_err()); // 3 more, then gives up
    let (a, b, c) = tokio::join!(profile(1), profile(1), profile(1));
    assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&b, &c));

    let r = Reported::now();
    let retry = ("name", "metrics::flaky");
    assert_eq!(r.counter("limit_retry_calls_total", &[retry]), 2);
    assert_eq!(r.counter("limit_retry_attempts_total", &[retry]), 6);
    assert_eq!(r.counter("limit_retry_retries_total", &[retry]), 4);
    assert_eq!(r.counter("limit_retry_gave_up_total", &[retry]), 1);
    let group = ("name", "metrics::profile");
    assert_eq!(r.counter("limit_coalesce_runs_total", &[group]), 1);
    assert_eq!(r.counter("limit_coalesce_shared_total", &[group]), 2);
    assert_eq!(r.gauge("limit_coalesce_in_flight", &[group]), 0.0);
}

/// A recorder installed for a while (a test's local one) gets the wait
/// histogram, also when an earlier one was dropped at the same address:
/// nothing of a recorder is kept beyond the call that records.
#[tokio::test(start_paused = true)]
async fn each_local_recorder_in_turn_gets_the_waits() {
    let l = limit_runtime::Limiter::named("t-metrics-local", 1);
    for round in 0..3 {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let held = l.acquire().await;
        let release = async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
        };
        let ((), _waited) = tokio::join!(release, l.acquire());
        let waits: Vec<f64> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, ..)| k.key().name() == "limit_limiter_wait_seconds")
            .filter(|(k, ..)| k.key().labels().any(|l| l.value() == "t-metrics-local"))
            .flat_map(|(.., v)| match v {
                DebugValue::Histogram(h) => h.into_iter().map(|x| x.into_inner()).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(waits, [0.02], "round {round}");
    }
}

// Two methods called `fetch` on two types of one module: their `#[retry]`
// statistics and private limiters share the label `metrics::fetch`.
struct Users;
struct Orders;

impl Users {
    #[retry(attempts = 2, initial = "1ms")]
    #[limited(max = 2)]
    async fn fetch(&self) -> Result<u32, String> {
        Ok(1)
    }
}

impl Orders {
    #[retry(attempts = 2, initial = "1ms")]
    #[limited(max = 3)]
    async fn fetch(&self) -> Result<u32, String> {
        Ok(2)
    }
}

#[tokio::test(start_paused = true)]
async fn figures_of_one_label_are_added_up_not_written_over() {
    let _turn = TURN.lock().await;
    let _ = Reported::now();
    for _ in 0..3 {
        Users.fetch().await.unwrap();
    }
    Orders.fetch().await.unwrap();
    let r = Reported::now();
    let label = ("name", "metrics::fetch");
    assert_eq!(r.counter("limit_retry_calls_total", &[label]), 4);
    assert_eq!(r.counter("limit_limiter_acquired_total", &[label]), 4);
    assert_eq!(r.gauge("limit_limiter_limit", &[label]), 5.0);
}

/// A private limiter that is dropped (one per connection, say) keeps
/// counting in its label's counters: they never go down, and the calls of
/// the next limiter with that label add to them.
#[tokio::test]
async fn a_dropped_private_limiter_still_counts() {
    let _turn = TURN.lock().await;
    let _ = Reported::now();
    let label = ("name", "metrics-per-connection");
    let first = limit_runtime::Limiter::private("metrics-per-connection", 2);
    for _ in 0..3 {
        first.run(async {}).await;
    }
    assert_eq!(
        Reported::now().counter("limit_limiter_acquired_total", &[label]),
        3
    );
    drop(first);
    assert!(limit_runtime::limiter("metrics-per-connection").is_none());
    let second = limit_runtime::Limiter::private("metrics-per-connection", 2);
    second.run(async {}).await;
    assert_eq!(
        Reported::now().counter("limit_limiter_acquired_total", &[label]),
        4
    );
}
