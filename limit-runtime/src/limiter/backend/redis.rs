//! Limits shared by every process that uses a name, through a Redis server
//! (cargo feature `redis`).
//!
//! Ten worker processes with `#[limited(name = "address", max = 10)]` each
//! send up to 100 requests at once to the address service. Connect the name
//! to a Redis server at start-up and the same attribute means 10 across the
//! fleet; the annotated code does not change:
//!
//! ```no_run
//! # async fn start() -> Result<(), limit_runtime::redis::ConnectError> {
//! use std::time::Duration;
//! use limit_runtime::redis::{self, Shared};
//!
//! let server = redis::connect("redis://127.0.0.1:6379").await?;
//! server.share("address", Shared::new().lease(Duration::from_secs(10)).fail_open(5));
//! server.share("github", Shared::new().fail_closed());
//! # Ok(()) }
//! ```
//!
//! # What holds across processes
//!
//! * **Concurrency**: at most `max` bodies run at once under the name in
//!   all processes connected to the server. A permit is a *lease* with an
//!   expiry (10 s unless [`Shared::lease`] says otherwise). A background task
//!   renews every lease the process holds, in one call per name every third
//!   of the lease; if the process dies, even by `SIGKILL`, its leases expire
//!   and come back within the lease time.
//! * **Rate**: a limiter's `rate` (with its burst) holds over all processes
//!   together: one GCRA in the server, in the same script as the lease. A
//!   slot is reserved in arrival order and the caller sleeps until it (no
//!   polling); a call whose slot lies past its `wait` is refused at once
//!   without reserving one.
//! * **Fair**: callers that cannot start wait in one queue per name in the
//!   server, in order of arrival there: a global FIFO. A waiter's place is
//!   kept while it refreshes it (at least every lease); one that stops
//!   (its process died) loses its place within the lease.
//! * **Cheap**: an uncontended start is one round trip (`EVALSHA`) and its
//!   release one more. The scripts are loaded once and loaded again when
//!   the server answers `NOSCRIPT` (after a restart).
//! * **How waiters learn of a release**: the release script hands the
//!   lease to the waiter at the head of the queue (the waiter becomes a
//!   holder in the same script) and publishes its id on one pub/sub channel
//!   per server; each process keeps one subscription and wakes exactly that
//!   caller, which starts without another round trip. (With a rate, the
//!   message wakes the caller to ask for its lease and its rate slot
//!   together.) As a safety net (a lost message, an expired lease), a
//!   waiter also asks again after a backoff that doubles from 10 ms up to a
//!   quarter of the lease (at most 500 ms): no tight loop.
//!
//! # What stays local
//!
//! The process's own queue comes first: a caller waits in the local limiter
//! (FIFO, online before [batch](crate::batch) work, `queue`) before it asks
//! the server, so a process never has more than `max` callers in the global
//! queue. Priority classes and `reserve` therefore order callers within a
//! process, not across processes. An adaptive limit, if the limiter has
//! one, adapts locally; the shared limit is the limiter's `max`. `wait`
//! counts the local and the remote wait together. `queue = n` bounds the
//! local queue; `queue = 0` also refuses when the server has no lease free.
//! `#[retry]` and `#[circuit_breaker]` see a shared limiter exactly as a
//! local one: each attempt takes (and gives back) its own lease, and
//! refusals are never retried.
//!
//! # When the server does not answer
//!
//! Every operation has a timeout ([`Shared::timeout`], 1 s by default). An
//! operation that fails or times out puts the server in *down* mode: calls
//! stop asking it and do what their name chose:
//!
//! * [`Shared::fail_closed`] (the default): calls that can carry an error
//!   (a `#[limited]` function returning `Result<T, E>` with
//!   `E: From<limit_runtime::Error>`, [`Limiter::acquire_with`],
//!   [`StaticLimiter::acquire_declared`]) fail at once with
//!   [`ErrorKind::Unavailable`]; calls that cannot ([`Limiter::acquire`],
//!   [`Limiter::run`], a `#[limited]` function returning `()` or another
//!   plain value) wait until the server answers again.
//! * [`Shared::fail_open`]`(n)`: each process falls back to a local limit of
//!   `n` (and the limiter's own local queue and rate).
//!
//! A background probe pings the server every 100 ms while it is down; the
//! first answer re-registers the leases the process still holds (a
//! restarted server has forgotten them) and puts every name back in shared
//! mode. [`LimiterStats::backend`] and [`Server::is_down`] say which mode a
//! name is in; with the `tracing` feature, the switch is a `WARN` event
//! and the way back an `INFO` event (target `limit_runtime::redis`).
//!
//! Bodies that started on a fallback permit (fail-open) are not counted by
//! the server when it comes back, and leases held across a server restart
//! are counted again only once the probe re-registers them: around an
//! outage the bound is the fallback's, not the server's.
//!
//! # In the server
//!
//! A name keeps its state under keys with the name in braces (one Redis
//! Cluster slot per name): `limit:{name}:holders` (a sorted set of leases
//! by expiry), `limit:{name}:queue` and `limit:{name}:tickets` (the
//! waiters, by arrival and by expiry), `limit:{name}:arrivals` (a counter)
//! and `limit:{name}:tat` (the rate's next start). Every key expires on its
//! own when the name is idle. Wake-ups travel on the channel `limit:wake`.
//!
//! [`Limiter::acquire_with`]: crate::Limiter::acquire_with
//! [`Limiter::acquire`]: crate::Limiter::acquire
//! [`Limiter::run`]: crate::Limiter::run
//! [`StaticLimiter::acquire_declared`]: crate::StaticLimiter::acquire_declared
//! [`ErrorKind::Unavailable`]: crate::ErrorKind::Unavailable
//! [`LimiterStats::backend`]: crate::LimiterStats::backend

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script};
use futures_util::StreamExt as _;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::{timeout, Instant};

