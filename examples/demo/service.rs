//! The simulated services: real HTTP servers (axum) on `127.0.0.1`, each on
//! a free port, in this process.
//!
//! - The **user service** (capacity 20): `GET /users/{id}` (~10 ms) and
//!   `GET /groups/{id}` (~120 ms: a group's settings are expensive to build).
//! - The **address service** (capacity 12): `GET /addresses/{id}` (~15 ms).
//!
//! Up to its capacity a service answers at its normal speed. Beyond it, every
//! new request is slower in proportion to the load, and past twice the
//! capacity the service sheds load: `503 Service Unavailable` with a
//! `Retry-After` header (whole seconds, as HTTP defines it) and a
//! `retry-after-ms` header with the finer hint. Independently of load, 1.5 %
//! of requests fail with a `500` and 1 % with a short `503` (a restarting
//! instance), chosen by the seed from the request's target and how many times
//! it was asked for, so a seed reproduces a run whatever the arrival order.
//!
//! Each service keeps its own statistics, read with [`Service::stats`].

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use super::{mix, unit};

/// Requests the user service handles at once at full speed.
pub const USERS_CAPACITY: usize = 20;
/// Requests the address service handles at once at full speed.
pub const ADDRESSES_CAPACITY: usize = 12;

/// Past `capacity × SHED_FACTOR` requests in flight, new ones get a 503.
const SHED_FACTOR: usize = 2;
/// The hint sent with a load-shedding 503.
const SHED_HINT: Duration = Duration::from_millis(250);
/// Per mille of requests that fail with a 500, whatever the load.
const ERROR_PER_MILLE: u64 = 15;
/// Per mille of requests that get a short 503, whatever the load.
const BROWNOUT_PER_MILLE: u64 = 10;
/// The hint sent with such a 503.
const BROWNOUT_HINT: Duration = Duration::from_millis(40);

/// The custom header carrying a sub-second retry hint, in milliseconds.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Endpoint {
    User,
    Group,
    Address,
}

impl Endpoint {
    fn latency(self) -> Duration {
        match self {
            Endpoint::User => Duration::from_millis(10),
            Endpoint::Group => Duration::from_millis(120),
            Endpoint::Address => Duration::from_millis(15),
        }
    }

    fn tag(self) -> u64 {
        match self {
            Endpoint::User => 1,
            Endpoint::Group => 2,
            Endpoint::Address => 3,
        }
    }

    /// The resource, as `key=value` lines.
    fn body(self, seed: u64, id: u64) -> String {
        const FIRST: [&str; 8] = [
            "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
        ];
        const LAST: [&str; 8] = [
            "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
        ];
        const COUNTRIES: [&str; 6] = ["DE", "FR", "NL", "SE", "PT", "IE"];
        let h = mix(seed, &[self.tag(), id]);
        match self {
            Endpoint::User => format!(
                "id={id}\nname={} {}\naddress={}\n",
                FIRST[(h % 8) as usize],
                LAST[(h >> 8) as usize % 8],
                h >> 40
            ),
            Endpoint::Group => format!("id={id}\ndiscount={}\n", h % 25),
            Endpoint::Address => format!(
                "id={id}\ncountry={}\npostcode={:05}\n",
                COUNTRIES[(h % 6) as usize],
                (h >> 16) % 100_000
            ),
        }
    }
}

/// What a service saw, from its own side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    pub name: &'static str,
    pub capacity: usize,
    /// Requests received.
    pub requests: u64,
    /// Answered `200`.
    pub ok: u64,
    /// Answered `503` because too many requests were in flight.
    pub shed: u64,
    /// Answered `503` at random (a restarting instance).
    pub brownouts: u64,
    /// Answered `500` at random.
    pub errors: u64,
    /// Answered `503` while down (the outage run).
    pub down: u64,
    /// The most requests it was handling at once.
    pub peak_in_flight: usize,
}

