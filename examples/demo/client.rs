//! The client: one plain method per endpoint on [`Api`] (what the naive job
//! calls), and the same calls under `limit`'s attributes (what the limited
//! job calls).

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, RETRY_AFTER};
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use limit_runtime::{circuit_breaker, coalesce, limited, retry};

use super::service::{Services, ADDRESSES_CAPACITY, RETRY_AFTER_MS, USERS_CAPACITY};

/// Requests in flight to the user service, from the whole process: its
/// capacity. (A real client would take the provider's documented limit.)
pub const USERS_MAX: usize = USERS_CAPACITY;
/// Requests in flight to the address service, from the whole process.
pub const ADDRESSES_MAX: usize = ADDRESSES_CAPACITY;

/// Why a call failed. `Clone`, so a coalesced call can hand it to everyone
/// who waited for it.
#[derive(Clone, Debug)]
pub enum ApiError {
    /// `503`: overloaded or restarting, with the service's hint of when to
    /// come back.
    Unavailable { retry_after: Option<Duration> },
    /// Any other status that is not a success.
    Status(u16),
    /// No answer: refused or reset connection, timeout, no file descriptor.
    Transport(String),
    /// An answer that does not parse.
    Invalid(String),
    /// Refused by `limit` itself (an open circuit breaker, here).
    Refused(limit_runtime::Error),
}

impl From<limit_runtime::Error> for ApiError {
    fn from(e: limit_runtime::Error) -> Self {
        ApiError::Refused(e)
    }
}