use super::{Acquiring, Backend, BackendMode, Granted, Lease, Refused, Request};

/// The pub/sub channel on which release scripts name the waiters whose
/// turn has come.
const WAKE_CHANNEL: &str = "limit:wake";
/// How often a down server is asked whether it answers again.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// A waiter's first backoff; it doubles up to a quarter of the lease.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// The scripts' common part: drops the leases that expired (their holder
/// stopped renewing) and the places of waiters that stopped asking.
macro_rules! lua_purge {
    () => {
        r"
local function purge(holders, queue, tickets, now)
  redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
  local gone = redis.call('ZRANGEBYSCORE', tickets, '-inf', now)
  if #gone > 0 then
    redis.call('ZREM', queue, unpack(gone))
    redis.call('ZREM', tickets, unpack(gone))
  end
end
"
    };
}

/// Grants a lease (and a rate slot) or queues the caller, in one step.
///
/// KEYS: holders (zset id → lease expiry, ms), queue (zset id → arrival
/// number), tickets (zset id → ticket expiry, ms), arrival counter, rate TAT
/// (µs).
/// ARGV: id, capped (1/0), max, lease ms, ticket ms, rate interval µs (0: no
/// rate), rate tolerance µs, longest wait µs (-1: none), may queue (1/0).
/// Returns {1, delay µs}: granted, start after the delay; {0, ahead}:
/// queued behind `ahead` callers (or refused if it may not queue);
/// {2, delay µs}: the rate slot lies past the caller's wait.
const ACQUIRE: &str = concat!(
    lua_purge!(),
    r"
local holders, queue, tickets, arrivals, tat_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[1]
local capped = ARGV[2] == '1'
local max = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local ticket_ms = tonumber(ARGV[5])
local interval = tonumber(ARGV[6])
local tau = tonumber(ARGV[7])
local longest = tonumber(ARGV[8])
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
if capped then
  purge(holders, queue, tickets, now)
  if redis.call('ZSCORE', holders, id) then
    -- Handed over by a release while this caller was on its way.
    return {1, 0}
  end
  local free = max - redis.call('ZCARD', holders)
  local ahead = redis.call('ZRANK', queue, id)
  local queued = ahead ~= false
  if not queued then ahead = redis.call('ZCARD', queue) end
  if ahead >= free then
    if ARGV[9] == '1' then
      if not queued then
        redis.call('ZADD', queue, redis.call('INCR', arrivals), id)
      end
      redis.call('ZADD', tickets, now + ticket_ms, id)
      redis.call('PEXPIRE', queue, ticket_ms * 2)
      redis.call('PEXPIRE', tickets, ticket_ms * 2)
      redis.call('PEXPIRE', arrivals, ticket_ms * 2)
    end
    return {0, ahead}
  end
end
local delay = 0
if interval > 0 then
  local tat = tonumber(redis.call('GET', tat_key) or '0')
  local start = math.max(now_us, tat - tau)
  delay = start - now_us
  if longest >= 0 and delay > longest then
    if capped then
      redis.call('ZREM', queue, id)
      redis.call('ZREM', tickets, id)
    end
    return {2, delay}
  end
  local new_tat = math.max(tat, start) + interval
  redis.call('SET', tat_key, string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now_us) / 1000) + 1000)
