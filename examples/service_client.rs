//! A typed client whose `&self` methods carry the attributes.
//!
//! ```sh
//! cargo run --release --example service_client
//! ```
//!
//! Two instances of one client type (the billing side and the shipping side
//! of an application, each with its own connection pool) call the same user
//! service, started in this process as in `examples/batch.rs`:
//!
//! - their `#[limited(name = "users")]` methods share one limit, so the
//!   service never sees more than `max` requests from the two together;
//! - `#[coalesce(key = id)]` keys group lookups on the group alone, so a
//!   lookup that one instance has in flight also answers the other's.

use limit_demo as demo;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use demo::client::{Api, ApiError, Group, User, USERS_MAX};
use demo::data::Customer;
use demo::service::{Services, USERS_CAPACITY};
use futures::future::join_all;
use limit_runtime::{coalesce, limited, retry};

/// A client of the user service.
pub struct UserService {
    name: &'static str,
    api: Api,
    /// Group requests this instance actually sent.
    group_requests: AtomicU64,
}

impl UserService {
    pub fn new(name: &'static str, services: &Services) -> Result<UserService, ApiError> {
        Ok(UserService {
            name,
            api: Api::for_services(services)?,
            group_requests: AtomicU64::new(0),
        })
    }

    /// One user. The limit is process-wide: every instance, and every other
    /// function limited under the name "users", draws from the same
    /// `USERS_MAX` permits.
    #[retry(attempts = 5, initial = "25ms", when = ApiError::is_transient,
            delay_hint = ApiError::retry_after)]
    #[limited(name = "users", max = USERS_MAX)]
    pub async fn user(&self, id: u64) -> Result<User, ApiError> {
        self.api.get_user(id).await
    }

    /// A group's settings, slow to produce. The default key of a method
    /// includes the receiver's address, so two instances would never share;
    /// `key = id` makes every instance's call for one group wait for the
    /// request already in flight, whoever sent it.
    #[coalesce(key = id)]
    #[retry(attempts = 5, initial = "25ms", when = ApiError::is_transient,
            delay_hint = ApiError::retry_after)]
    #[limited(name = "users", max = USERS_MAX)]
    pub async fn group(&self, id: u64) -> Result<Arc<Group>, ApiError> {
        self.group_requests.fetch_add(1, Ordering::Relaxed);
        self.api.get_group(id).await.map(Arc::new)
    }

    /// What this side of the application needs for one customer.
    async fn customer(&self, c: Customer) -> Result<(User, Arc<Group>), ApiError> {
        let (user, group) = tokio::join!(self.user(c.id), self.group(c.group));
        Ok((user?, group?))
    }

    /// Every customer at once; the limit paces them.
    async fn all(&self, customers: &[Customer]) -> (usize, usize, Duration) {
        let start = Instant::now();
        let results = join_all(customers.iter().map(|&c| self.customer(c))).await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        (results.len() - failed, failed, start.elapsed())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let seed = 3;
    let services = match Services::start(seed).await {
        Ok(services) => services,
        Err(e) => {
            eprintln!("error: cannot start the demo services: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (billing, shipping) = match (
        UserService::new("billing", &services),
        UserService::new("shipping", &services),
    ) {
        (Ok(b), Ok(s)) => (b, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: cannot build an HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let customers = demo::data::customers(400, seed);
    println!(
        "user service on {} (capacity {USERS_CAPACITY}); two instances of UserService,",
        services.users.url()
    );
    println!(
        "each with its own connection pool, look up the same {} customers at the same time.\n",
        customers.len()
    );

    let (b, s) = tokio::join!(billing.all(&customers), shipping.all(&customers));
    for (client, (ok, failed, took)) in [(&billing, b), (&shipping, s)] {
        println!(
            "  {:<9} {ok} customers ({failed} failed) in {:.2} s",
            format!("{}:", client.name),
            took.as_secs_f64()
        );
    }

    let stats = services.users.stats();
    println!();
    if let Some(l) = limit_runtime::limiter("users").map(|l| l.stats()) {
        println!(
            "  one limit for both: limiter {:?} max {}, peak {} running, {} of {} calls queued",
            l.name, l.max, l.peak_active, l.waited, l.acquired
        );
    }
    println!(
        "  the service itself saw at most {} requests at once ({} in all, {} answered 503)",
        stats.peak_in_flight,
        stats.requests,
        stats.shed + stats.brownouts
    );
    let (from_billing, from_shipping) = (
        billing.group_requests.load(Ordering::Relaxed),
        shipping.group_requests.load(Ordering::Relaxed),
    );
    println!(
        "\n  group lookups: {} calls from the two instances, {} requests ({from_billing} sent by \
         billing, {from_shipping} by shipping):",
        2 * customers.len(),
        from_billing + from_shipping,
    );
    println!("  a call for a group in flight waited for that request, whichever instance sent it.");

    // The runtime's own counters, by function (`module::path::function`).
    println!("\n  limit_runtime::retry::stats() and coalesce::stats():");
    for r in limit_runtime::retry::stats() {
        println!(
            "    retry     {:<24} {} calls, {} retries, {} gave up",
            r.name, r.calls, r.retries, r.gave_up
        );
    }
    for c in limit_runtime::coalesce::stats() {
        println!(
            "    coalesce  {:<24} {} ran, {} shared another call's result",
            c.name, c.runs, c.shared
        );
    }
    drop((billing, shipping));
    services.stop();
    ExitCode::SUCCESS
}
