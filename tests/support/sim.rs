//! A simulated service and a load driver, shared by `tests/adaptive.rs` and
//! `benches/adaptive.rs`. Deterministic under tokio's paused clock: a
//! minute of traffic runs in well under a second of real time.
//!
//! The service has a capacity `C` and an unloaded latency `L`. A call that
//! finds `n` calls in flight (itself included) takes `L × max(1, n / C)`
//! (times its noise and tail factors): beyond `C` the service queues, so it
//! serves no more per second, only slower. Beyond `2 × C` it is overloaded
//! and answers at once with an overload error (a 503). It can also be made
//! to hang, so that every call times out.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use limit_runtime::{Limiter, Outcome};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// The service is overloaded (a 503).
    Overloaded,
    /// The client gave up waiting.
    TimedOut,
}

impl SimError {
    pub fn is_overload(&self) -> bool {
        *self == SimError::Overloaded
    }
}

impl From<limit_runtime::Error> for SimError {
    fn from(_: limit_runtime::Error) -> Self {
        SimError::TimedOut
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub capacity: usize,
    pub latency: Duration,
    /// Each call's latency is multiplied by a factor uniform in
    /// `[1 − noise, 1 + noise]`.
    pub noise: f64,
    /// This fraction of calls is `tail_factor` times slower.
    pub tail: f64,
    pub tail_factor: f64,
}

impl Shape {
    pub fn new(capacity: usize, latency: Duration) -> Shape {
        Shape {
            capacity,
            latency,
            noise: 0.0,
            tail: 0.0,
            tail_factor: 1.0,
        }
    }