end
if capped then
  redis.call('ZREM', queue, id)
  redis.call('ZREM', tickets, id)
  redis.call('ZADD', holders, now + lease_ms, id)
  redis.call('PEXPIRE', holders, lease_ms * 2)
end
return {1, delay}
"
);

/// Gives a lease back (or takes a waiter out of the queue), and tells the
/// waiters whose turn has come, on the wake channel. Without a rate, it
/// hands the lease over: the waiter becomes a holder here, and the message
/// (`g` and its id) tells it so, saving it a round trip; with a rate, the
/// message (`w` and its id) wakes it to ask for the lease and its rate
/// slot together.
///
/// KEYS: holders, queue, tickets. ARGV: id, max, channel, lease ms, hand
/// over (1/0).
const RELEASE: &str = concat!(
    lua_purge!(),
    r"
local holders, queue, tickets = KEYS[1], KEYS[2], KEYS[3]
local removed = redis.call('ZREM', holders, ARGV[1])
redis.call('ZREM', queue, ARGV[1])
redis.call('ZREM', tickets, ARGV[1])
if redis.call('ZCARD', queue) > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  purge(holders, queue, tickets, now)
  local free = tonumber(ARGV[2]) - redis.call('ZCARD', holders)
  if free > 0 then
    for _, w in ipairs(redis.call('ZRANGE', queue, 0, free - 1)) do
      if ARGV[5] == '1' then
        redis.call('ZREM', queue, w)
        redis.call('ZREM', tickets, w)
        redis.call('ZADD', holders, now + tonumber(ARGV[4]), w)
        redis.call('PUBLISH', ARGV[3], 'g' .. w)
      else
        redis.call('PUBLISH', ARGV[3], 'w' .. w)
      end
    end
  end
end
return removed
"
);

/// Extends the leases of one process, or registers them again after the
/// server was down (a restarted server has forgotten them). A renewal only
/// extends leases the server still has: one given back (or expired) while
/// the renewal was on its way stays gone.
///
/// KEYS: holders. ARGV: lease ms, again (1/0), ids...
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
for i = 3, #ARGV do
  if ARGV[2] == '1' then
    redis.call('ZADD', KEYS[1], until_ms, ARGV[i])
  else
    redis.call('ZADD', KEYS[1], 'XX', until_ms, ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return #ARGV - 2
";

/// Why [`connect`] failed.
#[derive(Debug)]
pub struct ConnectError(String);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

/// How one name is shared: its lease time, its timeout, and what it does
/// when the server does not answer. For [`Server::share`].
///
/// ```
/// use std::time::Duration;
/// use limit_runtime::redis::Shared;
///
/// let online = Shared::new().fail_closed().timeout(Duration::from_millis(200));
/// let batch = Shared::new().lease(Duration::from_secs(30)).fail_open(4);
/// # let _ = (online, batch);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shared {
    lease: Duration,
    timeout: Duration,
    fail_open: Option<usize>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

impl Shared {
    /// A lease of 10 s, a timeout of 1 s per operation, failing closed.
    pub const fn new() -> Shared {
        Shared {
            lease: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            fail_open: None,
        }
    }

    /// How long a permit outlives a process that stopped renewing it (it
    /// died, or lost the server). Renewed every third of it; at least
    /// 300 ms.
    pub const fn lease(mut self, lease: Duration) -> Shared {
        self.lease = if lease.as_millis() < 300 {
            Duration::from_millis(300)
        } else {
            lease
        };
        self
    }

    /// The longest any one operation on the server may take before the
    /// server counts as down.
    pub const fn timeout(mut self, timeout: Duration) -> Shared {
        self.timeout = timeout;
        self
    }

    /// While the server does not answer, each process falls back to a
    /// local limit of `local_max` bodies at once.
    pub const fn fail_open(mut self, local_max: usize) -> Shared {
        self.fail_open = Some(local_max);
        self
    }

    /// While the server does not answer, calls do not start: those that
    /// can carry an error fail with
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable), the
    /// others wait for the server. The default.
    pub const fn fail_closed(mut self) -> Shared {
        self.fail_open = None;
        self
    }
}

