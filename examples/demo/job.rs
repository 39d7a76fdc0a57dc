//! The batch job: for every customer, fetch the user, the user's group
//! settings and the user's address, and make a shipping label. Every
//! customer is a task of its own, all spawned at once: the naive job calls
//! the plain client, the limited job the client under `limit`'s attributes.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::client::{self, Api, ApiError, Counts};
use super::data::Customer;
use super::service::{ServiceStats, Services};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everything at once: no limit, no retry, no coalescing.
    Naive,
    /// `#[limited]`, `#[retry]` and `#[coalesce]` on the client calls.
    Limited,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Naive => "naive",
            Mode::Limited => "limited",
        })
    }
}

/// The job's output for one customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub customer: u64,
    pub name: String,
    pub country: String,
    pub postcode: String,
    pub discount: u64,
}

/// One run, measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub mode: Mode,
    pub customers: usize,
    /// Customers with a label.
    pub done: usize,
    /// Customers left without one: failures not recovered.
    pub failed: usize,
    /// Unrecovered failures by kind (`"503"`, `"500"`, `"no response"`).
    pub failures: BTreeMap<String, usize>,
    /// One unrecovered error, in full.
    pub example_failure: Option<ApiError>,
    /// From spawning the first customer to the last one finished.
    pub wall: Duration,
    /// What the client saw during the run.
    pub client: Counts,
    /// The most requests the client had in flight at once, to each service.
    pub peak_to_users: usize,
    pub peak_to_addresses: usize,
    /// What each service saw during the run.
    pub users: ServiceStats,
    pub addresses: ServiceStats,
}

/// Runs the job in `mode` over `customers`, against services started for
/// this run alone (seeded with `seed`) and stopped after it. `progress` is
/// called once per customer finished, with `true` if it got its label.
pub async fn run(
    mode: Mode,
    customers: &[Customer],
    seed: u64,
    mut progress: impl FnMut(bool),
) -> io::Result<Report> {
    let services = Services::start(seed).await?;
    let api = Arc::new(Api::for_services(&services).map_err(io::Error::other)?);
    let before = Counts::now();
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for &customer in customers {
        let api = api.clone();
        tasks.spawn(async move {
            match mode {
                Mode::Naive => label_naive(&api, customer).await,
                Mode::Limited => label_limited(&api, customer).await,
            }
        });
    }
    let (mut done, mut failed) = (0, 0);
    let mut failures = BTreeMap::new();
    let mut example_failure = None;
    while let Some(joined) = tasks.join_next().await {
        let ok = match joined.map_err(io::Error::other)? {
            Ok(_label) => {
                done += 1;
                true
            }
            Err(e) => {
                failed += 1;
                *failures.entry(e.kind()).or_insert(0) += 1;
                example_failure.get_or_insert(e);
                false
            }
        };
        progress(ok);
    }
    let wall = start.elapsed();
    let client = Counts::now().since(before);
    let (peak_to_users, peak_to_addresses) = (api.peak_to_users(), api.peak_to_addresses());
    drop(api); // closes the pooled connections
    let report = Report {
        mode,
        customers: customers.len(),
        done,
        failed,
        failures,
        example_failure,
        wall,
        client,
        peak_to_users,
        peak_to_addresses,
        users: services.users.stats(),
        addresses: services.addresses.stats(),
    };
    services.stop();
    Ok(report)
}

fn label(
    customer: Customer,
    user: &client::User,
    group: &client::Group,
    address: &client::Address,
) -> Label {
    Label {
        customer: customer.id,
        name: user.name.clone(),
        country: address.country.clone(),
        postcode: address.postcode.clone(),
        discount: group.discount,
    }
}

/// The obvious code: every request at once, any failure is final.
async fn label_naive(api: &Api, customer: Customer) -> Result<Label, ApiError> {
    let (user, group) = tokio::join!(api.get_user(customer.id), api.get_group(customer.group));
    let (user, group) = (user?, group?);
    let address = api.get_address(user.address).await?;
    Ok(label(customer, &user, &group, &address))
}

/// The same code, calling the attributed functions: the limits, retries
/// and sharing happen inside them.
async fn label_limited(api: &Api, customer: Customer) -> Result<Label, ApiError> {
    let (user, group) = tokio::join!(
        client::fetch_user(api, customer.id),
        client::fetch_group(api, customer.group)
    );
    let (user, group) = (user?, group?);
    let address = client::fetch_address(api, user.address).await?;
    Ok(label(customer, &user, &group, &address))
}
