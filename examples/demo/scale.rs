//! The adaptive-limit run (`--adaptive`): a client that does not know the
//! address service's capacity fetches addresses while the service is scaled
//! up partway through, three ways:
//!
//! - a **fixed rate**, the compromise number a cautious client picks (slow
//!   on a good day, and no protection on a bad one);
//! - a **fixed limit**, the service's capacity as it was documented when
//!   the client was written;
//! - an **adaptive limit**, with no number at all.
//!
//! The service sheds load (`503`) past twice its capacity; its random
//! failures are off here, so every `503` is an overload answer.

use std::io;
use std::time::Duration;

use futures::StreamExt;
use limit_runtime::limited;
use tokio::time::Instant;

use super::client::{Api, ApiError};
use super::service::Service;

/// The address service's capacity at the start...
pub const START_CAPACITY: usize = 12;
/// ...and once it is scaled up.
pub const SCALED_CAPACITY: usize = 30;
/// When it is scaled up, after the run starts.
pub const SCALE_AT: Duration = Duration::from_millis(1000);
/// Addresses each run fetches.
pub const ITEMS: u64 = 2000;
/// Fetches the job keeps going at once (waiting on the limiter).
const CONCURRENCY: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    FixedRate,
    FixedLimit,
    Adaptive,
    /// A fixed limit equal to the service's capacity, on a service that is
    /// not scaled: the right number, known in advance.
    Known,
    /// An adaptive limit (a fresh one) on that same service.
    AdaptiveSteady,
}

impl Strategy {
    /// The runs against the service that is scaled up.
    pub const SCALED: [Strategy; 3] = [
        Strategy::FixedRate,
        Strategy::FixedLimit,
        Strategy::Adaptive,
    ];
    /// The runs against a service of constant capacity.
    pub const STEADY: [Strategy; 2] = [Strategy::Known, Strategy::AdaptiveSteady];

    pub fn label(self) -> &'static str {
        match self {
            Strategy::FixedRate => "fixed rate",
            Strategy::FixedLimit => "fixed limit",
            Strategy::Adaptive | Strategy::AdaptiveSteady => "adaptive",
            Strategy::Known => "right limit",
        }
    }

    fn scaled(self) -> bool {
        !matches!(self, Strategy::Known | Strategy::AdaptiveSteady)
    }
}

/// What one run saw.
#[derive(Clone, Debug)]
pub struct ScaleReport {
    pub strategy: Strategy,
    pub wall: Duration,
    pub ok: u64,
    /// `503` answers (all overload: the random failures are off).
    pub shed: u64,
    pub other_errors: u64,
    /// The most requests the service handled at once, as it counted them.
    pub peak_in_flight: usize,
    /// The limit in force at the end, as a phrase.
    pub settled: String,
}

// The same request under three limits.

#[limited(name = "scale-rate", rate = "500/s", burst = 10)]
async fn fetch_at_fixed_rate(api: &Api, id: u64) -> Result<(), ApiError> {
    api.get_address(id).await.map(drop)
}

#[limited(name = "scale-fixed", max = START_CAPACITY)]
async fn fetch_under_fixed_limit(api: &Api, id: u64) -> Result<(), ApiError> {
    api.get_address(id).await.map(drop)
}

#[limited(name = "scale-adaptive", adaptive, overload = ApiError::is_overload)]
async fn fetch_adaptive(api: &Api, id: u64) -> Result<(), ApiError> {
    api.get_address(id).await.map(drop)
}

#[limited(name = "steady-known", max = SCALED_CAPACITY)]
async fn fetch_known(api: &Api, id: u64) -> Result<(), ApiError> {
    api.get_address(id).await.map(drop)
}

#[limited(name = "steady-adaptive", adaptive, overload = ApiError::is_overload)]
async fn fetch_adaptive_steady(api: &Api, id: u64) -> Result<(), ApiError> {
    api.get_address(id).await.map(drop)
}

/// Runs the job once with `strategy` against a fresh address service:
/// scaled up from [`START_CAPACITY`] to [`SCALED_CAPACITY`] at [`SCALE_AT`],
/// or at [`SCALED_CAPACITY`] throughout for [`Strategy::STEADY`].
pub async fn run_scale(strategy: Strategy, seed: u64) -> io::Result<ScaleReport> {
    let capacity = if strategy.scaled() {
        START_CAPACITY
    } else {
        SCALED_CAPACITY
    };
    let service = Service::addresses(seed, capacity, false).await?;
    let api = Api::new("http://127.0.0.1:9", service.url()).map_err(io::Error::other)?;
    let start = Instant::now();
    let scaler = {
        let handle = service.clone_handle();
        tokio::spawn(async move {
            tokio::time::sleep(SCALE_AT).await;
            handle.set_capacity(SCALED_CAPACITY);
        })
    };
    if !strategy.scaled() {
        scaler.abort();
    }
    let api = &api;
    let outcomes: Vec<Result<(), ApiError>> = futures::stream::iter(0..ITEMS)
        .map(|id| async move {
            match strategy {
                Strategy::FixedRate => fetch_at_fixed_rate(api, id).await,
                Strategy::FixedLimit => fetch_under_fixed_limit(api, id).await,
                Strategy::Adaptive => fetch_adaptive(api, id).await,
                Strategy::Known => fetch_known(api, id).await,
                Strategy::AdaptiveSteady => fetch_adaptive_steady(api, id).await,
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let wall = start.elapsed();
    scaler.abort();
    let stats = service.stats();
    service.stop();
    let ok = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
    let shed = outcomes
        .iter()
        .filter(|o| matches!(o, Err(e) if e.is_overload()))
        .count() as u64;
    let settled = match strategy {
        Strategy::FixedRate => "500/s (a rate)".to_owned(),
        Strategy::FixedLimit => START_CAPACITY.to_string(),
        Strategy::Known => SCALED_CAPACITY.to_string(),
        Strategy::Adaptive | Strategy::AdaptiveSteady => {
            let name = if strategy == Strategy::Adaptive {
                "scale-adaptive"
            } else {
                "steady-adaptive"
            };
            let l = limit_runtime::limiter(name).expect("used above");
            l.limit().to_string()
        }
    };
    Ok(ScaleReport {
        strategy,
        wall,
        ok,
        shed,
        other_errors: ITEMS - ok - shed,
        peak_in_flight: stats.peak_in_flight,
        settled,
    })
}