/// A connection to one Redis server that names can be shared through,
/// from [`connect`].
///
/// Cloning is cheap; clones share the connection.
#[derive(Clone)]
pub struct Server {
    inner: Arc<ServerInner>,
}

struct ServerInner {
    url: String,
    conn: ConnectionManager,
    /// `true` while the server is down.
    down: watch::Sender<bool>,
    probing: AtomicBool,
    /// The waiters of this process queued in the server, by id.
    wakers: Mutex<HashMap<Box<str>, Arc<Waiting>>>,
    /// Releases sent and not yet answered.
    releasing: AtomicU64,
    names: Mutex<Vec<Arc<Name>>>,
    process: String,
    next_id: AtomicU64,
    acquire: Script,
    release: Script,
    renew: Script,
    runtime: tokio::runtime::Handle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connects to the Redis server at `url` (`redis://host:port/db`), waiting
/// for the first connection (at most 2 s).
///
/// Call it from within a tokio runtime (multi-threaded or not): the
/// connection's background tasks (releases, renewals, the wake-up
/// subscription, the probe of a down server) run there.
///
/// ```no_run
/// # async fn start() -> Result<(), limit_runtime::redis::ConnectError> {
/// let server = limit_runtime::redis::connect("redis://127.0.0.1:6379").await?;
/// server.share("address", limit_runtime::redis::Shared::new());
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Server, ConnectError> {
    let client = Client::open(url).map_err(|e| ConnectError(format!("{url}: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(100));
    let conn = timeout(
        Duration::from_secs(2),
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
    .map_err(|_| ConnectError(format!("{url}: no answer within 2s")))?
    .map_err(|e| ConnectError(format!("{url}: {e}")))?;
    let inner = Arc::new(ServerInner {
        url: url.to_owned(),
        conn,
        down: watch::Sender::new(false),
        probing: AtomicBool::new(false),
        wakers: Mutex::new(HashMap::new()),
        releasing: AtomicU64::new(0),
        names: Mutex::new(Vec::new()),
        process: format!("{:x}.{:x}", std::process::id(), fastrand::u32(..)),
        next_id: AtomicU64::new(0),
        acquire: Script::new(ACQUIRE),
        release: Script::new(RELEASE),
        renew: Script::new(RENEW),
        runtime: tokio::runtime::Handle::current(),
    });
    let weak = Arc::downgrade(&inner);
    inner.runtime.spawn(subscribe(client, weak));
    Ok(Server { inner })
}

impl Server {
    /// Shares the limiter `name` through this server, with `options`: the
    /// limiter with that name (whether it exists yet or is created later by
    /// its first call) takes a lease from the server before each body.
    ///
    /// The limit is the limiter's own `max` (and `rate`): declare it as
    /// usual with `#[limited(name = ...)]` or
    /// [`Limiter::named`](crate::Limiter::named); every process using the
    /// name should declare the same. A name is shared once per process: the
    /// first `share` of a name stands.
    ///
    /// ```no_run
    /// # async fn start() -> Result<(), limit_runtime::redis::ConnectError> {
    /// use limit_runtime::redis::{connect, Shared};
    ///
    /// connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .share("address", Shared::new())
    ///     .share("users", Shared::new().fail_open(8));
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn share(&self, name: &str, options: Shared) -> &Server {
        let key = |part: &str| format!("limit:{{{name}}}:{part}");
        let fallback = options.fail_open.map(|n| Arc::new(Semaphore::new(n)));
        let shared = Arc::new(Name {
            server: self.inner.clone(),
            holders: key("holders"),
            queue: key("queue"),
            tickets: key("tickets"),
            arrivals: key("arrivals"),
            tat: key("tat"),
            options,
            fallback,
            shared_at: std::panic::Location::caller(),
            held: Mutex::new(HashSet::new()),
            max: AtomicU64::new(0),
            rated: AtomicBool::new(false),
        });
        lock(&self.inner.names).push(shared.clone());
        self.inner
            .runtime
            .spawn(renew_leases(Arc::downgrade(&shared)));
        super::connect(name, shared);
        self
    }

    /// Whether the server is down (it did not answer the last operation,
    /// and has not answered a probe since).
    pub fn is_down(&self) -> bool {
        *self.inner.down.borrow()
    }

    /// Waits until every lease given back so far has reached the server (at
    /// most `within`); call it before the process exits, so that the
    /// permits of its last calls are free at once rather than when their
    /// leases expire.
    ///
    /// ```no_run
    /// # async fn job(server: limit_runtime::redis::Server) {
    /// // ... the work ...
    /// server.flush(std::time::Duration::from_secs(1)).await;
    /// # }
    /// ```
    pub async fn flush(&self, within: Duration) {
        let until = Instant::now() + within;
        while self.inner.releasing.load(Ordering::Acquire) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The server's URL, as given to [`connect`].
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Sends `PING` and returns the round trip (for measurements: an
    /// uncontended start takes about one). Gives up after 2 s.
    pub async fn ping(&self) -> Result<Duration, ConnectError> {
        let start = Instant::now();
        let mut conn = self.inner.conn.clone();
        let ping = ::redis::cmd("PING");
        match timeout(
            Duration::from_secs(2),
            ping.query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(ConnectError(format!("{}: {e}", self.inner.url))),
            Err(_) => Err(ConnectError(format!(
                "{}: no answer within 2s",
                self.inner.url
            ))),
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.inner.url)
            .field("down", &self.is_down())
            .finish()
    }
}

impl ServerInner {
    fn next_id(&self) -> Box<str> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n:x}", self.process).into()
    }

    fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    /// Has the lease or ticket `id` given back, in the background (this
    /// runs in `Drop`, perhaps outside the runtime).
    fn give_back(&self, name: &Arc<Name>, id: Box<str>) {
        if self.is_down() {
            // It expires by itself.
            return;
        }
        self.releasing.fetch_add(1, Ordering::AcqRel);
        let name = name.clone();
        self.runtime.spawn(async move {
            if let Err(why) = name.give_back(&id).await {
                name.server.mark_down(&why);
            }
            name.server.releasing.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Puts the server in down mode (if it was not) and starts the probe.
    fn mark_down(self: &Arc<Self>, why: &str) {
        let was_down = self.down.send_replace(true);
        if !was_down {
            #[cfg(feature = "tracing")]
            tracing::warn!(
                target: "limit_runtime::redis",
                server = %self.url,
                "redis server did not answer ({why}); shared limiters fail open or closed as configured"
            );
            #[cfg(not(feature = "tracing"))]
            let _ = why;
        }
        if !self.probing.swap(true, Ordering::AcqRel) {
            self.runtime.spawn(probe(Arc::downgrade(self)));
        }
    }
}

/// One name shared through a server.
struct Name {
    server: Arc<ServerInner>,
    holders: String,
    queue: String,
    tickets: String,
    arrivals: String,
    tat: String,
    options: Shared,
    fallback: Option<Arc<Semaphore>>,
    shared_at: &'static std::panic::Location<'static>,
    /// The ids of the leases this process holds, for renewal.
    held: Mutex<HashSet<Box<str>>>,
    /// The limit last asked with (for the release script).
    max: AtomicU64,
    /// Whether the last caller asked for a rate slot too (then a release
    /// wakes the next waiter instead of handing it the lease).
    rated: AtomicBool,
}

/// What went wrong on the way to the server.
enum Fault {
    Refused(Refused),
    Down(String),
}

impl Backend for Name {
    fn acquire(self: Arc<Self>, request: Request) -> Acquiring {
        Box::pin(async move {
            // Whether this caller waited for the server to come back.
            let mut waited = false;
            loop {
                if self.server.is_down() {
                    if let Some(fallback) = &self.fallback {
                        return fall_back(fallback.clone(), &request)
                            .await
                            .map(|g| Granted {
                                waited: g.waited || waited,
                                ..g
                            });
                    }
                    if request.can_refuse {
                        return Err(self.unavailable());
                    }
                    let mut up = self.server.down.subscribe();
                    let _ = up.wait_for(|down| !*down).await;
                    waited = true;
                    continue;
                }
                match self.acquire_shared(&request).await {
                    Ok(g) => {
                        return Ok(Granted {
                            waited: g.waited || waited,
                            ..g
                        })
                    }
                    Err(Fault::Refused(r)) => return Err(r),
                    Err(Fault::Down(why)) => self.server.mark_down(&why),
                }
            }
        })
    }

    fn mode(&self) -> BackendMode {
        match (self.server.is_down(), self.fallback.is_some()) {
            (false, _) => BackendMode::Shared,
            (true, true) => BackendMode::FailedOpen,
            (true, false) => BackendMode::FailedClosed,
        }
    }
}

/// A lease this process holds; dropping it gives it back.
struct Held {
    name: Arc<Name>,
    id: Box<str>,
}

impl Drop for Held {
    fn drop(&mut self) {
        lock(&self.name.held).remove(&self.id);
        let id = std::mem::take(&mut self.id);
        self.name.server.give_back(&self.name, id);
    }
}

/// A caller of this process waiting in the server's queue, as the
/// subscription sees it.
#[derive(Default)]
struct Waiting {
    notify: Notify,
    /// A release handed the lease over.
    granted: AtomicBool,
}

/// This process's place in the server's queue: registered for wake-ups
/// while it exists, taken out of the queue when dropped before a grant.
struct Ticket<'a> {
    name: &'a Arc<Name>,
    id: &'a str,
    waiting: Arc<Waiting>,
    queued: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        lock(&self.name.server.wakers).remove(self.id);
        if self.queued {
            self.name.server.give_back(self.name, self.id.into());
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Name {
    fn unavailable(&self) -> Refused {
        Refused::Unavailable(
            format!(
                "the shared limit's server {} does not answer, and the name fails closed",
                self.server.url
            ),
            self.shared_at,
        )
    }

    /// Asks the server until it grants a lease, the caller's wait runs out,
    /// or the server fails.
    async fn acquire_shared(self: &Arc<Self>, request: &Request) -> Result<Granted, Fault> {
        let server = &self.server;
        let id = server.next_id();
        let capped = request.max.is_some();
        let max = request.max.unwrap_or(0);
        self.max.store(max as u64, Ordering::Relaxed);
        self.rated.store(request.rate.is_some(), Ordering::Relaxed);
        let (interval, tau) = match request.rate {
            Some(r) => {
                let i = micros(r.interval()).max(1);
                (i, i.saturating_mul(i64::from(r.burst()) - 1))
            }
            None => (0, 0),
        };
        let lease_ms = micros(self.options.lease) / 1000;
        let backoff_cap = (self.options.lease / 4).min(MAX_BACKOFF);
        let mut backoff = FIRST_BACKOFF;
        let mut ticket: Option<Ticket<'_>> = None;
        loop {
            let longest = match request.deadline {
                Some(d) => micros(d.saturating_duration_since(Instant::now())),
                None => -1,
            };
            let mut conn = server.conn.clone();
            let mut invocation = server.acquire.key(&self.holders);
            let call = invocation
                .key(&self.queue)
                .key(&self.tickets)
                .key(&self.arrivals)
                .key(&self.tat)
                .arg(&*id)
                .arg(u8::from(capped))
                .arg(max)
                .arg(lease_ms)
                .arg(lease_ms)
                .arg(interval)
                .arg(tau)
                .arg(longest)
                .arg(u8::from(!request.never_wait))
                .invoke_async::<(i64, i64)>(&mut conn);
            let reply = match timeout(self.options.timeout, call).await {
                Ok(Ok(reply)) => reply,
                failed => {
                    // The script may have run: give back whatever it granted.
                    if capped {
                        server.give_back(self, id.clone());
                    }
                    if let Some(t) = &mut ticket {
                        t.queued = false;
                    }
                    return Err(Fault::Down(match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {:?}", self.options.timeout),
                    }));
                }
            };
            match reply {
                (1, delay) => {
                    if let Some(t) = &mut ticket {
                        t.queued = false;
                    }
                    let queued = ticket.is_some();
                    drop(ticket);
                    let lease = capped.then(|| self.hold(&id));
                    if delay > 0 {
                        // The rate slot is reserved: sleep until it (the
                        // lease is renewed meanwhile, and given back if the
                        // caller is dropped).
                        tokio::time::sleep(Duration::from_micros(delay.unsigned_abs())).await;
                    }
                    return Ok(Granted {
                        lease,
                        waited: queued || delay > 0,
                    });
                }
                (2, _) => {
                    if let Some(t) = &mut ticket {
                        t.queued = false;
                    }
                    return Err(Fault::Refused(Refused::WaitTimeout));
                }
                _ => {}
            }
            if request.never_wait {
                return Err(Fault::Refused(Refused::QueueFull));
            }
            let t = ticket.get_or_insert_with(|| {
                let waiting = Arc::new(Waiting::default());
                lock(&server.wakers).insert(id.clone(), waiting.clone());
                Ticket {
                    name: self,
                    id: &id,
                    waiting,
                    queued: true,
                }
            });
            let mut nap = backoff;
            if let Some(d) = request.deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Fault::Refused(Refused::WaitTimeout));
                }
                nap = nap.min(left);
            }
            if timeout(nap, t.waiting.notify.notified()).await.is_err() {
                backoff = (backoff * 2).min(backoff_cap);
            }
            if t.waiting.granted.load(Ordering::Acquire) {
                t.queued = false;
                drop(ticket);
                return Ok(Granted {
                    lease: Some(self.hold(&id)),
                    waited: true,
                });
            }
            if server.is_down() {
                return Err(Fault::Down("the server went down while waiting".into()));
            }
        }
    }

    /// A lease granted to this process, renewed until dropped.
    fn hold(self: &Arc<Self>, id: &str) -> Lease {
        lock(&self.held).insert(id.into());
        Box::new(Held {
            name: self.clone(),
            id: id.into(),
        })
    }

    /// Gives a lease (or a place in the queue) back.
    async fn give_back(&self, id: &str) -> Result<(), String> {
        let mut conn = self.server.conn.clone();
        let mut invocation = self.server.release.key(&self.holders);
        let call = invocation
            .key(&self.queue)
            .key(&self.tickets)
            .arg(id)
            .arg(self.max.load(Ordering::Relaxed))
            .arg(WAKE_CHANNEL)
            .arg(micros(self.options.lease) / 1000)
            .arg(u8::from(!self.rated.load(Ordering::Relaxed)))
            .invoke_async::<i64>(&mut conn);
        match timeout(self.options.timeout, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.options.timeout)),
        }
    }

    /// Renews every lease this process holds under the name (`again`:
    /// registers them again, after the server was down).
    async fn renew(&self, again: bool) -> Result<(), String> {
        let ids: Vec<Box<str>> = lock(&self.held).iter().cloned().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.server.conn.clone();
        let mut call = self.server.renew.key(&self.holders);
        call.arg(micros(self.options.lease) / 1000)
            .arg(u8::from(again));
        for id in &ids {
            call.arg(&**id);
        }
        match timeout(self.options.timeout, call.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.options.timeout)),
        }
    }
}

/// Fail-open: a permit of the local fallback limit.
async fn fall_back(fallback: Arc<Semaphore>, request: &Request) -> Result<Granted, Refused> {
    if let Ok(permit) = fallback.clone().try_acquire_owned() {
        return Ok(Granted {
            lease: Some(Box::new(permit)),
            waited: false,
        });
    }
    let permit = if request.never_wait {
        return Err(Refused::QueueFull);
    } else if let Some(d) = request.deadline {
        tokio::time::timeout_at(d, fallback.acquire_owned())
            .await
            .map_err(|_| Refused::WaitTimeout)?
            .expect("the fallback semaphore is never closed")
    } else {
        fallback
            .acquire_owned()
            .await
            .expect("the fallback semaphore is never closed")
    };
    Ok(Granted {
        lease: Some(Box::new(permit)),
        waited: true,
    })
}

/// Renews the name's leases every third of the lease time.
async fn renew_leases(name: std::sync::Weak<Name>) {
    let every = match name.upgrade() {
        Some(n) => n.options.lease / 3,
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(name) = name.upgrade() else { return };
        if name.server.is_down() {
            continue;
        }
        if let Err(why) = name.renew(false).await {
            name.server.mark_down(&why);
        }
    }
}

/// Pings a down server until it answers, then registers the leases held
/// here again and puts the names back in shared mode.
async fn probe(server: std::sync::Weak<ServerInner>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(s) = server.upgrade() else { return };
        let mut conn = s.conn.clone();
        let ping_cmd = ::redis::cmd("PING");
        let ping = ping_cmd.query_async::<String>(&mut conn);
        if !matches!(timeout(Duration::from_secs(1), ping).await, Ok(Ok(_))) {
            continue;
        }
        let names: Vec<Arc<Name>> = lock(&s.names).clone();
        let mut renewed = true;
        for name in names {
            renewed &= name.renew(true).await.is_ok();
        }
        if !renewed {
            continue;
        }
        s.probing.store(false, Ordering::Release);
        s.down.send_replace(false);
        #[cfg(feature = "tracing")]
        tracing::info!(
            target: "limit_runtime::redis",
            server = %s.url,
            "redis server answers again; shared limiters are shared again"
        );
        return;
    }
}