impl ApiError {
    /// Worth another attempt: a 503, a 5xx gateway or server hiccup, a
    /// connection problem. Not a 4xx or a response we cannot read.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unavailable { .. } | ApiError::Transport(_) => true,
            ApiError::Status(code) => matches!(code, 500 | 502 | 504),
            ApiError::Invalid(_) | ApiError::Refused(_) => false,
        }
    }

    /// The service says it is overloaded (a `503`): for an adaptive
    /// limit's `overload`.
    pub fn is_overload(&self) -> bool {
        matches!(self, ApiError::Unavailable { .. })
    }

    /// The service's own delay for the next attempt (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Unavailable { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// A short label, to group failures in a report.
    pub fn kind(&self) -> String {
        match self {
            ApiError::Unavailable { .. } => "503".into(),
            ApiError::Status(code) => code.to_string(),
            ApiError::Transport(_) => "no response".into(),
            ApiError::Invalid(_) => "bad response".into(),
            ApiError::Refused(e) => e.kind().to_string(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unavailable {
                retry_after: Some(d),
            } => write!(f, "503 Service Unavailable (retry after {d:?})"),
            ApiError::Unavailable { retry_after: None } => write!(f, "503 Service Unavailable"),
            ApiError::Status(code) => write!(f, "HTTP status {code}"),
            ApiError::Transport(why) => write!(f, "no response: {why}"),
            ApiError::Invalid(why) => write!(f, "unreadable response: {why}"),
            ApiError::Refused(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ApiError {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub address: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub id: u64,
    /// Percent.
    pub discount: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub id: u64,
    pub country: String,
    pub postcode: String,
}

// What the client saw at the HTTP level, for the report: process-wide
// counters, read as differences before and after a run.
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static SEEN_503: AtomicU64 = AtomicU64::new(0);
static SEEN_OTHER: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the counters: the client's own for HTTP, the runtime's
/// for retries and coalescing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// HTTP requests sent (or attempted: a refused connection counts).
    pub requests: u64,
    /// `503` answers received.
    pub seen_503: u64,
    /// Other failures: `500`s, connections refused or reset, timeouts.
    pub seen_other: u64,
    /// Retries of this module's `#[retry]` functions
    /// (`limit_runtime::retry::stats()`).
    pub retries: u64,
    /// Calls of them that returned an error after their last attempt.
    pub gave_up: u64,
    /// Runs of [`fetch_group`]'s body, each one retried call
    /// (`limit_runtime::coalesce::stats()`).
    pub group_runs: u64,
    /// Calls of [`fetch_group`] that got the result of a run another call
    /// had started.
    pub group_shared: u64,
}

impl Counts {
    pub fn now() -> Counts {
        let mut counts = Counts {
            requests: REQUESTS.load(Ordering::SeqCst),
            seen_503: SEEN_503.load(Ordering::SeqCst),
            seen_other: SEEN_OTHER.load(Ordering::SeqCst),
            ..Counts::default()
        };
        // Named `module::path::function`; a function not called yet is
        // not listed.
        for s in limit_runtime::retry::stats() {
            if s.name.starts_with(concat!(module_path!(), "::")) {
                counts.retries += s.retries;
                counts.gave_up += s.gave_up;
            }
        }
        for s in limit_runtime::coalesce::stats() {
            if s.name == concat!(module_path!(), "::fetch_group") {
                counts.group_runs += s.runs;
                counts.group_shared += s.shared;
            }
        }
        counts
    }

    /// What happened between `before` and `self`.
    pub fn since(self, before: Counts) -> Counts {
        Counts {
            requests: self.requests - before.requests,
            seen_503: self.seen_503 - before.seen_503,
            seen_other: self.seen_other - before.seen_other,
            retries: self.retries - before.retries,
            gave_up: self.gave_up - before.gave_up,
            group_runs: self.group_runs - before.group_runs,
            group_shared: self.group_shared - before.group_shared,
        }
    }

    /// Calls of [`fetch_group`].
    pub fn group_calls(&self) -> u64 {
        self.group_runs + self.group_shared
    }
}

/// Requests in flight from this client to one service, and the most at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

struct Entered<'a>(&'a Gauge);

impl Gauge {
    fn enter(&self) -> Entered<'_> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Entered(self)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An HTTP client for both services. Its methods send exactly one request
/// each: no limit, no retry, no sharing.
pub struct Api {
    /// hyper's pooled HTTP/1 client (what `reqwest` is built on).
    http: Client<HttpConnector, Empty<Bytes>>,
    users: String,
    addresses: String,
    to_users: Gauge,
    to_addresses: Gauge,
}

impl Api {
    pub fn new(users_url: &str, addresses_url: &str) -> Result<Api, ApiError> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        // A plain connector: no proxy from the environment on loopback.
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Api {
            http,
            users: users_url.to_owned(),
            addresses: addresses_url.to_owned(),
            to_users: Gauge::default(),
            to_addresses: Gauge::default(),
        })
    }

    /// The most requests this client had in flight at once to the user
    /// service since it was created, as the client counts them.
    pub fn peak_to_users(&self) -> usize {
        self.to_users.peak.load(Ordering::SeqCst)
    }

    /// The same for the address service.
    pub fn peak_to_addresses(&self) -> usize {
        self.to_addresses.peak.load(Ordering::SeqCst)
    }

    pub fn for_services(services: &Services) -> Result<Api, ApiError> {
        Api::new(services.users.url(), services.addresses.url())
    }

    pub async fn get_user(&self, id: u64) -> Result<User, ApiError> {
        let body = self
            .get(&self.to_users, format!("{}/users/{id}", self.users))
            .await?;
        Ok(User {
            id: number(&body, "id")?,
            name: field(&body, "name")?.to_owned(),
            address: number(&body, "address")?,
        })
    }

    pub async fn get_group(&self, id: u64) -> Result<Group, ApiError> {
        let body = self
            .get(&self.to_users, format!("{}/groups/{id}", self.users))
            .await?;
        Ok(Group {
            id: number(&body, "id")?,
            discount: number(&body, "discount")?,
        })
    }

    pub async fn get_address(&self, id: u64) -> Result<Address, ApiError> {
        let body = self
            .get(
                &self.to_addresses,
                format!("{}/addresses/{id}", self.addresses),
            )
            .await?;
        Ok(Address {
            id: number(&body, "id")?,
            country: field(&body, "country")?.to_owned(),
            postcode: field(&body, "postcode")?.to_owned(),
        })
    }

    async fn get(&self, gauge: &Gauge, url: String) -> Result<String, ApiError> {
        REQUESTS.fetch_add(1, Ordering::SeqCst);
        let _in_flight = gauge.enter();
        let uri: Uri = url
            .parse()
            .map_err(|e| ApiError::Invalid(format!("{url}: {e}")))?;
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let response = self.http.get(uri).await.map_err(|e| chain(&e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| chain(&e))?
                .to_bytes();
            Ok::<_, String>((status, headers, body))
        })
        .await
        .unwrap_or_else(|_| Err(format!("no response within {REQUEST_TIMEOUT:?}")));
        let (status, headers, body) = match outcome {
            Ok(answer) => answer,
            Err(why) => {
                SEEN_OTHER.fetch_add(1, Ordering::SeqCst);
                return Err(ApiError::Transport(why));
            }
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            SEEN_503.fetch_add(1, Ordering::SeqCst);
            let retry_after = retry_after(&headers);
            return Err(ApiError::Unavailable { retry_after });
        }
        if !status.is_success() {
            SEEN_OTHER.fetch_add(1, Ordering::SeqCst);
            return Err(ApiError::Status(status.as_u16()));
        }
        String::from_utf8(body.to_vec()).map_err(|e| {
            SEEN_OTHER.fetch_add(1, Ordering::SeqCst);
            ApiError::Invalid(e.to_string())
        })
    }
}

