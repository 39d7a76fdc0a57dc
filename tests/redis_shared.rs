//! Limits shared through Redis, against a real `redis-server` that each
//! test starts on a free loopback port and stops, with several OS
//! processes (this test binary run again in a worker role).
//!
//! `cargo test --features redis --test redis_shared` (needs `redis-server`
//! on the `PATH`: `apt-get install redis-server`).
//!
//! What the limiter allows is measured outside it: each body counts itself
//! in and out on a second server (the *meter*) with one atomic script that
//! also keeps the peak, so a limiter server that restarts does not take the
//! measurement with it.
#![cfg(feature = "redis")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use limit_runtime::redis::{connect, Shared};
use limit_runtime::{limited, AcquireOptions, BackendMode, ErrorKind, Limiter};
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

// ---------------------------------------------------------------- servers

/// A `redis-server` of the test's own, on a free loopback port, with no
/// persistence; stopped when dropped.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: install it (Debian: apt-get install redis-server)");
        self.child = Some(child);
        let start = std::time::Instant::now();
        while !self.answers() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills the server (SIGKILL): its state is gone.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn conn(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Counts a body in on the meter and keeps the peak.
async fn enter(meter: &mut MultiplexedConnection) {
    let _: i64 = redis::Script::new(
        "local n = redis.call('INCR', KEYS[1])
         if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
         return n",
    )
    .key("inflight")
    .key("peak")
    .invoke_async(meter)
    .await
    .unwrap();
}

async fn leave(meter: &mut MultiplexedConnection) {
    let _: i64 = redis::cmd("DECR")
        .arg("inflight")
        .query_async(meter)
        .await
        .unwrap();
}

async fn get_int(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    let v: Option<i64> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    v.unwrap_or(0)
}

async fn holders(conn: &mut MultiplexedConnection, name: &str) -> i64 {
    redis::cmd("ZCARD")
        .arg(format!("limit:{{{name}}}:holders"))
        .query_async(conn)
        .await
        .unwrap()
}

/// `calls` of one command in `INFO commandstats`.
async fn command_calls(conn: &mut MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

// ---------------------------------------------------------------- workers

/// Runs this test binary again as a worker process in `role`.
fn worker(role: &str, limits: &RedisServer, meter: &RedisServer, extra: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "worker_process",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("LIMIT_TEST_ROLE", role)
    .env("LIMIT_TEST_URL", limits.url())
    .env("LIMIT_TEST_METER", meter.url())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Waits for a worker to exit, at most `within`; it must succeed.
fn finish(mut child: Child, within: Duration) {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let _ = child.stdout.take().unwrap().read_to_string(&mut out);
            assert!(status.success(), "worker failed: {status}\n{out}");
            return;
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("a worker hung: still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[limited(name = "fleet-peak", max = 10)]
async fn peak_call(mut meter: MultiplexedConnection) {
    enter(&mut meter).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    leave(&mut meter).await;
}

#[limited(name = "fleet-restart", max = 10)]
async fn restart_call(mut meter: MultiplexedConnection) {
    enter(&mut meter).await;
    tokio::time::sleep(Duration::from_millis(40)).await;
    leave(&mut meter).await;
}

#[limited(name = "fleet-fair", max = 1)]
async fn greedy_call() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[limited(name = "fleet-hog", max = 10)]
async fn hog_call() {
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[limited(name = "fleet-rate", rate = "20/s")]
async fn rate_call(mut meter: MultiplexedConnection) {
    let _: () = redis::Script::new(
        "local t = redis.call('TIME')
         redis.call('RPUSH', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])))",
    )
    .key("starts")
    .invoke_async(&mut meter)
    .await
    .unwrap();
}

/// The worker processes' entry point: does nothing unless started by
/// [`worker`].
#[test]
fn worker_process() {
    let Ok(role) = std::env::var("LIMIT_TEST_ROLE") else {
        return;
    };
    let url = std::env::var("LIMIT_TEST_URL").unwrap();
    let meter_url = std::env::var("LIMIT_TEST_METER").unwrap();
    let tasks: usize = std::env::var("LIMIT_TEST_TASKS").map_or(100, |t| t.parse().unwrap());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let server = connect(&url).await.unwrap();
            let meter = conn(&meter_url).await;
            let mut calls = Vec::new();
            match role.as_str() {
                "peak" => {
                    server.share("fleet-peak", Shared::new().lease(Duration::from_secs(2)));
                    for _ in 0..tasks {
                        calls.push(tokio::spawn(peak_call(meter.clone())));
                    }
                }
                "restart" => {
                    server.share(
                        "fleet-restart",
                        Shared::new()
                            .lease(Duration::from_secs(2))
                            .timeout(Duration::from_millis(300)),
                    );
                    for _ in 0..tasks {
                        calls.push(tokio::spawn(restart_call(meter.clone())));
                    }
                }
                "greedy" => {
                    server.share("fleet-fair", Shared::new().lease(Duration::from_secs(2)));
                    let until = Instant::now() + Duration::from_secs(4);
                    for _ in 0..tasks {
                        calls.push(tokio::spawn(async move {
                            while Instant::now() < until {
                                greedy_call().await;
                            }
                        }));
                    }
                }
                "hog" => {
                    server.share("fleet-hog", Shared::new().lease(Duration::from_secs(1)));
                    for _ in 0..10 {
                        calls.push(tokio::spawn(hog_call()));
                    }
                }
                "rate" => {
                    server.share("fleet-rate", Shared::new());
                    for _ in 0..tasks {
                        calls.push(tokio::spawn(rate_call(meter.clone())));
                    }
                }
                other => panic!("unknown role {other}"),
            }
            for c in calls {
                c.await.unwrap();
            }
            server.flush(Duration::from_secs(2)).await;
            println!("worker done");
        });
}

// ---------------------------------------------------------------- tests

/// 4 processes × 100 tasks on one name with `max = 10`: the peak in flight,
/// counted outside the limiter, is exactly 10.
#[test]
fn four_processes_never_exceed_the_shared_max() {
    let limits = RedisServer::start();
    let meter = RedisServer::start();
    let workers: Vec<Child> = (0..4)
        .map(|_| worker("peak", &limits, &meter, &[("LIMIT_TEST_TASKS", "100")]))
        .collect();
    for w in workers {
        finish(w, Duration::from_secs(60));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut m = conn(&meter.url()).await;
        assert_eq!(get_int(&mut m, "inflight").await, 0);
        assert_eq!(
            get_int(&mut m, "peak").await,
            10,
            "the peak in flight over 4 processes"
        );
        let mut l = conn(&limits.url()).await;
        assert_eq!(
            holders(&mut l, "fleet-peak").await,
            0,
            "every lease was given back"
        );
    });
}