/// Keeps one subscription to the wake channel, and wakes the waiters it
/// names.
async fn subscribe(client: Client, server: std::sync::Weak<ServerInner>) {
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(WAKE_CHANNEL).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        };
        let pubsub = match timeout(Duration::from_secs(1), subscribed).await {
            Ok(Ok(p)) => p,
            _ => {
                if server.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(PROBE_EVERY).await;
                continue;
            }
        };
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Some(s) = server.upgrade() else { return };
            let Ok(message) = msg.get_payload::<String>() else {
                continue;
            };
            let (granted, id) = match message.split_at_checked(1) {
                Some(("g", id)) => (true, id),
                Some((_, id)) => (false, id),
                None => continue,
            };
            let waiting = lock(&s.wakers).get(id).cloned();
            if let Some(waiting) = waiting {
                if granted {
                    waiting.granted.store(true, Ordering::Release);
                }
                waiting.notify.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let s = Shared::new();
        assert_eq!(s.lease, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!(s.fail_open, None);
        let s = s.lease(Duration::from_millis(10)).fail_open(3);
        assert_eq!(s.lease, Duration::from_millis(300), "at least 300 ms");
        assert_eq!(s.fail_open, Some(3));
        assert_eq!(s.fail_closed().fail_open, None);
        assert_eq!(
            BackendMode::FailedOpen.to_string(),
            "failed open (local limit)"
        );
    }

    #[tokio::test]
    async fn connecting_to_nothing_fails_in_bounded_time() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("redis://127.0.0.1:{port}/");
        let start = Instant::now();
        let err = connect(&url).await.unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(err.to_string().starts_with(&url), "{err}");
        assert!(connect("http://nope").await.is_err());
    }
}