/// How long a connection may take to open, and a request to be answered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The finer `retry-after-ms` hint if present, else `Retry-After` in
/// seconds. (An HTTP date in `Retry-After` is ignored: the schedule decides.)
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    number(RETRY_AFTER_MS)
        .map(Duration::from_millis)
        .or_else(|| number(RETRY_AFTER.as_str()).map(Duration::from_secs))
}

/// An error and its sources: the client's own message alone is often just
/// "client error (Connect)".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn field<'a>(body: &'a str, key: &str) -> Result<&'a str, ApiError> {
    body.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .ok_or_else(|| ApiError::Invalid(format!("no `{key}` in {body:?}")))
}

fn number(body: &str, key: &str) -> Result<u64, ApiError> {
    let value = field(body, key)?;
    value
        .parse()
        .map_err(|_| ApiError::Invalid(format!("`{key}` is not a number: {value:?}")))
}

// The limited client. Each attribute is one line of policy:
//
// - `#[limited]`: at most USERS_MAX requests in flight to the user service
//   from the whole process, whichever function sends them and however many
//   tasks call them; the same for the address service.
// - `#[retry]`: 503s, 500s and dropped connections heal by themselves, with
//   exponential backoff and jitter, or after the service's `Retry-After`.
//   A call waiting to retry holds no permit.
// - `#[coalesce]`: concurrent calls for one group share one request.

#[retry(attempts = 6, initial = "25ms", max_delay = "1s", max_elapsed = "20s",
        when = ApiError::is_transient, delay_hint = ApiError::retry_after)]
#[limited(name = "users", max = USERS_MAX)]
pub async fn fetch_user(api: &Api, id: u64) -> Result<User, ApiError> {
    api.get_user(id).await
}

/// A group's settings: the same for every customer of the group, and slow
/// to produce. Calls for one group while a request for it is in flight wait
/// for that request instead of sending their own. The key is the group id
/// alone: `api` is how to call, not what to fetch.
#[coalesce(key = id)]
#[retry(attempts = 6, initial = "25ms", max_delay = "1s", max_elapsed = "20s",
        when = ApiError::is_transient, delay_hint = ApiError::retry_after)]
#[limited(name = "users", max = USERS_MAX)]
pub async fn fetch_group(api: &Api, id: u64) -> Result<Arc<Group>, ApiError> {
    api.get_group(id).await.map(Arc::new)
}

#[retry(attempts = 6, initial = "25ms", max_delay = "1s", max_elapsed = "20s",
        when = ApiError::is_transient, delay_hint = ApiError::retry_after)]
#[limited(name = "addresses", max = ADDRESSES_MAX)]
pub async fn fetch_address(api: &Api, id: u64) -> Result<Address, ApiError> {
    api.get_address(id).await
}

/// The address lookup behind a circuit breaker, for the outage run
/// (`--outage`): when half the calls of the last 500 ms fail (at least 20),
/// the breaker opens and calls fail at once for 500 ms; then 3 trial calls
/// test the service.
#[circuit_breaker(
    name = "addresses",
    min_calls = 20,
    failure_rate = 0.5,
    window = "500ms",
    open_for = "500ms",
    half_open = 3
)]
#[retry(attempts = 6, initial = "25ms", max_delay = "1s", max_elapsed = "20s",
        when = ApiError::is_transient, delay_hint = ApiError::retry_after)]
#[limited(name = "addresses", max = ADDRESSES_MAX)]
pub async fn fetch_address_guarded(api: &Api, id: u64) -> Result<Address, ApiError> {
    api.get_address(id).await
}