/// A process holding every permit is killed with SIGKILL: its permits come
/// back within the lease (1 s). Before that, renewals keep them held for
/// longer than two leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permits_of_a_killed_process_come_back_within_the_lease() {
    let limits = RedisServer::start();
    let meter = RedisServer::start();
    let mut hog = worker("hog", &limits, &meter, &[]);
    let mut l = conn(&limits.url()).await;
    let start = Instant::now();
    while holders(&mut l, "fleet-hog").await < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the hog never held 10"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server = connect(&limits.url()).await.unwrap();
    server.share("fleet-hog", Shared::new().lease(Duration::from_secs(1)));
    let here = Limiter::named("fleet-hog", 10);
    // Renewed: still held well past the lease.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(holders(&mut l, "fleet-hog").await, 10);
    let refused = here.acquire_with(AcquireOptions::new().queue(0)).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::QueueFull);
    let t = Instant::now();
    let patient = AcquireOptions::new().wait(Duration::from_millis(300));
    let refused = here.acquire_with(patient).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::WaitTimeout);
    assert!(t.elapsed() >= Duration::from_millis(300) && t.elapsed() < Duration::from_secs(2));
    assert!(
        refused.to_string().contains("gave up after waiting 300ms"),
        "{refused}"
    );

    hog.kill().unwrap(); // SIGKILL
    hog.wait().unwrap();
    let killed = Instant::now();
    let permit = here
        .acquire_with(AcquireOptions::new().wait(Duration::from_secs(10)))
        .await
        .expect("the killed process's permits came back");
    let back = killed.elapsed();
    assert!(
        back <= Duration::from_millis(2000),
        "back after {back:?} (lease 1s)"
    );
    drop(permit);
    let mut all = Vec::new();
    for _ in 0..10 {
        all.push(
            here.acquire_with(AcquireOptions::new().wait(Duration::from_secs(5)))
                .await
                .expect("all 10 came back"),
        );
    }
    assert_eq!(holders(&mut l, "fleet-hog").await, 10);
}

