//! The fleet demonstration: one limit across several processes.
//!
//! ```sh
//! cargo run --release --example fleet      # from the workspace root: builds and runs this
//! cargo run --release --example fleet -- --workers 6 --calls 200
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example fleet
//! cargo run --release -p limit-fleet --example fleet_demo   # the same, directly
//! ```
//!
//! The user service of the batch demonstration (capacity 20; slower past
//! it, `503` past twice it) runs in this process. N worker processes each
//! look up users through the same function,
//! `#[limited(name = "fleet-users", max = 20)]` (the service's capacity),
//! twice: first with the limit per process (N × 20 in flight: most calls
//! get a `503`), then with the name shared through Redis (20 in flight
//! across the fleet: none does). The function does not change; a
//! worker of the second run only calls `share` at start-up. The service
//! counts what it sees itself.
//!
//! It starts a `redis-server` of its own on a free loopback port (or uses
//! `REDIS_URL`); without one installed it says how to get one and exits.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use limit_demo::client::{Api, ApiError};
use limit_demo::service::{ServiceStats, Services, USERS_CAPACITY};
use limit_fleet::Redis;
use limit_runtime::limited;
use limit_runtime::redis::{connect, Shared};
use tokio::io::AsyncReadExt;

/// User lookups in flight at once: per process, or across the fleet once
/// the name is shared. The service's capacity: right for one process,
/// N times too many for N of them.
const MAX: usize = 20;

/// The one function both runs call.
#[limited(name = "fleet-users", max = MAX)]
async fn fetch_user(api: &Api, id: u64) -> Result<(), ApiError> {
    api.get_user(id).await.map(drop)
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("FLEET_WORKER").is_some() {
        return worker().await;
    }
    let mut workers = 4usize;
    let mut calls = 150u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--workers", Some(n)) if n >= 1 => workers = n as usize,
            ("--calls", Some(n)) if n >= 1 => calls = n,
            _ => {
                eprintln!("usage: fleet [--workers N] [--calls PER_WORKER]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(redis) = Redis::start_or_explain() else {
        return ExitCode::SUCCESS;
    };
    println!(
        "{workers} worker processes each look up {calls} users at once through\n\
         #[limited(name = \"fleet-users\", max = {MAX})]; the user service (capacity \
         {USERS_CAPACITY}) counts what it sees.\nRedis: {}{}\n",
        redis.url(),
        if redis.is_own() {
            " (a redis-server started for this run)"
        } else {
            ""
        }
    );
    let mut runs = Vec::new();
    for shared in [false, true] {
        match run(workers, calls, shared.then(|| redis.url())).await {
            Ok(run) => runs.push(run),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (local, fleet) = (&runs[0], &runs[1]);
    let row = |label: &str, a: String, b: String| println!("  {label:<44}{a:>18}{b:>18}");
    row("", "limit per process".into(), "shared (Redis)".into());
    row(
        "limit in force",
        format!("{workers} × {MAX} = {}", workers * MAX),
        format!("{MAX}"),
    );
    let counts: [(&str, Count); 4] = [
        ("in flight at once, as the service saw it", |r| {
            r.service.peak_in_flight as u64
        }),
        ("requests the service received", |r| r.service.requests),
        ("  answered 503: overloaded", |r| r.service.shed),
        ("lookups that failed (no retry here)", |r| r.failed),
    ];
    for (label, count) in counts {
        row(label, count(local).to_string(), count(fleet).to_string());
    }
    let secs = |r: &Run| format!("{:.2} s", r.wall.as_secs_f64());
    row("wall time", secs(local), secs(fleet));
    ExitCode::SUCCESS
}

/// One row of the table: a count read from a run.
type Count = fn(&Run) -> u64;

struct Run {
    service: ServiceStats,
    failed: u64,
    wall: Duration,
}

/// Starts fresh services and `workers` processes, and waits for them.
async fn run(workers: usize, calls: u64, redis: Option<&str>) -> Result<Run, String> {
    let services = Services::start(7)
        .await
        .map_err(|e| format!("the services did not start: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let start = Instant::now();
    // Every worker starts its calls at the same moment, once all are up.
    let go = std::time::SystemTime::now() + Duration::from_millis(300);
    let go_ms = go
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut children = Vec::new();
    for w in 0..workers {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.env("FLEET_WORKER", w.to_string())
            .env("FLEET_USERS", services.users.url())
            .env("FLEET_ADDRESSES", services.addresses.url())
            .env("FLEET_CALLS", calls.to_string())
            .env("FLEET_GO_MS", go_ms.to_string())
            .env_remove("FLEET_REDIS")
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(url) = redis {
            cmd.env("FLEET_REDIS", url);
        }
        children.push(
            cmd.spawn()
                .map_err(|e| format!("a worker did not start: {e}"))?,
        );
    }
    let mut failed = 0;
    for mut child in children {
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_string(&mut out).await;
        }
        let status = child.wait().await.map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("a worker failed ({status}): {out}"));
        }
        failed += out
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let wall = start.elapsed();
    let service = services.users.stats();
    services.stop();
    Ok(Run {
        service,
        failed,
        wall,
    })
}

/// One worker process: `FLEET_CALLS` lookups at once; prints
/// `ok failed`.
async fn worker() -> ExitCode {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let api = match Api::new(&var("FLEET_USERS"), &var("FLEET_ADDRESSES")) {
        Ok(api) => Arc::new(api),
        Err(e) => {
            eprintln!("worker: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    let server = match std::env::var("FLEET_REDIS") {
        Ok(url) => match connect(&url).await {
            Ok(server) => {
                // The only difference between the two runs.
                server.share("fleet-users", Shared::new().lease(Duration::from_secs(5)));
                Some(server)
            }
            Err(e) => {
                eprintln!("worker: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => None,
    };
    let calls: u64 = var("FLEET_CALLS").parse().unwrap_or(100);
    let first = var("FLEET_WORKER").parse::<u64>().unwrap_or(0) * 1_000_000;
    let go = std::time::UNIX_EPOCH + Duration::from_millis(var("FLEET_GO_MS").parse().unwrap_or(0));
    if let Ok(wait) = go.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let outcomes = join_all((first..first + calls).map(|id| {
        let api = api.clone();
        async move { fetch_user(&api, id).await }
    }))
    .await;
    if let Some(server) = server {
        server.flush(Duration::from_secs(1)).await;
    }
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    println!("{} {failed}", outcomes.len() - failed);
    ExitCode::SUCCESS
}