struct Shared {
    name: &'static str,
    /// Changed by [`Service::set_capacity`] (the service scaled).
    capacity: AtomicUsize,
    /// Whether 1.5 % of requests fail with a `500` and 1 % with a short
    /// `503`, whatever the load.
    failures: std::sync::atomic::AtomicBool,
    seed: u64,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    requests: AtomicU64,
    ok: AtomicU64,
    shed: AtomicU64,
    brownouts: AtomicU64,
    errors: AtomicU64,
    /// While set, every request gets a `503` at once (an outage).
    is_down: std::sync::atomic::AtomicBool,
    down: AtomicU64,
    /// How many times each resource was asked for: the failure draw depends
    /// on it, so a retried request gets a fresh draw.
    asked: Mutex<HashMap<(Endpoint, u64), u64>>,
}

/// Counts a request in flight for as long as its handler runs.
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    async fn handle(&self, endpoint: Endpoint, id: u64) -> Response {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _in_flight = InFlight(self);
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if self.is_down.load(Ordering::SeqCst) {
            self.down.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::SERVICE_UNAVAILABLE, "down\n").into_response();
        }
        let capacity = self.capacity.load(Ordering::SeqCst);
        if now > capacity * SHED_FACTOR {
            self.shed.fetch_add(1, Ordering::Relaxed);
            return unavailable("overloaded", SHED_HINT);
        }
        let asked = {
            let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
            let n = asked.entry((endpoint, id)).or_insert(0);
            *n += 1;
            *n
        };
        let h = mix(self.seed, &[endpoint.tag(), id, asked]);
        // ±25 % around the endpoint's latency, slower in proportion to the
        // load beyond capacity.
        let load = now.max(capacity) as f64 / capacity as f64;
        let latency = endpoint.latency().mul_f64((0.75 + 0.5 * unit(h)) * load);
        let draw = if self.failures.load(Ordering::Relaxed) {
            (h >> 20) % 1000
        } else {
            1000
        };
        if draw < ERROR_PER_MILLE {
            tokio::time::sleep(latency / 2).await;
            self.errors.fetch_add(1, Ordering::Relaxed);
            (StatusCode::INTERNAL_SERVER_ERROR, "transient failure\n").into_response()
        } else if draw < ERROR_PER_MILLE + BROWNOUT_PER_MILLE {
            tokio::time::sleep(latency / 2).await;
            self.brownouts.fetch_add(1, Ordering::Relaxed);
            unavailable("restarting", BROWNOUT_HINT)
        } else {
            tokio::time::sleep(latency).await;
            self.ok.fetch_add(1, Ordering::Relaxed);
            endpoint.body(self.seed, id).into_response()
        }
    }

    fn stats(&self) -> ServiceStats {
        ServiceStats {
            name: self.name,
            capacity: self.capacity.load(Ordering::SeqCst),
            requests: self.requests.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            brownouts: self.brownouts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
            peak_in_flight: self.peak.load(Ordering::SeqCst),
        }
    }
}

/// A 503 with `Retry-After` in whole seconds (at least 1) and the exact
/// hint in `retry-after-ms`.
fn unavailable(why: &'static str, hint: Duration) -> Response {
    let secs = hint.as_millis().div_ceil(1000).max(1) as u64;
    let headers = [
        (header::RETRY_AFTER, HeaderValue::from(secs)),
        (
            HeaderName::from_static(RETRY_AFTER_MS),
            HeaderValue::from(hint.as_millis() as u64),
        ),
    ];
    (StatusCode::SERVICE_UNAVAILABLE, headers, why).into_response()
}

type SharedState = State<Arc<Shared>>;

async fn user(State(s): SharedState, Path(id): Path<u64>) -> Response {
    s.handle(Endpoint::User, id).await
}

async fn group(State(s): SharedState, Path(id): Path<u64>) -> Response {
    s.handle(Endpoint::Group, id).await
}

