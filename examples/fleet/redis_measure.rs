//! Measures the Redis backend of `limit_runtime::redis` against a local
//! `redis-server` (or `REDIS_URL`):
//!
//! 1. round trips per uncontended acquire + release, from the server's own
//!    statistics (`INFO commandstats`);
//! 2. the latency of an uncontended acquire beside the latency of `PING`,
//!    from the same process over the same connection;
//! 3. the throughput of 4 processes × 64 tasks on a shared `max = 32`
//!    beside one process of 256 tasks on a local limiter of 32 (the same
//!    bodies: a sleep of `--body-ms`, 5 ms by default).
//!
//! ```sh
//! cargo run --release --example redis_measure
//! cargo run --release --example redis_measure -- --body-ms 20
//! ```

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use limit_fleet::Redis;
use limit_runtime::redis::{connect, Shared};
use limit_runtime::Limiter;
use tokio::io::AsyncReadExt;

const OPS: usize = 5000;
const PROCESSES: usize = 4;
const TASKS: usize = 64;
const SHARED_MAX: usize = 32;
const CALLS_PER_TASK: usize = 40;

#[tokio::main]
async fn main() -> ExitCode {
    if let Ok(role) = std::env::var("MEASURE_ROLE") {
        return worker(&role).await;
    }
    let mut body_ms = 5u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--body-ms", Some(ms)) => body_ms = ms,
            _ => {
                eprintln!("usage: redis_measure [--body-ms MS]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(redis) = Redis::start_or_explain() else {
        return ExitCode::SUCCESS;
    };
    println!("Redis: {}  ({})", redis.url(), version(&redis));
    let server = match connect(redis.url()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    server.share(
        "measure-trips",
        Shared::new().lease(Duration::from_secs(60)),
    );
    let l = Limiter::named("measure-trips", 1000);
    for _ in 0..500 {
        l.run(async {}).await;
    }
    server.flush(Duration::from_secs(2)).await;

    // 1. Round trips.
    let _ = redis.command(&["CONFIG", "RESETSTAT"]);
    for _ in 0..OPS {
        l.run(async {}).await;
    }
    server.flush(Duration::from_secs(2)).await;
    let evalsha = redis.calls("evalsha");
    let others: u64 = ["eval", "script|load", "ping", "get", "set"]
        .iter()
        .map(|c| redis.calls(c))
        .sum();
    println!(
        "\nround trips per uncontended acquire + release: {:.3} \
         ({evalsha} EVALSHA for {OPS}; other client commands: {others})",
        evalsha as f64 / OPS as f64
    );

    // 2. Latency: an acquire and a PING, alternately.
    let mut acquire = Vec::with_capacity(OPS);
    let mut ping = Vec::with_capacity(OPS);
    for _ in 0..OPS {
        let t = Instant::now();
        let permit = l.acquire().await;
        acquire.push(t.elapsed());
        drop(permit);
        server.flush(Duration::from_secs(1)).await;
        match server.ping().await {
            Ok(d) => ping.push(d),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    acquire.sort_unstable();
    ping.sort_unstable();
    let q = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p) as usize];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "uncontended acquire: p50 {:.0} µs, p99 {:.0} µs; PING: p50 {:.0} µs, p99 {:.0} µs; \
         acquire / PING at p50: {:.2}x",
        us(q(&acquire, 0.5)),
        us(q(&acquire, 0.99)),
        us(q(&ping, 0.5)),
        us(q(&ping, 0.99)),
        us(q(&acquire, 0.5)) / us(q(&ping, 0.5))
    );

    // 3. Throughput.
    let shared = match processes("shared", PROCESSES, body_ms, redis.url()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = match processes("local", 1, body_ms, redis.url()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ideal = SHARED_MAX as f64 * 1000.0 / body_ms as f64;
    println!(
        "\n{PROCESSES} processes × {TASKS} tasks, shared max {SHARED_MAX}: {shared:.0} calls/s\n\
         1 process × {} tasks, local max {SHARED_MAX}:   {local:.0} calls/s\n\
         (bodies of {body_ms} ms; {SHARED_MAX} at once at most {ideal:.0} calls/s)\n\
         throughput, shared / local: {:.3}",
        PROCESSES * TASKS,
        shared / local
    );
    ExitCode::SUCCESS
}

fn version(redis: &Redis) -> String {
    let info = redis.command(&["INFO", "server"]).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map_or_else(|| "version unknown".into(), |v| format!("redis {v}"))
}

fn unix_micros(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros())
}

/// Runs `n` worker processes in `role`, all starting at one moment, and
/// returns the calls per second they completed together.
async fn processes(role: &str, n: usize, body_ms: u64, url: &str) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let go = SystemTime::now() + Duration::from_millis(500);
    let mut children = Vec::new();
    for _ in 0..n {
        let tasks = if role == "local" {
            PROCESSES * TASKS
        } else {
            TASKS
        };
        children.push(
            tokio::process::Command::new(&exe)
                .env("MEASURE_ROLE", role)
                .env("MEASURE_URL", url)
                .env("MEASURE_TASKS", tasks.to_string())
                .env("MEASURE_BODY_MS", body_ms.to_string())
                .env("MEASURE_GO", unix_micros(go).to_string())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| e.to_string())?,
        );
    }
    let (mut calls, mut end) = (0u64, 0u128);
    for mut child in children {
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out).await;
        }
        let status = child.wait().await.map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("a worker failed: {status}"));
        }
        let mut words = out.split_whitespace();
        calls += words
            .next()
            .and_then(|w| w.parse::<u64>().ok())
            .unwrap_or(0);
        end = end.max(words.next().and_then(|w| w.parse().ok()).unwrap_or(0));
    }
    let elapsed = (end.saturating_sub(unix_micros(go))) as f64 / 1e6;
    Ok(calls as f64 / elapsed)
}

/// One measuring process: `MEASURE_TASKS` tasks, each making
/// `CALLS_PER_TASK` calls; prints the calls and when the last one ended.
async fn worker(role: &str) -> ExitCode {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let tasks: usize = var("MEASURE_TASKS").parse().unwrap_or(TASKS);
    let body = Duration::from_millis(var("MEASURE_BODY_MS").parse().unwrap_or(5));
    let go = UNIX_EPOCH + Duration::from_micros(var("MEASURE_GO").parse().unwrap_or(0));
    let name = format!("measure-{role}");
    let server = if role == "shared" {
        match connect(&var("MEASURE_URL")).await {
            Ok(s) => {
                s.share(&name, Shared::new());
                Some(s)
            }
            Err(e) => {
                eprintln!("worker: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let l = Limiter::named(&name, SHARED_MAX);
    if let Ok(wait) = go.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    join_all((0..tasks).map(|_| {
        let l = l.clone();
        tokio::spawn(async move {
            for _ in 0..CALLS_PER_TASK {
                // The sleep is created once the permit is held: a `Sleep`
                // counts from its creation.
                l.run(async { tokio::time::sleep(body).await }).await;
            }
        })
    }))
    .await;
    let end = unix_micros(SystemTime::now());
    if let Some(s) = server {
        s.flush(Duration::from_secs(1)).await;
    }
    println!("{} {end}", tasks * CALLS_PER_TASK);
    ExitCode::SUCCESS
}
