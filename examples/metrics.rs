//! Every limiter, breaker, `#[retry]` and `#[coalesce]` function on a
//! Prometheus page.
//!
//! ```sh
//! cargo run --release -p limit-examples --features metrics --example metrics
//! ```
//!
//! A few hundred simulated calls run through the attributes; then the
//! program reports the runtime's stats through the `metrics` facade into
//! `metrics-exporter-prometheus` and prints what a scrape of `/metrics`
//! would return (a server would serve `handle.render()` instead).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use limit_runtime::{circuit_breaker, coalesce, limited, retry};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

#[derive(Debug)]
enum ApiError {
    Unavailable,
    Refused(limit_runtime::Error),
}

impl From<limit_runtime::Error> for ApiError {
    fn from(e: limit_runtime::Error) -> Self {
        ApiError::Refused(e)
    }
}

static REQUESTS: AtomicU32 = AtomicU32::new(0);

/// A user lookup: at most 8 at once; a call gives up after waiting 100 ms.
#[retry(attempts = 3, initial = "5ms")]
#[limited(name = "users", max = 8, wait = "100ms")]
async fn get_user(id: u64) -> Result<String, ApiError> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    if REQUESTS.fetch_add(1, Ordering::Relaxed) % 7 == 0 {
        return Err(ApiError::Unavailable); // one in seven fails; retried
    }
    Ok(format!("user {id}"))
}

/// Group settings: slow, and the same for everybody in a group.
#[coalesce]
async fn group_settings(group: u64) -> Arc<String> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Arc::new(format!("settings of group {group}"))
}

/// A billing service that is down: the breaker opens.
#[circuit_breaker(name = "billing", min_calls = 10)]
async fn charge(_id: u64) -> Result<(), ApiError> {
    Err(ApiError::Unavailable)
}

#[tokio::main]
async fn main() {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("limit_limiter_wait_seconds".into()),
            &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1],
        )
        .expect("buckets are not empty")
        .install_recorder()
        .expect("no other recorder is installed");

    let calls = (0..200).map(|id| {
        tokio::spawn(async move {
            let user = get_user(id).await;
            let settings = group_settings(id % 5).await;
            let charged = charge(id).await;
            (user, settings.len(), charged.is_ok())
        })
    });
    let mut users_ok = 0;
    let mut refusal = None;
    for call in futures::future::join_all(calls).await {
        match call.expect("the task did not panic").0 {
            Ok(_) => users_ok += 1,
            Err(ApiError::Refused(e)) => refusal = refusal.or(Some(e)),
            Err(ApiError::Unavailable) => {}
        }
    }
    eprintln!("{users_ok}/200 user lookups succeeded");
    if let Some(e) = refusal {
        eprintln!("one of the others: {e}");
    }
    eprintln!("\nthe page a scrape of /metrics returns:\n");

    limit_runtime::metrics::report(); // in a server: before each scrape, or report_every
    print!("{}", handle.render());
}