/// Two processes with 20 tasks each call a name with `max = 1` in a loop;
/// a third process asking for it waits in the global FIFO queue behind at
/// most one caller of each (a process queues in the server only the
/// callers its own limiter lets through), never starved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_process_is_not_starved() {
    let limits = RedisServer::start();
    let meter = RedisServer::start();
    let greedy: Vec<Child> = (0..2)
        .map(|_| worker("greedy", &limits, &meter, &[("LIMIT_TEST_TASKS", "20")]))
        .collect();
    let server = connect(&limits.url()).await.unwrap();
    server.share("fleet-fair", Shared::new().lease(Duration::from_secs(2)));
    let fair = Limiter::named("fleet-fair", 1);
    let mut l = conn(&limits.url()).await;
    let start = Instant::now();
    while holders(&mut l, "fleet-fair").await == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the greedy never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut longest = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let permit = fair
            .acquire_with(AcquireOptions::new().wait(Duration::from_secs(3)))
            .await
            .expect("not starved");
        longest = longest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(permit);
    }
    // Behind at most two 20 ms bodies (and their hand-overs).
    assert!(longest < Duration::from_millis(800), "waited {longest:?}");
    for w in greedy {
        finish(w, Duration::from_secs(30));
    }
}

/// The server restarts mid-run: nothing hangs, the scripts are loaded
/// again, and once the processes are back in shared mode the bound holds.
#[test]
fn a_server_restart_hangs_nothing_and_the_bound_holds_afterwards() {
    let mut limits = RedisServer::start();
    let meter = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let workers: Vec<Child> = (0..4)
        .map(|_| worker("restart", &limits, &meter, &[("LIMIT_TEST_TASKS", "250")]))
        .collect();
    let mut m = rt.block_on(conn(&meter.url()));
    // Mid-run: bodies are running.
    let start = std::time::Instant::now();
    while rt.block_on(get_int(&mut m, "peak")) < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the run never filled the limit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    limits.stop();
    std::thread::sleep(Duration::from_millis(300));
    limits.restart();
    // Back in shared mode (every process re-registered its leases), the
    // peak is measured again from the current count.
    std::thread::sleep(Duration::from_millis(1500));
    let in_flight: i64 = rt.block_on(async {
        redis::Script::new("local n = redis.call('GET', KEYS[1]) or '0' redis.call('SET', KEYS[2], n) return tonumber(n)")
            .key("inflight")
            .key("peak")
            .invoke_async(&mut m)
            .await
            .unwrap()
    });
    assert!(
        in_flight > 0,
        "the run ended before the measurement after the restart"
    );
    for w in workers {
        finish(w, Duration::from_secs(60));
    }
    rt.block_on(async {
        assert_eq!(get_int(&mut m, "inflight").await, 0);
        let peak = get_int(&mut m, "peak").await;
        assert!(peak <= 10, "peak after the restart: {peak}");
        let mut l = conn(&limits.url()).await;
        assert!(
            command_calls(&mut l, "script|load").await + command_calls(&mut l, "script").await >= 1,
            "the scripts were loaded again"
        );
        assert!(command_calls(&mut l, "evalsha").await > 0);
    });
}

