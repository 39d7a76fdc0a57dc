//! The batch job: for every customer, fetch the user, the user's group
//! settings and the user's address, and make a shipping label. The naive
//! and limited jobs make every customer a task of its own, all spawned at
//! once: the naive job calls the plain client, the limited job the client
//! under `limit`'s attributes. The batch job calls the same attributed
//! client through `limit_runtime::batch::job`, as batch work, over the
//! customers interleaved by group. Beside every run an online probe (a user
//! lookup every 50 ms, as a person using the site would make) measures its
//! own latency.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use limit_runtime::batch;
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
    /// The limited client through `batch::job` as batch work, over the
    /// customers interleaved by group: online calls go first.
    Batch,
}

/// Customers in progress at once in the batch job (enough to keep both
/// services at their limits; memory stays that of 256 customers).
pub const BATCH_IN_PROGRESS: usize = 256;

/// Time between two online probes.
pub const PROBE_EVERY: Duration = Duration::from_millis(50);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Naive => "naive",
            Mode::Limited => "limited",
            Mode::Batch => "batch",
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
    /// Latencies of the online probe during the run, sorted.
    pub online: Vec<Duration>,
}

/// The `p` quantile (0 to 1) of sorted latencies.
pub fn quantile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[((last as f64) * p).round() as usize])
}

/// The online probe: a user lookup every 50 ms until `stop` is set, through
/// the same client as the job (plain for the naive job, attributed
/// otherwise), as online work. Returns the latencies, sorted.
async fn probe(
    api: Arc<Api>,
    mode: Mode,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Duration> {
    use std::sync::atomic::Ordering;
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let id = 10_000 + n * 7919 % 1000;
        n += 1;
        let start = Instant::now();
        let _ = match mode {
            Mode::Naive => api.get_user(id).await,
            Mode::Limited | Mode::Batch => client::fetch_user(&api, id).await,
        };
        latencies.push(start.elapsed());
    }
    latencies.sort();
    latencies
}

/// The online probe's latencies with no job running: one second of it.
pub async fn probe_unloaded(seed: u64) -> io::Result<Vec<Duration>> {
    let services = Services::start(seed).await?;
    let api = Arc::new(Api::for_services(&services).map_err(io::Error::other)?);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probing = tokio::spawn(probe(api.clone(), Mode::Limited, stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let latencies = probing.await.map_err(io::Error::other)?;
    drop(api);
    services.stop();
    Ok(latencies)
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
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probing = tokio::spawn(probe(api.clone(), mode, stop.clone()));
    let start = Instant::now();
    let (mut done, mut failed) = (0, 0);
    let mut failures = BTreeMap::new();
    let mut example_failure = None;
    let mut record = |outcome: Result<Label, ApiError>| {
        let ok = match outcome {
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
    };
    if mode == Mode::Batch {
        // Clustered groups spread evenly over the run, at most
        // BATCH_IN_PROGRESS customers in progress, every call batch work.
        let order = batch::interleave_by(customers.iter().copied(), |c| c.group);
        let (api, record) = (api.clone(), std::sync::Mutex::new(&mut record));
        let report = batch::job(BATCH_IN_PROGRESS)
            .run(order, |customer| {
                let api = api.clone();
                let record = &record;
                async move {
                    let outcome = label_limited(&api, customer).await;
                    let ok = outcome.is_ok();
                    (record
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner))(
                        outcome
                    );
                    if ok {
                        Ok(())
                    } else {
                        Err(())
                    }
                }
            })
            .await;
        debug_assert_eq!(
            report.succeeded() as usize + report.failures().len(),
            customers.len()
        );
    } else {
        let mut tasks = JoinSet::new();
        for &customer in customers {
            let api = api.clone();
            tasks.spawn(async move {
                match mode {
                    Mode::Naive => label_naive(&api, customer).await,
                    _ => label_limited(&api, customer).await,
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            record(joined.map_err(io::Error::other)?);
        }
    }
    let wall = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let online = probing.await.map_err(io::Error::other)?;
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
        online,
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

/// When the outage starts, and how long it lasts (`--outage`).
pub const OUTAGE_AT: Duration = Duration::from_millis(200);
pub const OUTAGE_FOR: Duration = Duration::from_secs(2);

/// One outage run, measured.
#[derive(Clone, Debug)]
pub struct OutageReport {
    pub breaker: bool,
    pub customers: usize,
    pub done: usize,
    pub failed: usize,
    pub wall: Duration,
    /// Requests the address service answered while it was down.
    pub sent_while_down: u64,
    /// Requests the address service received in all.
    pub sent_to_addresses: u64,
    /// Calls the open breaker refused (each one paused its customer).
    pub refused: u64,
    /// What the job said when the breaker locked it out (once).
    pub message: Option<String>,
}

/// The limited job while the address service is down for [`OUTAGE_FOR`],
/// starting [`OUTAGE_AT`] into the run. With `breaker`, address lookups go
/// through `#[circuit_breaker]`, and a customer whose lookup is refused by
/// the open breaker waits for the breaker's next trial instead of failing:
/// the job locks itself out while the service is down, and resumes when it
/// is back.
pub async fn run_outage(
    customers: &[Customer],
    seed: u64,
    breaker: bool,
) -> io::Result<OutageReport> {
    let services = Services::start(seed).await?;
    let api = Arc::new(Api::for_services(&services).map_err(io::Error::other)?);
    if let Some(b) = limit_runtime::breaker("addresses") {
        b.reset();
    }
    let start = Instant::now();
    let addresses = services.addresses.clone_handle();
    let outage = tokio::spawn(async move {
        tokio::time::sleep(OUTAGE_AT).await;
        addresses.set_down(true);
        tokio::time::sleep(OUTAGE_FOR).await;
        addresses.set_down(false);
    });
    let message = Arc::new(std::sync::Mutex::new(None::<String>));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for &customer in customers {
        let (api, message, refused) = (api.clone(), message.clone(), refused.clone());
        tasks.spawn(async move {
            let (user, group) = tokio::join!(
                client::fetch_user(&api, customer.id),
                client::fetch_group(&api, customer.group)
            );
            let (user, group) = (user?, group?);
            let address = if breaker {
                loop {
                    match client::fetch_address_guarded(&api, user.address).await {
                        Err(ApiError::Refused(e))
                            if e.kind() == limit_runtime::ErrorKind::CircuitOpen =>
                        {
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            message
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .get_or_insert_with(|| e.to_string());
                            // Locked out: wait for the breaker's next trial.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => break other?,
                    }
                }
            } else {
                client::fetch_address(&api, user.address).await?
            };
            Ok::<_, ApiError>(label(customer, &user, &group, &address))
        });
    }
    let (mut done, mut failed) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(io::Error::other)? {
            Ok(_) => done += 1,
            Err(_) => failed += 1,
        }
    }
    let wall = start.elapsed();
    outage.abort();
    let stats = services.addresses.stats();
    drop(api);
    services.stop();
    let message = message
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(OutageReport {
        breaker,
        customers: customers.len(),
        done,
        failed,
        wall,
        sent_while_down: stats.down,
        sent_to_addresses: stats.requests,
        refused: refused.load(std::sync::atomic::Ordering::Relaxed),
        message,
    })
}