async fn address(State(s): SharedState, Path(id): Path<u64>) -> Response {
    s.handle(Endpoint::Address, id).await
}

/// A listener that, when `accept` fails (out of file descriptors under a
/// flood of connections), tries again after 5 ms rather than axum's 1 s.
struct Acceptor(TcpListener);

impl axum::serve::Listener for Acceptor {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (stream, addr);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// One running service.
pub struct Service {
    url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Service {
    async fn start(
        name: &'static str,
        capacity: usize,
        seed: u64,
        routes: Router<Arc<Shared>>,
    ) -> io::Result<Service> {
        let shared = Arc::new(Shared {
            name,
            capacity: AtomicUsize::new(capacity),
            failures: std::sync::atomic::AtomicBool::new(true),
            seed,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            brownouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            is_down: std::sync::atomic::AtomicBool::new(false),
            down: AtomicU64::new(0),
            asked: Mutex::new(HashMap::new()),
        });
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        // A long accept queue: the naive run opens thousands of connections
        // at once, and a full queue would drop them for a 1 s SYN retry.
        let listener = socket.listen(4096)?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = routes.with_state(shared.clone());
        let server = tokio::spawn(async move {
            // `serve` only returns on shutdown; accept errors are retried.
            let _ = axum::serve(Acceptor(listener), app).await;
        });
        Ok(Service {
            url,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn stats(&self) -> ServiceStats {
        self.shared.stats()
    }

    /// Starts or ends an outage: while down, every request gets a `503`
    /// at once, with no `Retry-After`.
    pub fn set_down(&self, down: bool) {
        self.shared.is_down.store(down, Ordering::SeqCst);
    }

    /// The address service alone, with this capacity, and without the
    /// random failures unless `failures`: for the adaptive-limit run.
    pub async fn addresses(seed: u64, capacity: usize, failures: bool) -> io::Result<Service> {
        let routes = Router::new().route("/addresses/{id}", get(address));
        let service = Service::start("addresses", capacity, seed, routes).await?;
        service.shared.failures.store(failures, Ordering::Relaxed);
        Ok(service)
    }

    /// Scales the service: from now on it handles `capacity` requests at
    /// once at full speed (and sheds load past twice that).
    pub fn set_capacity(&self, capacity: usize) {
        self.shared
            .capacity
            .store(capacity.max(1), Ordering::SeqCst);
    }

    /// A handle that can start and end an outage from another task.
    pub fn clone_handle(&self) -> OutageSwitch {
        OutageSwitch(self.shared.clone())
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Stops accepting connections. Connections still open close when
    /// their client lets go of them.
    pub fn stop(self) {
        self.server.abort();
    }
}

/// Starts and ends an outage of a [`Service`], or scales it.
#[derive(Clone)]
pub struct OutageSwitch(Arc<Shared>);

impl OutageSwitch {
    /// See [`Service::set_down`].
    pub fn set_down(&self, down: bool) {
        self.0.is_down.store(down, Ordering::SeqCst);
    }

    /// See [`Service::set_capacity`].
    pub fn set_capacity(&self, capacity: usize) {
        self.0.capacity.store(capacity.max(1), Ordering::SeqCst);
    }
}

/// Both services, started together.
pub struct Services {
    pub users: Service,
    pub addresses: Service,
}

impl Services {
    /// Starts both services on free ports of `127.0.0.1`, with fresh
    /// statistics, their random failures drawn from `seed`.
    pub async fn start(seed: u64) -> io::Result<Services> {
        let users = Router::new()
            .route("/users/{id}", get(user))
            .route("/groups/{id}", get(group));
        let addresses = Router::new().route("/addresses/{id}", get(address));
        Ok(Services {
            users: Service::start("users", USERS_CAPACITY, seed, users).await?,
            addresses: Service::start("addresses", ADDRESSES_CAPACITY, seed, addresses).await?,
        })
    }

    pub fn stop(self) {
        self.users.stop();
        self.addresses.stop();
    }
}
