//! Every limiter, breaker, `#[retry]` and `#[coalesce]` function through
//! the [`metrics`](https://docs.rs/metrics) facade (cargo feature
//! `metrics`).
//!
//! The counters and gauges below are the stats the runtime keeps anyway
//! ([`Limiter::stats`](crate::Limiter::stats),
//! [`Breaker::stats`](crate::Breaker::stats), [`retry::stats`](crate::retry::stats),
//! [`coalesce::stats`](crate::coalesce::stats)): [`report`] hands a
//! snapshot of all of them to the installed recorder, and [`report_every`]
//! does so periodically. A call therefore pays nothing for them, with or
//! without a recorder. Only the wait-time histogram is recorded as it
//! happens, by each call that had to queue (a path that already took the
//! limiter's lock and read the clock), through a handle each limiter
//! registers on its first wait. Install the recorder before the first
//! call that waits: a limiter that first waited under another recorder
//! registers its histogram again on every wait. Without the feature, none
//! of this is compiled.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use limit_runtime::limited;
//!
//! #[limited(name = "doc-metrics-users", max = 20)]
//! async fn get_user(id: u64) -> u64 {
//!     id
//! }
//!
//! // At start-up: install a recorder (here: the one of `metrics-util`;
//! // in production, e.g. `metrics-exporter-prometheus`) ...
//! let recorder = metrics_util::debugging::DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::set_global_recorder(recorder).unwrap();
//! // ... and report every few seconds.
//! tokio::spawn(limit_runtime::metrics::report_every(std::time::Duration::from_secs(5)));
//!
//! get_user(7).await;
//! limit_runtime::metrics::report(); // or right before each scrape
//! let acquired = snapshotter.snapshot().into_vec().into_iter().find(|(key, ..)| {
//!     let key = key.key();
//!     key.name() == "limit_limiter_acquired_total"
//!         && key.labels().any(|l| l.value() == "doc-metrics-users")
//! });
//! assert!(matches!(acquired, Some((_, _, _, metrics_util::debugging::DebugValue::Counter(1)))));
//! # }
//! ```
//!
//! # Names
//!
//! Every metric has the label `name`: the limiter's or breaker's name, or
//! for `#[retry]` and `#[coalesce]` the function's label
//! (`module::path::function`). Counters count since the thing was created
//! (they are reported with `absolute`), and end in `_total`; units follow
//! the facade's [`Unit`]. Limiters (or functions) that share a label add
//! up into one series, and a private limiter that was dropped still
//! counts in its label's counters, so that they never go down.
//!
//! | metric | kind | unit | labels | what |
//! |---|---|---|---|---|
//! | `limit_limiter_active` | gauge | count | `name` | bodies running under the limiter |
//! | `limit_limiter_waiting` | gauge | count | `name` | callers queued for a permit |
//! | `limit_limiter_limit` | gauge | count | `name` | the limit in force ([`Limiter::limit`](crate::Limiter::limit)); absent for a limiter with no concurrency cap |
//! | `limit_limiter_acquired_total` | counter | count | `name` | calls that started |
//! | `limit_limiter_refused_total` | counter | count | `name`, `kind` | calls refused: `kind="queue_full"` (`queue`) or `kind="wait_timeout"` (`wait`) |
//! | `limit_limiter_wait_seconds` | histogram | seconds | `name` | for each call that queued before it started, how long it waited |
//! | `limit_breaker_state` | gauge | count | `name` | 0 closed, 1 open, 2 half-open |
//! | `limit_breaker_calls_total` | counter | count | `name` | calls let through (trials included) |
//! | `limit_breaker_failures_total` | counter | count | `name` | calls that counted as failures |
//! | `limit_breaker_refused_total` | counter | count | `name` | calls refused while open (`kind="circuit_open"`) |
//! | `limit_retry_calls_total` | counter | count | `name` | calls of the function |
//! | `limit_retry_attempts_total` | counter | count | `name` | attempts, first ones included |
//! | `limit_retry_retries_total` | counter | count | `name` | attempts after a failure |
//! | `limit_retry_gave_up_total` | counter | count | `name` | calls that failed after their last attempt (or `max_elapsed`) |
//! | `limit_coalesce_runs_total` | counter | count | `name` | bodies run |
//! | `limit_coalesce_shared_total` | counter | count | `name` | calls that received another call's result |
//! | `limit_coalesce_in_flight` | gauge | count | `name` | keys running now |

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, Key, Label, Level,
    Metadata, Unit,
};