#[limited(name = "closed-attr", max = 3, wait = "2s")]
async fn closed_call() -> Result<(), limit_runtime::Error> {
    Ok(())
}

/// No `wait`, no `queue`: a `Result` that can carry the error still gets
/// `Unavailable` from a name that fails closed, instead of waiting for the
/// server.
#[limited(name = "closed-plain", max = 3)]
async fn closed_plain_call() -> Result<(), limit_runtime::Error> {
    Ok(())
}

/// Refusals by a fail-closed name do not count as failures for a breaker.
#[limit_runtime::circuit_breaker(name = "closed-breaker", min_calls = 2, failure_rate = 0.1)]
#[limited(name = "closed-cb", max = 3, wait = "2s")]
async fn closed_breaker_call() -> Result<(), limit_runtime::Error> {
    Ok(())
}

static RETRIED_BODIES: AtomicUsize = AtomicUsize::new(0);

/// A refusal by a fail-closed name is not retried, and the body never runs.
#[limit_runtime::retry(attempts = 3, initial = "1s")]
#[limited(name = "closed-retry", max = 3, wait = "2s")]
async fn closed_retried_call() -> Result<(), limit_runtime::Error> {
    RETRIED_BODIES.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// With the server stopped: a fail-closed name refuses with `Unavailable`
/// at once, a fail-open one falls back to its local limit; both are shared
/// again as soon as the server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_and_fail_closed_with_the_server_stopped() {
    let mut limits = RedisServer::start();
    let server = connect(&limits.url()).await.unwrap();
    let quick = Shared::new()
        .lease(Duration::from_secs(1))
        .timeout(Duration::from_millis(300));
    server
        .share("closed", quick.clone())
        .share("closed-attr", quick.clone())
        .share("closed-retry", quick.clone())
        .share("closed-cb", quick.clone())
        .share("closed-plain", quick.clone())
        .share("open", quick.clone().fail_open(2));
    let closed = Limiter::named("closed", 5);
    let open = Limiter::named("open", 5);
    {
        let _p = closed.acquire().await;
        let mut l = conn(&limits.url()).await;
        assert_eq!(holders(&mut l, "closed").await, 1);
        assert_eq!(closed.stats().backend, Some(BackendMode::Shared));
    }
    closed_call().await.unwrap();
    closed_plain_call().await.unwrap();

    limits.stop();
    let t = Instant::now();
    let err = closed
        .acquire_with(AcquireOptions::new().wait(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    let text = err.to_string();
    assert!(
        text.starts_with("limiter \"closed\": the shared limit's server redis://127.0.0.1:")
            && text.contains("(fail_closed at tests/redis_shared.rs:"),
        "{text}"
    );
    assert_eq!(closed.stats().backend, Some(BackendMode::FailedClosed));
    assert_eq!(
        closed_call().await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    let t = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), closed_plain_call())
        .await
        .expect("a call that can carry the error does not wait for the server")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let err = closed_retried_call().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "not retried: no 1 s backoff"
    );
    assert_eq!(RETRIED_BODIES.load(Ordering::SeqCst), 0);
    for _ in 0..5 {
        let err = closed_breaker_call().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
    }
    let breaker = limit_runtime::breaker("closed-breaker").unwrap();
    assert_eq!(breaker.state(), limit_runtime::BreakerState::Closed);

    // Fail open: the local fallback limit of 2 holds.
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (open, now, peak) = (open.clone(), now.clone(), peak.clone());
            tokio::spawn(async move {
                open.run(async {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            })
        })
        .collect();
    for c in calls {
        tokio::time::timeout(Duration::from_secs(5), c)
            .await
            .expect("fail-open calls never hang")
            .unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(open.stats().backend, Some(BackendMode::FailedOpen));

    // Back to shared as soon as the server answers.
    limits.restart();
    let t = Instant::now();
    while closed.stats().backend != Some(BackendMode::Shared) {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "still not shared again"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!server.is_down());
    let _p = closed
        .acquire_with(AcquireOptions::new().wait(Duration::from_secs(2)))
        .await
        .unwrap();
    let _q = open.acquire().await;
    let mut l = conn(&limits.url()).await;
    assert_eq!(holders(&mut l, "closed").await, 1);
    assert_eq!(holders(&mut l, "open").await, 1);
}

/// 3 processes × 20 calls of a name with `rate = "20/s"`: no window of
/// length t sees more than 1 + ⌊20 t⌋ starts (one start of slack for the
/// time a start takes to be recorded).
#[test]
fn the_rate_holds_over_several_processes() {
    let limits = RedisServer::start();
    let meter = RedisServer::start();
    let workers: Vec<Child> = (0..3)
        .map(|_| worker("rate", &limits, &meter, &[("LIMIT_TEST_TASKS", "20")]))
        .collect();
    for w in workers {
        finish(w, Duration::from_secs(60));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let starts: Vec<i64> = rt.block_on(async {
        let mut m = conn(&meter.url()).await;
        redis::cmd("LRANGE")
            .arg("starts")
            .arg(0)
            .arg(-1)
            .query_async(&mut m)
            .await
            .unwrap()
    });
    assert_eq!(starts.len(), 60);
    let mut starts = starts;
    starts.sort_unstable();
    let span = (starts[59] - starts[0]) as f64 / 1e6;
    assert!(span >= 2.8, "60 starts at 20/s took only {span:.3}s");
    for i in 0..starts.len() {
        for j in i..starts.len() {
            let t = (starts[j] - starts[i]) as f64 / 1e6;
            let count = j - i + 1;
            let allowed = 1 + (t * 20.0).floor() as usize + 1;
            assert!(
                count <= allowed,
                "{count} starts within {t:.3}s (allowed {allowed})"
            );
        }
    }
}

/// An uncontended start and its release are one round trip each: two
/// `EVALSHA` calls in the server's own statistics, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncontended_start_and_release_are_two_round_trips() {
    let limits = RedisServer::start();
    let server = connect(&limits.url()).await.unwrap();
    server.share("trips", Shared::new().lease(Duration::from_secs(60))); // no renewal meanwhile
                                                                         // Releases travel in the background: a generous max keeps a loop that
                                                                         // outruns them uncontended.
    let trips = Limiter::named("trips", 100);
    trips.run(async {}).await; // loads the scripts
    let mut l = conn(&limits.url()).await;
    while holders(&mut l, "trips").await != 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut l)
        .await
        .unwrap();
    for _ in 0..100 {
        trips.run(async {}).await;
    }
    let t = Instant::now();
    while command_calls(&mut l, "evalsha").await < 200 {
        assert!(t.elapsed() < Duration::from_secs(5), "releases missing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut l)
        .await
        .unwrap();
    assert_eq!(command_calls(&mut l, "evalsha").await, 200, "{info}");
    // (The commands the scripts run are counted too, under their own
    // names; none of these is sent by the client.)
    for other in ["eval", "script|load", "ping"] {
        assert_eq!(command_calls(&mut l, other).await, 0, "{other}");
    }
}

/// A caller that holds its local permit and waits in the server's queue
/// (another process holds the only lease) counts as waiting, not active,
/// and its wait for the lease shows in the wait statistics; an uncontended
/// start's round trips do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_in_the_server_counts_as_waiting_and_as_a_wait() {
    let limits = RedisServer::start();
    let server = connect(&limits.url()).await.unwrap();
    // A short lease: a queued caller asks again at least every lease / 4.
    server.share("remote-wait", Shared::new().lease(Duration::from_secs(1)));
    let l = Limiter::named("remote-wait", 1);
    l.run(async {}).await; // loads the scripts; not a wait
    assert_eq!(l.stats().waited, 0);
    assert_eq!(l.stats().wait_total, Duration::ZERO);

    // Another process's lease, written as the scripts write one.
    let mut c = conn(&limits.url()).await;
    let key = "limit:{remote-wait}:holders";
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
    let until = secs * 1000 + micros / 1000 + 60_000;
    let _: i64 = redis::cmd("ZADD")
        .arg(key)
        .arg(until)
        .arg("another-process")
        .query_async(&mut c)
        .await
        .unwrap();

    let call = {
        let l = l.clone();
        tokio::spawn(async move { l.run(async {}).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !call.is_finished(),
        "the other process holds the only lease"
    );
    assert_eq!((l.active(), l.waiting()), (0, 1));
    let s = l.stats();
    assert_eq!((s.active, s.waiting), (0, 1));

    let _: i64 = redis::cmd("ZREM")
        .arg(key)
        .arg("another-process")
        .query_async(&mut c)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the lease is free again")
        .unwrap();
    let s = l.stats();
    assert_eq!((s.active, s.waiting), (0, 0));
    assert_eq!(s.acquired, 2);
    assert_eq!(s.waited, 1);
    assert!(s.wait_total >= Duration::from_millis(300), "{s:?}");
    assert_eq!(s.wait_max, s.wait_total);
}

/// With the `tracing` feature, the switch to the fallback mode is a `WARN`
/// event and the way back an `INFO` event, both with the server's URL, and
/// a call that a name failing closed refuses is a `DEBUG` event, as any
/// refusal (`cargo test --features redis,tracing --test redis_shared tracing`).
#[cfg(feature = "tracing")]
#[test]
fn tracing_says_when_a_server_is_down_and_back() {
    use std::sync::Mutex;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// Records `LEVEL target message` for the events of
    /// `limit_runtime::redis` and `limit_runtime::limited`.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    struct Message(String);

    impl Visit for Message {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    impl Subscriber for Recorder {
        fn enabled(&self, m: &Metadata<'_>) -> bool {
            m.target() == "limit_runtime::redis" || m.target() == "limit_runtime::limited"
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut message = Message(String::new());
            event.record(&mut message);
            let m = event.metadata();
            let line = format!("{} {}{}", m.level(), m.target(), message.0);
            self.0.lock().unwrap().push(line);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    let mut limits = RedisServer::start();
    let rec = Recorder::default();
    let events = rec.0.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(rec, || {
        rt.block_on(async {
            let server = connect(&limits.url()).await.unwrap();
            server
                .share("traced-open", Shared::new().fail_open(1))
                .share("traced-closed", Shared::new());
            let l = Limiter::named("traced-open", 2);
            let closed = Limiter::named("traced-closed", 2);
            l.run(async {}).await;
            limits.stop();
            l.run(async {}).await; // fails over to the local limit
            assert_eq!(l.stats().backend, Some(BackendMode::FailedOpen));
            let refused = closed.acquire_with(AcquireOptions::new()).await;
            assert_eq!(refused.unwrap_err().kind(), ErrorKind::Unavailable);
            limits.restart();
            let t = Instant::now();
            while l.stats().backend != Some(BackendMode::Shared) {
                assert!(t.elapsed() < Duration::from_secs(3), "not back");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    });
    let events = events.lock().unwrap().clone();
    let url = limits.url();
    let of = |target: &str| -> Vec<&String> {
        events
            .iter()
            .filter(|e| e.split(' ').nth(1) == Some(target))
            .collect()
    };
    let server = of("limit_runtime::redis");
    assert_eq!(server.len(), 2, "{events:?}");
    assert!(
        server[0].starts_with("WARN")
            && server[0].contains(&format!("server={url}"))
            && server[0].contains("did not answer"),
        "{events:?}"
    );
    assert!(
        server[1].starts_with("INFO") && server[1].contains("answers again"),
        "{events:?}"
    );
    let calls = of("limit_runtime::limited");
    assert_eq!(calls.len(), 1, "{events:?}");
    assert!(
        calls[0].starts_with("DEBUG")
            && calls[0].contains("limiter=\"traced-closed\"")
            && calls[0].contains("kind=Unavailable")
            && calls[0].contains("does not answer, and the name fails closed"),
        "{events:?}"
    );
}