    pub fn noisy(mut self, noise: f64, tail: f64, tail_factor: f64) -> Shape {
        self.noise = noise;
        self.tail = tail;
        self.tail_factor = tail_factor;
        self
    }
}

pub struct Service {
    shape: Mutex<Shape>,
    hang: AtomicBool,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicU64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl Service {
    pub fn new(shape: Shape) -> Arc<Service> {
        Arc::new(Service {
            shape: Mutex::new(shape),
            hang: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
        })
    }

    pub fn set_capacity(&self, capacity: usize) {
        self.shape.lock().unwrap().capacity = capacity;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.shape.lock().unwrap().latency = latency;
    }

    /// From now on, every call hangs (until the client gives up).
    pub fn set_hang(&self, hang: bool) {
        self.hang.store(hang, Ordering::SeqCst);
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    pub async fn call(&self) -> Result<(), SimError> {
        let shape = *self.shape.lock().unwrap();
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        let _leave = Leave(&self.in_flight);
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if n > 2 * shape.capacity {
            tokio::time::sleep(shape.latency / 20).await;
            return Err(SimError::Overloaded);
        }
        let i = self.calls.fetch_add(1, Ordering::SeqCst);
        let r = splitmix(i);
        let mut factor = 1.0 + shape.noise * (2.0 * unit(r) - 1.0);
        if unit(splitmix(r)) < shape.tail {
            factor *= shape.tail_factor;
        }
        let load = (n as f64 / shape.capacity as f64).max(1.0);
        tokio::time::sleep(shape.latency.mul_f64(factor * load)).await;
        Ok(())
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a run saw, with a time series in `step` buckets.
#[derive(Debug, Default, Clone)]
pub struct Run {
    pub successes: u64,
    pub overloads: u64,
    pub timeouts: u64,
    /// Successes per bucket.
    pub served: Vec<u64>,
    /// Overload answers per bucket.
    pub overloaded: Vec<u64>,
    /// The limiter's limit at the end of each bucket.
    pub limit: Vec<usize>,
    pub latencies: Vec<Duration>,
    pub peak_in_flight: usize,
    pub step: Duration,
}

impl Run {
    pub fn throughput(&self, from: Duration, to: Duration) -> f64 {
        let a = (from.as_secs_f64() / self.step.as_secs_f64()) as usize;
        let b = ((to.as_secs_f64() / self.step.as_secs_f64()) as usize).min(self.served.len());
        let n: u64 = self.served[a..b].iter().sum();
        n as f64 / (to - from).as_secs_f64()
    }

    pub fn median_latency(&self) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    /// The last bucket (its start) with an overload answer, if any.
    pub fn last_overload(&self) -> Option<Duration> {
        let i = self.overloaded.iter().rposition(|&n| n > 0)?;
        Some(self.step * i as u32)
    }

    /// The first bucket at or after `from` whose limit is `limit`.
    pub fn limit_reached(&self, from: Duration, limit: usize) -> Option<Duration> {
        let a = (from.as_secs_f64() / self.step.as_secs_f64()) as usize;
        let i = self.limit[a..].iter().position(|&l| l == limit)?;
        Some(self.step * (a + i) as u32)
    }

    pub fn overload_fraction(&self) -> f64 {
        self.overloads as f64 / (self.successes + self.overloads + self.timeouts).max(1) as f64
    }
}

/// Something that happens to the service at a time into the run.
pub type Event = (Duration, Box<dyn FnOnce(&Service) + Send>);

/// A run's set-up: the service, the load, and what happens during it.
#[derive(Clone)]
pub struct Scenario {
    pub shape: Shape,
    /// Client loops, each calling again as soon as its call ends.
    pub workers: usize,
    pub length: Duration,
    /// The client's timeout per call.
    pub timeout: Duration,
    pub events: Arc<dyn Fn() -> Vec<Event> + Send + Sync>,
}

impl Scenario {
    pub fn new(shape: Shape, workers: usize, length: Duration) -> Scenario {
        Scenario {
            shape,
            workers,
            length,
            timeout: Duration::from_secs(3600),
            events: Arc::new(Vec::new),
        }
    }

    /// The service's capacity becomes `capacity` at `at`.
    pub fn capacity_at(mut self, at: Duration, capacity: usize) -> Scenario {
        self.events = Arc::new(move || -> Vec<Event> {
            vec![(at, Box::new(move |s: &Service| s.set_capacity(capacity)))]
        });
        self
    }

    /// The service's unloaded latency becomes `latency` at `at`.
    pub fn latency_at(mut self, at: Duration, latency: Duration) -> Scenario {
        self.events = Arc::new(move || -> Vec<Event> {
            vec![(at, Box::new(move |s: &Service| s.set_latency(latency)))]
        });
        self
    }

    /// Every call hangs from `at`; the client gives up after `timeout`.
    pub fn hang_at(mut self, at: Duration, timeout: Duration) -> Scenario {
        self.timeout = timeout;
        self.events = Arc::new(move || -> Vec<Event> {
            vec![(at, Box::new(|s: &Service| s.set_hang(true)))]
        });
        self
    }

    /// Runs the scenario on a fresh service, each call under `limiter`.
    pub async fn run(&self, limiter: &Limiter) -> Run {
        drive(
            limiter,
            &Service::new(self.shape),
            self.workers,
            self.length,
            self.timeout,
            (self.events)(),
        )
        .await
    }

    /// The best fixed limit among `candidates`: the one with the most
    /// successes in `[from, to)`.
    pub async fn best_fixed(
        &self,
        candidates: &[usize],
        from: Duration,
        to: Duration,
    ) -> (usize, Run) {
        let mut best: Option<(usize, Run)> = None;
        for &n in candidates {
            let run = self.run(&Limiter::private("sim-fixed", n)).await;
            if best
                .as_ref()
                .is_none_or(|(_, b)| run.throughput(from, to) > b.throughput(from, to))
            {
                best = Some((n, run));
            }
        }
        best.expect("at least one candidate")
    }
}

/// Runs `workers` client loops for `length` against `service`, each call
/// under `limiter` (recording its outcome), with `timeout` per call.
/// Must run under a paused clock.
pub async fn drive(
    limiter: &Limiter,
    service: &Arc<Service>,
    workers: usize,
    length: Duration,
    timeout: Duration,
    events: Vec<Event>,
) -> Run {
    let step = Duration::from_millis(100);
    let buckets = (length.as_millis() / step.as_millis()) as usize;
    let start = Instant::now();
    let end = start + length;
    let stats = Arc::new(Mutex::new(Run {
        served: vec![0; buckets + 1],
        overloaded: vec![0; buckets + 1],
        limit: vec![0; buckets + 1],
        step,
        ..Run::default()
    }));
    let bucket = move |t: Instant| ((t - start).as_millis() / step.as_millis()) as usize;

    let mut tasks = Vec::new();
    for _ in 0..workers {
        let limiter = limiter.clone();
        let service = service.clone();
        let stats = stats.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let permit = limiter.acquire().await;
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let outcome = tokio::time::timeout(timeout, service.call()).await;
                let now = Instant::now();
                let mut s = stats.lock().unwrap();
                let b = bucket(now).min(buckets);
                match outcome {
                    Ok(Ok(())) => {
                        s.successes += 1;
                        s.served[b] += 1;
                        s.latencies.push(now - began);
                        drop(s);
                        permit.record(Outcome::Success);
                    }
                    Ok(Err(_)) => {
                        s.overloads += 1;
                        s.overloaded[b] += 1;
                        drop(s);
                        permit.record(Outcome::Overloaded);
                    }
                    Err(_) => {
                        s.timeouts += 1;
                        drop(s);
                        permit.record(Outcome::Overloaded);
                    }
                }
            }
        }));
    }
    let monitor = {
        let limiter = limiter.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            for i in 0..=buckets {
                tokio::time::sleep_until(start + step * (i as u32 + 1)).await;
                stats.lock().unwrap().limit[i] = limiter.limit();
            }
        })
    };
    let events = {
        let service = service.clone();
        tokio::spawn(async move {
            for (at, event) in events {
                tokio::time::sleep_until(start + at).await;
                event(&service);
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    monitor.await.unwrap();
    events.abort();
    let mut run = stats.lock().unwrap().clone();
    run.peak_in_flight = service.peak();
    run
}