use crate::BreakerState;

/// Hands the current stats of every limiter, breaker, `#[retry]` and
/// `#[coalesce]` function to the installed recorder (see the table of
/// names above), with their descriptions and units.
///
/// Call it before each scrape, or let [`report_every`] call it. Without a
/// recorder it does nothing but read the stats. Functions and private
/// limiters that share a label (methods of two types in one module are
/// labelled `module::method` alike) report the sum of their figures.
pub fn report() {
    describe();
    // Several private limiters (or `#[retry]`/`#[coalesce]` functions) can
    // share a label (methods of two types in one module are labelled
    // alike): their figures are added up into the label's series, not
    // written over each other.
    let mut limiters: BTreeMap<String, [u64; 6]> = BTreeMap::new();
    // Private limiters that were dropped keep counting in their label's
    // counters, which never go down.
    for (name, [acquired, full, wait]) in lock(&RETIRED).iter() {
        add_up(
            limiters.entry(String::from(&**name)).or_default(),
            [0, 0, 0, *acquired, *full, *wait],
        );
    }
    for l in crate::limiters() {
        let s = l.stats();
        let limit = if s.limit == usize::MAX {
            u64::MAX
        } else {
            s.limit as u64
        };
        let figures = [
            s.active as u64,
            s.waiting as u64,
            limit,
            s.acquired,
            s.rejected_full,
            s.rejected_wait,
        ];
        add_up(limiters.entry(s.name).or_default(), figures);
    }
    for (name, [active, waiting, limit, acquired, full, wait]) in limiters {
        gauge!("limit_limiter_active", "name" => name.clone()).set(active as f64);
        gauge!("limit_limiter_waiting", "name" => name.clone()).set(waiting as f64);
        if limit != u64::MAX {
            gauge!("limit_limiter_limit", "name" => name.clone()).set(limit as f64);
        }
        counter!("limit_limiter_acquired_total", "name" => name.clone()).absolute(acquired);
        counter!("limit_limiter_refused_total", "name" => name.clone(), "kind" => "queue_full")
            .absolute(full);
        counter!("limit_limiter_refused_total", "name" => name, "kind" => "wait_timeout")
            .absolute(wait);
    }
    for b in crate::breakers() {
        let s = b.stats();
        let name = s.name;
        let state = match s.state {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        };
        gauge!("limit_breaker_state", "name" => name.clone()).set(state);
        counter!("limit_breaker_calls_total", "name" => name.clone()).absolute(s.calls);
        counter!("limit_breaker_failures_total", "name" => name.clone()).absolute(s.failures);
        counter!("limit_breaker_refused_total", "name" => name, "kind" => "circuit_open")
            .absolute(s.refused);
    }
    let mut retries: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    for s in crate::retry::stats() {
        let figures = [s.calls, s.attempts, s.retries, s.gave_up];
        add_up(retries.entry(s.name).or_default(), figures);
    }
    for (name, [calls, attempts, retried, gave_up]) in retries {
        counter!("limit_retry_calls_total", "name" => name.clone()).absolute(calls);
        counter!("limit_retry_attempts_total", "name" => name.clone()).absolute(attempts);
        counter!("limit_retry_retries_total", "name" => name.clone()).absolute(retried);
        counter!("limit_retry_gave_up_total", "name" => name).absolute(gave_up);
    }
    let mut groups: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for s in crate::coalesce::stats() {
        let figures = [s.runs, s.shared, s.in_flight as u64];
        add_up(groups.entry(s.name).or_default(), figures);
    }
    for (name, [runs, shared, in_flight]) in groups {
        counter!("limit_coalesce_runs_total", "name" => name.clone()).absolute(runs);
        counter!("limit_coalesce_shared_total", "name" => name.clone()).absolute(shared);
        gauge!("limit_coalesce_in_flight", "name" => name).set(in_flight as f64);
    }
}

/// Adds `figures` into `sum`, each saturating (`u64::MAX`, "no limit",
/// stays so).
/// The counters (acquired, refused for a full queue, refused for a wait)
/// of private limiters that were dropped, by label.
static RETIRED: Mutex<BTreeMap<Box<str>, [u64; 3]>> = Mutex::new(BTreeMap::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps the counters of a private limiter being dropped, for [`report`].
pub(crate) fn retire(name: &str, counters: [u64; 3]) {
    if counters == [0; 3] {
        return;
    }
    let mut retired = lock(&RETIRED);
    match retired.get_mut(name) {
        Some(sum) => add_up(sum, counters),
        None => {
            retired.insert(name.into(), counters);
        }
    }
}

fn add_up<const N: usize>(sum: &mut [u64; N], figures: [u64; N]) {
    for (s, f) in sum.iter_mut().zip(figures) {
        *s = s.saturating_add(f);
    }
}

/// Calls [`report`] every `period`, forever: spawn it once at start-up.
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// tokio::spawn(limit_runtime::metrics::report_every(std::time::Duration::from_secs(5)));
/// # }
/// ```
pub async fn report_every(period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        report();
    }
}

/// A limiter's wait-time histogram key, built on the first wait, so that
/// later waits skip building it (the name's label is an allocation).
///
/// The key is kept, not the recorder's handle: a handle belongs to the
/// recorder it came from, and a recorder cannot be told apart from an
/// earlier one dropped at the same address (tests that install a local
/// recorder each), so each wait registers the key with the recorder in
/// place now, which for a real recorder is a lookup of a pre-hashed key.
#[derive(Default)]
pub(crate) struct WaitHistogram {
    key: OnceLock<Key>,
}

/// Where the wait histogram is registered from (what `histogram!` would
/// pass).
static WAIT_METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Records how long a call that queued waited before it started.
#[cold]
pub(crate) fn waited(name: &str, cache: &WaitHistogram, waited: Duration) {
    let key = cache.key.get_or_init(|| {
        Key::from_parts(
            "limit_limiter_wait_seconds",
            vec![Label::new("name", name.to_owned())],
        )
    });
    metrics::with_recorder(|r| r.register_histogram(key, &WAIT_METADATA))
        .record(waited.as_secs_f64());
}

/// Counters, with their descriptions.
const COUNTERS: [(&str, &str); 11] = [
    (
        "limit_limiter_acquired_total",
        "Calls that started under the limiter.",
    ),
    (
        "limit_limiter_refused_total",
        "Calls the limiter refused, by kind (queue_full, wait_timeout).",
    ),
    (
        "limit_breaker_calls_total",
        "Calls the circuit breaker let through.",
    ),
    (
        "limit_breaker_failures_total",
        "Calls that counted as failures for the circuit breaker.",
    ),
    (
        "limit_breaker_refused_total",
        "Calls the circuit breaker refused while open.",
    ),
    ("limit_retry_calls_total", "Calls of the #[retry] function."),
    (
        "limit_retry_attempts_total",
        "Attempts of the #[retry] function, first ones included.",
    ),
    (
        "limit_retry_retries_total",
        "Attempts of the #[retry] function after a failure.",
    ),
    (
        "limit_retry_gave_up_total",
        "Calls of the #[retry] function that failed after their last attempt.",
    ),
    (
        "limit_coalesce_runs_total",
        "Bodies the #[coalesce] function ran.",
    ),
    (
        "limit_coalesce_shared_total",
        "Calls of the #[coalesce] function that received another call's result.",
    ),
];

/// Gauges, with their descriptions.
const GAUGES: [(&str, &str); 5] = [
    ("limit_limiter_active", "Bodies running under the limiter."),
    (
        "limit_limiter_waiting",
        "Callers queued for a permit of the limiter.",
    ),
    ("limit_limiter_limit", "The limit in force."),
    (
        "limit_breaker_state",
        "The circuit breaker's state: 0 closed, 1 open, 2 half-open.",
    ),
    (
        "limit_coalesce_in_flight",
        "Keys of the #[coalesce] function running now.",
    ),
];

/// Descriptions and units, for recorders that export them.
fn describe() {
    for (name, what) in COUNTERS {
        describe_counter!(name, Unit::Count, what);
    }
    for (name, what) in GAUGES {
        describe_gauge!(name, Unit::Count, what);
    }
    describe_histogram!(
        "limit_limiter_wait_seconds",
        Unit::Seconds,
        "How long each call that queued waited before it started."
    );
}
