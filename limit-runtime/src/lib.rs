#![doc = include_str!("../README.md")]
// Without the `macros` feature the attributes are not re-exported, and the
// links to them in the README and the module docs have nothing to point to:
// the text stays, the links go.
#![cfg_attr(not(feature = "macros"), allow(rustdoc::broken_intra_doc_links))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
pub mod breaker;
pub mod coalesce;
mod error;
mod integrations;
mod limiter;
pub mod retry;
mod shard;
mod timeout;

pub use breaker::{breaker, breakers, Breaker, BreakerConfig, BreakerState, StaticBreaker};
pub use error::{Error, ErrorKind};
#[cfg(feature = "redis")]
pub use limiter::redis;
pub use limiter::{
    limiter, limiters, Acquire, AcquireOptions, AcquireWith, AdaptiveOptions, Limiter,
    LimiterStats, Outcome, Permit, StaticLimiter,
};
pub use limiter::{BackendMode, ParseRateError, Rate};
pub use timeout::StaticTimeout;

#[cfg(feature = "metrics")]
pub use integrations::metrics;
#[cfg(feature = "tower")]
pub use integrations::tower;

/// Limits how many calls run at once, across the whole process.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use limit_runtime::limited;
///
/// const ADDRESS_PARALLELISM: usize = 10;
///
/// // At most 10 bodies of all functions named "address" run at once.
/// #[limited(name = "address", max = 10)]
/// async fn fetch_address(id: u64) -> Result<String, std::io::Error> {
///     Ok(format!("address of {id}"))
/// }
///
/// #[limited(name = "address", max = ADDRESS_PARALLELISM)] // any const expression
/// async fn fetch_addresses(ids: &[u64]) -> usize {
///     ids.len()
/// }
///
/// #[limited(max = 4)] // a limiter of this function's own
/// async fn resize(img: &[u8]) -> Vec<u8> {
///     img.to_vec()
/// }
///
/// assert_eq!(fetch_address(1).await.unwrap(), "address of 1");
/// assert_eq!(fetch_addresses(&[1, 2]).await, 2);
/// assert_eq!(resize(b"png").await, b"png");
/// let address = limit_runtime::limiter("address").unwrap();
/// assert_eq!((address.max(), address.active()), (10, 0));
/// # }
/// ```
///
/// | option | value | per | meaning |
/// |---|---|---|---|
/// | `name` | string literal | — | Every function with this name shares one limiter, in whichever crate it is written. Without it, the function gets a limiter of its own, labelled `module::path::function`. |
/// | `max` | an integer ≥ 1, or a const expression of type `usize` | name | At most `max` bodies run at once under the limiter. Required unless `rate` is given (then concurrency is not capped). |
/// | `rate` | `"N/s"`, `"N/m"`, `"N/h"`, `"N/<duration>"` (`"100/10s"`, `"2/100ms"`) | name | Bodies *start* at most at this rate: in any interval of length `t`, at most `burst + ⌊t × rate⌋` start. Checked at compile time (N ≥ 1, period > 0). |
/// | `burst` | integer ≥ 1, default 1 | name | How many bodies may start at once after a quiet period. The default spaces starts evenly: no burst at start-up. |
/// | `wait` | duration | function | A call that cannot start within this time (waiting for a permit and for the rate together) fails with [`ErrorKind::WaitTimeout`]; its body never runs. |
/// | `queue` | integer ≥ 0 | function | If this many calls already wait on the limiter, a new call fails at once with [`ErrorKind::QueueFull`] (`queue = 0`: never wait). |
/// | `reserve` | integer ≥ 0, < `max` | name | Permits that [batch] work never takes, so an online call finds one free at once. |
/// | `adaptive` | flag | name | The limit adapts to the service (below); `max` is its ceiling (default 1000). |
/// | `min` | integer ≥ 1, default 1 | name | With `adaptive`: the floor. |
/// | `initial` | integer in [`min`, `max`], default 20 (clamped) | name | With `adaptive`: where the limit starts. |
/// | `overload` | path or closure `fn(&E) -> bool` | function | With `adaptive`: the errors that mean "the service is overloaded" (a 503, a 429, a throttling code). They lower the limit; without `overload`, only attempt timeouts (`#[timeout]`) do. |
/// | `crate` | string literal path | — | Where the runtime is, if renamed or re-exported (default `::limit_runtime`). |
///
/// Options marked *name* belong to the limiter: every declaration sharing
/// the name must agree on them. Options marked *function* belong to the
/// declaration they are written on: an online function may wait 50 ms on
/// the same limiter a batch function waits on forever.
///
/// A rate and a cap together: a body starts when it has both a permit and
/// a rate slot, and waiting calls start in arrival order for both:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use limit_runtime::limited;
/// use tokio::time::{Duration, Instant};
///
/// #[limited(name = "doc-github", rate = "5000/h")] // a quota, no concurrency cap
/// async fn list_repos(org: &str) -> usize {
///     org.len()
/// }
///
/// #[limited(name = "doc-users", max = 20, rate = "50/s", burst = 10)] // both
/// async fn get_user(id: u64) -> u64 {
///     id
/// }
///
/// assert_eq!(list_repos("acme").await, 4);
/// let t0 = Instant::now();
/// for id in 0..12 {
///     get_user(id).await;
/// }
/// // 10 at once (the burst), then one every 20 ms.
/// assert_eq!(t0.elapsed(), Duration::from_millis(40));
/// # }
/// ```
///
/// Bounded waiting: `wait` and `queue` make a call fail instead of waiting
/// too long, so the function must return `Result<T, E>` with
/// `E: From<limit_runtime::Error>` (`std::io::Error`, `anyhow::Error` and
/// `Box<dyn Error + Send + Sync>` work as they are). The error names the
/// limiter, what happened and the declaration whose option refused the call:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use limit_runtime::{limited, ErrorKind};
/// use std::time::Duration;
///
/// #[limited(name = "doc-orders", max = 1)] // batch: waits as long as it takes
/// async fn export_order(id: u64) -> std::io::Result<u64> {
///     tokio::time::sleep(Duration::from_secs(1)).await;
///     Ok(id)
/// }
///
/// #[limited(name = "doc-orders", max = 1, wait = "200ms")] // online: gives up after 200 ms
/// async fn show_order(id: u64) -> std::io::Result<u64> {
///     Ok(id)
/// }
///
/// #[limited(name = "doc-orders", max = 1, queue = 0)] // never waits: load shedding
/// async fn prefetch_order(id: u64) -> std::io::Result<u64> {
///     Ok(id)
/// }
///
/// let export = tokio::spawn(export_order(1));
/// tokio::task::yield_now().await; // the export holds the only permit
/// let err = show_order(2).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// assert!(err.to_string().starts_with(
///     "limiter \"doc-orders\": gave up after waiting 200ms for a permit (wait = \"200ms\" at "
/// ));
/// let err = prefetch_order(3).await.unwrap_err();
/// let limit = err.get_ref().unwrap().downcast_ref::<limit_runtime::Error>().unwrap();
/// assert_eq!(limit.kind(), ErrorKind::QueueFull);
/// assert_eq!(export.await.unwrap().unwrap(), 1);
/// # }
/// ```
///
/// With `#[retry]`, a refusal (`QueueFull`, `WaitTimeout`) is never retried:
/// the call ends at once with it. Each attempt waits for its own permit and
/// rate slot and gives both back before the backoff sleep.
///
/// A reserve for online work while a [batch] saturates the
/// limiter:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use limit_runtime::{batch, limited};
/// use std::time::Duration;
///
/// #[limited(name = "doc-search", max = 8, reserve = 2)]
/// async fn search(q: u64) -> u64 {
///     tokio::time::sleep(Duration::from_millis(100)).await;
///     q
/// }
///
/// let job: Vec<_> = (0..100).map(|q| tokio::spawn(batch::scope(search(q)))).collect();
/// tokio::task::yield_now().await;
/// let l = limit_runtime::limiter("doc-search").unwrap();
/// assert_eq!(l.active(), 6); // batch never takes the last 2 permits
/// let t0 = tokio::time::Instant::now();
/// search(7).await; // an online call starts at once
/// assert_eq!(t0.elapsed(), Duration::from_millis(100));
/// # for j in job { j.await.unwrap(); }
/// # }
/// ```
///
/// An adaptive limit: no number to choose. The limiter finds how many calls
/// the service takes at once from what every call tells it: a success is a
/// latency sample, an `overload` error or an attempt timeout is a drop, and
/// any other error is ignored. The limit climbs while calls succeed near the
/// service's unloaded latency and the limit is in use, and falls,
/// multiplicatively, on drops and when latency rises well above the
/// baseline. The algorithm, with its formula and why, is at
/// [`AdaptiveOptions`]; [`Permit::record`] does the same by hand.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use limit_runtime::limited;
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// enum S3Error { SlowDown, NotFound }
///
/// impl S3Error {
///     fn is_throttle(&self) -> bool {
///         matches!(self, S3Error::SlowDown)
///     }
/// }
///
/// #[limited(name = "doc-s3", adaptive, min = 2, max = 256, overload = S3Error::is_throttle)]
/// async fn get_object(key: u64) -> Result<u64, S3Error> {
///     tokio::time::sleep(Duration::from_millis(20)).await; // the service
///     if key == 0 { Err(S3Error::NotFound) } else { Ok(key) }
/// }
///
/// let calls: Vec<_> = (0..2000).map(|k| tokio::spawn(get_object(k))).collect();
/// for c in calls {
///     let _ = c.await.unwrap();
/// }
/// let s3 = limit_runtime::limiter("doc-s3").unwrap();
/// let stats = s3.stats();
/// assert_eq!(stats.baseline, Some(Duration::from_millis(20)));
/// // This service never slows down: the limit only climbed.
/// assert!(s3.limit() > 20 && s3.limit() <= 256);
/// assert_eq!(stats.samples, 1999); // the `NotFound` was no sample
/// # }
/// ```
///
/// Waiters start in first-come, first-served order. A caller dropped while
/// waiting leaves the queue; a body that finishes, fails, panics or is
/// dropped gives its permit back. The name is looked up once per function
/// (in a `static`), so a call costs one uncontended compare-and-swap to
/// enter and one to leave.
///
/// Two declarations of one name with different `max` are a bug: on the
/// first call of the second one, debug builds panic with a message naming
/// the limiter and both declarations (`file:line`); release builds keep the
/// first. A body that calls a function under a limiter its own task already
/// holds can deadlock once the limiter is full: give nested calls their own
/// name.
///
/// Every attribute also works on the methods of an `#[async_trait]` impl
/// or trait (`Send` or `?Send`), however the attributes are ordered.
/// `#[async_trait]` sits on the impl, so it expands first and hands each
/// attribute a plain `fn` returning `Pin<Box<dyn Future>>`; the attribute
/// recognises that form (and the same boxing written by hand,
/// `Box::pin(async move { body })`), builds its pipeline inside the boxed
/// `async move` block and leaves the signature as `#[async_trait]` wrote
/// it. `tests/async_trait.rs` covers every attribute, `&self` and
/// `&mut self`, default methods and `?Send`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use async_trait::async_trait;
/// use limit_runtime::{limited, retry};
///
/// #[async_trait]
/// trait Users {
///     async fn get(&self, id: u64) -> Result<String, std::io::Error>;
/// }
///
/// struct Client;
///
/// #[async_trait]
/// impl Users for Client {
///     #[retry(attempts = 2)]
///     #[limited(name = "doc-async-trait", max = 10)]
///     async fn get(&self, id: u64) -> Result<String, std::io::Error> {
///         Ok(format!("user {id}"))
///     }
/// }
///
/// let users: Box<dyn Users> = Box::new(Client);
/// assert_eq!(users.get(7).await.unwrap(), "user 7");
/// assert_eq!(limit_runtime::limiter("doc-async-trait").unwrap().stats().acquired, 1);
/// # }
/// ```
///
/// The same code without the macro (what `cargo expand` shows, trimmed):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use limit_runtime::{Rate, StaticLimiter};
///
/// async fn fetch_address(id: u64) -> Result<String, std::io::Error> {
///     // `new` records this line, for conflict and error messages.
///     static __LIMITED: StaticLimiter = StaticLimiter::new("address", 10);
///     __LIMITED.run(async move { Ok(format!("address of {id}")) }).await
/// }
///
/// // #[limited(name = "users", max = 20, rate = "50/s", burst = 10, wait = "200ms")]
/// async fn get_user(id: u64) -> Result<u64, std::io::Error> {
///     static __LIMITED: StaticLimiter = StaticLimiter::new("users", 20)
///         .rate(Rate::new(50, Duration::from_secs(1)).with_burst(10))
///         .wait(Duration::from_millis(200));
///     let _permit = match __LIMITED.acquire_declared().await {
///         Ok(permit) => permit,
///         Err(refused) => return Err(refused.into()),
///     };
///     Ok(id)
/// }
/// # assert!(fetch_address(1).await.is_ok());
/// # assert_eq!(get_user(3).await.unwrap(), 3);
/// # }
/// ```
#[cfg(feature = "macros")]
pub use limit_macros::limited;

/// Retries a failing call with exponential backoff and jitter.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use limit_runtime::retry;
///
/// #[derive(Debug)]
/// enum ApiError {
///     Unavailable { retry_after: Option<Duration> },
///     NotFound,
/// }
///
/// impl ApiError {
///     fn is_transient(&self) -> bool {
///         matches!(self, ApiError::Unavailable { .. })
///     }
///     fn retry_after(&self) -> Option<Duration> {
///         match self {
///             ApiError::Unavailable { retry_after } => *retry_after,
///             ApiError::NotFound => None,
///         }
///     }
/// }
///
/// fn log_retry(e: &ApiError, attempt: u32, delay: Duration) {
///     eprintln!("attempt {attempt} failed ({e:?}); retrying in {delay:?}");
/// }
///
/// static CALLS: AtomicU32 = AtomicU32::new(0);
///
/// #[retry(attempts = 5, initial = "200ms", max_delay = "5s", multiplier = 3,
///         jitter = "equal", max_elapsed = "30s",
///         when = ApiError::is_transient,
///         delay_hint = ApiError::retry_after,
///         on_retry = log_retry)]
/// async fn put_object(key: &str, body: Vec<u8>) -> Result<usize, ApiError> {
///     if CALLS.fetch_add(1, Ordering::SeqCst) < 2 {
///         return Err(ApiError::Unavailable { retry_after: None });
///     }
///     Ok(key.len() + body.len())
/// }
///
/// #[retry] // 3 attempts, 100ms, ×2, full jitter, at most 10s apart
/// async fn get(id: u64) -> Result<u64, ApiError> {
///     if id == 0 { Err(ApiError::NotFound) } else { Ok(id) }
/// }
///
/// assert_eq!(put_object("k", vec![1, 2]).await.unwrap(), 3);
/// assert_eq!(CALLS.load(Ordering::SeqCst), 3);
/// assert!(get(0).await.is_err());
/// # }
/// ```
///
/// | option | default | meaning |
/// |---|---|---|
/// | `attempts` | `3` | Total calls of the body, the first included (≥ 1). |
/// | `initial` | `"100ms"` | Base delay before the first retry. |
/// | `multiplier` | `2` | Growth of the base delay per retry (a number ≥ 1). |
/// | `max_delay` | `"10s"` | Cap on any single scheduled delay. |
/// | `jitter` | `"full"` | `"none"`: the base. `"full"`: uniform in `[0, base]`. `"equal"`: `base/2` + uniform in `[0, base/2]`. `"decorrelated"`: uniform in `[initial, 3 × previous delay]`, capped at `max_delay`. |
/// | `max_elapsed` | none | No attempt starts after this much time since the first began; a delay that would end past it is not slept, and the last error is returned at once. |
/// | `when` | every error | `fn(&E) -> bool` (a path or a closure): `false` returns the error at once. |
/// | `delay_hint` | none | `fn(&E) -> Option<Duration>`: `Some(d)` makes the next delay `d` (still bounded by `max_elapsed`), e.g. from a `Retry-After` header. |
/// | `on_retry` | none | `fn(&E, u32, Duration)`, called before each backoff sleep with the error, the 1-based number of the attempt that failed and the delay. |
/// | `policy` | none | Cargo feature `backoff`: an expression giving any `backoff::backoff::Backoff`, used instead of the schedule above (`initial`, `multiplier`, `max_delay` and `jitter` are then rejected; without `attempts`, the policy alone decides when to stop). |
/// | `crate` | `"::limit_runtime"` | Where the runtime is, if renamed or re-exported. |
///
/// Durations are string literals with a unit: `"250ms"`, `"2s"`, `"1.5s"`,
/// `"3m"`, `"1h"` (also `ns` and `us`), checked at compile time. The base
/// delay before retry `n` is `min(max_delay, initial × multiplier^(n−1))`;
/// the arithmetic saturates for any option values.
///
/// The function must return a `Result` (aliases such as `io::Result<T>`
/// work). Each attempt runs the whole body again with fresh clones of the
/// owned arguments, which must be `Clone`; reference arguments and the
/// receiver are reused, so `&mut self` and `&mut` arguments work. The
/// attempt's body owns its clones (an `async move` block, with `&mut`
/// arguments reborrowed), so its future holds their values rather than
/// pointers to them. A destructured argument (`(a, b): (u32, u32)`) is
/// cloned whole and destructured in each attempt (rustdoc then shows it as
/// `arg0`, ...), except beside a `#[coalesce(key = ...)]`, whose expression
/// may name the pattern's bindings: there, and for a receiver taken by
/// value or by `&mut`, the attempt borrows the arguments instead. Sleeps
/// use tokio's timer, so tests under `#[tokio::test(start_paused = true)]`
/// are exact and instant.
/// Dropping the call during a sleep or an attempt cancels it: nothing keeps
/// running. With `#[limited]` on the same function, each attempt takes its
/// own permit and gives it back before the sleep, whatever order the
/// attributes are written in: a call never holds capacity while it sleeps.
///
/// The same code without the macro (what `cargo expand` shows, trimmed):
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use limit_runtime::retry::{self, RetryCounters, RetryPolicy, StaticRetry, Step};
/// use std::time::Duration;
///
/// async fn put_object(key: &str, body: Vec<u8>) -> Result<usize, String> {
///     static __COUNTERS: RetryCounters = RetryCounters::new();
///     static __RETRY: StaticRetry = StaticRetry::new(
///         "demo::put_object",
///         RetryPolicy::new().attempts(5).initial(Duration::from_millis(200)),
///         &__COUNTERS,
///     );
///     let mut call = __RETRY.start(); // counts the call
///     loop {
///         let outcome = {
///             let body = body.clone(); // a fresh clone per attempt
///             async move { Ok::<_, String>(key.len() + body.len()) }.await
///         };
///         let delay = match __RETRY.check(&mut call, outcome, retry::any_error, retry::no_hint, retry::no_hook) {
///             Step::Done(out) => break out,
///             Step::Retry(delay) => delay,
///         };
///         retry::sleep(delay).await;
///     }
/// }
/// # assert_eq!(put_object("k", vec![1]).await, Ok(2));
/// # }
/// ```
#[cfg(feature = "macros")]
pub use limit_macros::retry;

/// Makes concurrent identical calls share one execution (single-flight).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use limit_runtime::coalesce;
///
/// static LOADS: AtomicU32 = AtomicU32::new(0);
///
/// #[coalesce]
/// async fn load_config(tenant: &str) -> Arc<String> {
///     LOADS.fetch_add(1, Ordering::SeqCst);
///     tokio::task::yield_now().await; // the other calls arrive meanwhile
///     Arc::new(format!("config of {tenant}"))
/// }
///
/// struct Profiles;
///
/// impl Profiles {
///     // Key on the user and region only: calls with other trace ids, and
///     // on other `Profiles` instances, share too.
///     #[coalesce(key = (user_id, region.clone()))]
///     async fn fetch(&self, user_id: u64, region: String, trace: u128) -> Result<String, Arc<std::io::Error>> {
///         let _ = trace;
///         Ok(format!("{user_id}@{region}"))
///     }
/// }
///
/// let (a, b, c) = tokio::join!(load_config("acme"), load_config("acme"), load_config("other"));
/// assert!(Arc::ptr_eq(&a, &b));
/// assert_eq!(*c, "config of other");
/// assert_eq!(LOADS.load(Ordering::SeqCst), 2);
/// assert_eq!(Profiles.fetch(1, "eu".into(), 9).await.unwrap(), "1@eu");
/// # }
/// ```
///
/// | option | meaning |
/// |---|---|
/// | `key` | An expression over the arguments giving the key (`Hash + Eq + Send + Sync + 'static`). Default: every argument but the receiver, owned (`&str` becomes `String`, `&T` becomes `T::to_owned()`; a destructured argument whole, so its type must be hashable too, and rustdoc shows it as `arg0`, ...), plus, for methods, the receiver's address (for `self: Arc<Self>` the shared value's), so calls on two instances never share. |
/// | `crate` | Where the runtime is, if renamed or re-exported (default `::limit_runtime`). |
///
/// While a call with key `K` runs, every other call of the same function
/// with an equal key waits and receives a clone of its output: the output
/// must be `Clone` (wrap it in `Arc`). Nothing is kept once the call
/// completes. Different functions never share, and each instantiation of a
/// generic function has its own group: its type and const parameters,
/// `impl Trait` argument types, and the generics of its `impl` block or
/// trait (`Self` included, also without a receiver) all tell
/// instantiations apart. The key is computed before the body starts: a `key`
/// expression that moves an argument leaves the body without it, so clone
/// what the body still needs.
///
/// No task is spawned and no `'static` bound is added. If the caller running
/// the body is dropped, or the body panics, one waiter takes over and runs
/// its own body; the panic reaches only its own caller. Waiters never hang,
/// and the body never runs twice at once for one key, with one exception: a
/// body that calls its own function with an equal key (directly or further
/// down) waits for itself, forever. With the default key that is endless
/// recursion anyway; with a `key = ...` that leaves out an argument the
/// recursion changes, key on that argument too. With `#[retry]` and
/// `#[limited]`, the order is always `coalesce → retry → limited → body`:
/// concurrent identical calls share one whole retried call, so 100
/// concurrent identical calls of a body that fails twice run it 3 times,
/// not 300.
///
/// The same code without the macro is shown in [`coalesce`](mod@coalesce).
#[cfg(feature = "macros")]
pub use limit_macros::coalesce;

/// Bounds how long each attempt, and the whole call, may take.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::time::Duration;
/// use limit_runtime::{timeout, ErrorKind};
///
/// #[timeout("2s")] // each attempt's body
/// async fn get_user(id: u64) -> Result<u64, limit_runtime::Error> {
///     tokio::time::sleep(Duration::from_secs(id)).await;
///     Ok(id)
/// }
///
/// #[timeout(attempt = "2s", total = "10s")] // and the whole call
/// async fn get_order(id: u64) -> std::io::Result<u64> {
///     Ok(id)
/// }
///
/// assert_eq!(get_user(1).await.unwrap(), 1);
/// let err = get_user(5).await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Timeout);
/// assert!(err.to_string().ends_with("timed out after 2s (timeout attempt = \"2s\" at src/lib.rs:8)")
///     || err.to_string().contains("timed out after 2s (timeout attempt = \"2s\" at "));
/// assert_eq!(get_order(3).await.unwrap(), 3);
/// # }
/// ```
///
/// | option | meaning |
/// |---|---|
/// | `attempt` (or the bare duration) | The body of each attempt, once it holds its permit, is dropped if it runs longer; the attempt fails with [`ErrorKind::Timeout`]. Time spent waiting for a permit is bounded by `#[limited(wait = ...)]`, not by this. An attempt timeout is an ordinary failure: `#[retry]`'s `when` sees it, and a circuit breaker counts it. |
/// | `total` | The whole call, queueing, retries and sleeps included; past it the call is dropped wherever it is and returns [`ErrorKind::Timeout`]. |
/// | `crate` | Where the runtime is, if renamed. |
///
/// The function must return `Result<T, E>` with `E: From<limit_runtime::Error>`.
/// With the other attributes the order is always
/// `coalesce → timeout(total) → retry → circuit_breaker → limited → timeout(attempt) → body`.
///
/// The same code without the macro, with [`StaticTimeout`]:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::time::Duration;
/// use limit_runtime::StaticTimeout;
///
/// async fn get_user(id: u64) -> Result<u64, limit_runtime::Error> {
///     static __TIMEOUT: StaticTimeout =
///         StaticTimeout::new("app::get_user").attempt(Duration::from_secs(2));
///     __TIMEOUT.run_attempt(async move { Ok(id) }).await?
/// }
/// # assert_eq!(get_user(3).await.unwrap(), 3);
/// # }
/// ```
#[cfg(feature = "macros")]
pub use limit_macros::timeout;

/// Stops calling a failing service: while open, calls fail at once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use limit_runtime::{circuit_breaker, BreakerState, ErrorKind};
///
/// #[derive(Debug)]
/// enum BillingError {
///     Declined,
///     Down,
///     Limit(limit_runtime::Error),
/// }
///
/// impl From<limit_runtime::Error> for BillingError {
///     fn from(e: limit_runtime::Error) -> Self {
///         BillingError::Limit(e)
///     }
/// }
///
/// impl BillingError {
///     fn is_failure(&self) -> bool {
///         !matches!(self, BillingError::Declined) // a declined card is not an outage
///     }
/// }
///
/// #[circuit_breaker(name = "doc-billing-attr", min_calls = 4, failure_rate = 0.5,
///                   window = "30s", open_for = "10s", half_open = 1,
///                   failure = BillingError::is_failure)]
/// async fn charge(up: bool) -> Result<u32, BillingError> {
///     if up { Ok(1) } else { Err(BillingError::Down) }
/// }
///
/// for _ in 0..4 {
///     assert!(charge(false).await.is_err());
/// }
/// let breaker = limit_runtime::breaker("doc-billing-attr").unwrap();
/// assert_eq!(breaker.state(), BreakerState::Open);
/// match charge(true).await {
///     Err(BillingError::Limit(e)) => assert_eq!(e.kind(), ErrorKind::CircuitOpen),
///     other => panic!("{other:?}"),
/// }
/// tokio::time::sleep(std::time::Duration::from_secs(10)).await;
/// assert_eq!(charge(true).await.unwrap(), 1); // the trial call succeeds
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// # let _ = BillingError::Declined;
/// # }
/// ```
///
/// | option | default | per | meaning |
/// |---|---|---|---|
/// | `name` | the function's label | — | Functions sharing a name share one breaker. |
/// | `failure_rate` | `0.5` | name | Open when, over the last `window`, at least `min_calls` calls finished and at least this share failed. In (0, 1]. |
/// | `min_calls` | `20` | name | |
/// | `window` | `"30s"` | name | A sliding time window (ten buckets). |
/// | `open_for` | `"10s"` | name | How long an open breaker refuses calls before it lets trial calls through. |
/// | `half_open` | `3` | name | Exactly this many trial calls run; the rest are refused. All succeed: closed. One fails: open again. |
/// | `failure` | every `Err` | function | Which errors count as failures (`fn(&E) -> bool`). Attempt timeouts always count; refusals by a limiter never do. |
/// | `crate` | | — | Where the runtime is, if renamed. |
///
/// While open, a call fails at once with [`ErrorKind::CircuitOpen`], whose
/// message says when the breaker tries again and where the attribute is
/// written:
///
/// ```text
/// breaker "billing": circuit open; trying again in 8s (#[circuit_breaker] at src/billing.rs:12)
/// ```
///
/// It takes no permit, joins no queue, its body does not run, and
/// `#[retry]` does not retry it. Under `#[retry]`, every attempt is a call
/// for the breaker. The function must return `Result<T, E>` with
/// `E: From<limit_runtime::Error>`. By hand:
/// [`Breaker`], [`breaker()`], [`breakers()`], [`Breaker::force_open`],
/// [`Breaker::reset`], [`Breaker::stats`].
#[cfg(feature = "macros")]
pub use limit_macros::circuit_breaker;

/// Items the attribute macros expand to. Not a stable API: use the public
/// items of this crate when writing the same code by hand.
#[doc(hidden)]
pub mod __private {
    use core::hash::{Hash, Hasher};

    /// An owned argument of a `#[retry]` function, cloned for each attempt.
    #[diagnostic::on_unimplemented(
        message = "#[retry] gives every attempt a fresh copy of each owned argument, so `{Self}` must be `Clone`",
        label = "this argument is not `Clone`",
        note = "derive or implement `Clone`, or take the argument by reference (`&{Self}`)"
    )]
    pub trait RetryArg {
        fn clone_for_retry(&self) -> Self;
    }

    #[diagnostic::do_not_recommend]
    impl<T: Clone> RetryArg for T {
        #[inline]
        fn clone_for_retry(&self) -> Self {
            self.clone()
        }
    }

    #[inline]
    pub fn clone_arg<T: RetryArg>(arg: &T) -> T {
        arg.clone_for_retry()
    }

    /// One argument of a `#[coalesce]` function's default key.
    #[diagnostic::on_unimplemented(
        message = "#[coalesce] keys calls on their arguments, so `{Self}` must be `Clone + Hash + Eq + Send + Sync + 'static`",
        label = "this argument cannot be part of the key",
        note = "choose the key yourself with #[coalesce(key = ...)], e.g. `key = (id, name.clone())`"
    )]
    pub trait KeyPart: Clone + Hash + Eq + Send + Sync + 'static {}

    #[diagnostic::do_not_recommend]
    impl<T: Clone + Hash + Eq + Send + Sync + 'static> KeyPart for T {}

    /// One part of a default key, checked where the argument is written.
    ///
    /// Its `Hash` and `Eq` go through functions chosen when the part was
    /// made (where `T: KeyPart` was proven), so they hold for every `T`:
    /// the key built from parts satisfies `StaticGroup::run` without a
    /// second check, and an argument that is not hashable gets one error,
    /// at the argument, not another at the attribute.
    pub struct KeyOf<T> {
        value: T,
        eq: fn(&T, &T) -> bool,
        hash: fn(&T, &mut dyn Hasher),
    }

    impl<T> PartialEq for KeyOf<T> {
        #[inline]
        fn eq(&self, other: &Self) -> bool {
            (self.eq)(&self.value, &other.value)
        }
    }

    impl<T> Eq for KeyOf<T> {}

    impl<T> Hash for KeyOf<T> {
        #[inline]
        fn hash<H: Hasher>(&self, state: &mut H) {
            (self.hash)(&self.value, state);
        }
    }

    fn eq_of<T: PartialEq>(a: &T, b: &T) -> bool {
        a == b
    }

    fn hash_of<T: Hash>(value: &T, mut state: &mut dyn Hasher) {
        value.hash(&mut state);
    }

    #[inline]
    fn key_of<T: Hash + Eq>(value: T) -> KeyOf<T> {
        KeyOf {
            value,
            eq: eq_of::<T>,
            hash: hash_of::<T>,
        }
    }

    #[inline]
    pub fn key_part<T: KeyPart>(arg: &T) -> KeyOf<T> {
        key_of(arg.clone())
    }

    /// The owned form of a borrowed argument (`&str` becomes `String`).
    #[inline]
    pub fn key_part_owned<T>(arg: &T) -> KeyOf<T::Owned>
    where
        T: ?Sized + ToOwned,
        T::Owned: KeyPart,
    {
        key_of(arg.to_owned())
    }

    /// The `key = ...` expression, checked where it is written.
    #[inline]
    pub fn key_expr<K: crate::coalesce::CoalesceKey>(key: K) -> KeyOf<K> {
        key_of(key)
    }

    /// The output of a `#[coalesce]` call, checked where the expansion
    /// calls [`shared`] (spanned at the function's return type). Its
    /// `Clone` goes through the function chosen there, so `run` does not
    /// check `Clone` a second time.
    pub struct Shared<T> {
        value: T,
        clone: fn(&T) -> T,
    }

    impl<T> Clone for Shared<T> {
        #[inline]
        fn clone(&self) -> Self {
            Shared {
                value: (self.clone)(&self.value),
                clone: self.clone,
            }
        }
    }

    impl<T> Shared<T> {
        #[inline]
        pub fn into_inner(self) -> T {
            self.value
        }
    }

    #[inline]
    pub fn shared<T: crate::coalesce::SharedOutput>(value: T) -> Shared<T> {
        Shared {
            value,
            clone: T::clone,
        }
    }

    /// Runs a `#[coalesce]` call in the group of the instantiation that
    /// `marker` names: a closure written in the function, whose type is
    /// distinct for every instantiation of it (its own type and const
    /// parameters, `impl Trait` arguments, and those of its `impl` block or
    /// trait, `Self` included), which a macro cannot list from the
    /// function alone.
    #[inline]
    pub fn coalesce_run<M, K, F>(
        group: &'static crate::coalesce::StaticGroup,
        marker: &M,
        key: K,
        fut: F,
    ) -> impl core::future::Future<Output = F::Output>
    where
        K: crate::coalesce::CoalesceKey,
        F: core::future::Future,
        F::Output: crate::coalesce::SharedOutput,
    {
        let _ = marker;
        group.run::<M, K, F>(key, fut)
    }

    /// The address of the receiver: calls on two instances never share.
    #[inline]
    pub fn receiver_id<T: ?Sized>(this: &T) -> usize {
        this as *const T as *const () as usize
    }

    pub use crate::error::Subject;

    /// Declares, per option that can make a call fail with
    /// [`Error`](crate::Error), a trait implemented by every
    /// `Result<T, E>` with `E: From<Error>`, whose message names the option.
    /// The expansion converts a refusal with `Trait::refused(err)` (its `Self`
    /// inferred from the function's return type),
    /// spanned at the function's return type, so a function that cannot
    /// carry the error gets one message there.
    macro_rules! refusal_traits {
        ($($name:ident: $message:literal, $label:literal;)*) => {$(
            #[diagnostic::on_unimplemented(
                message = $message,
                label = $label,
                note = "implement `From<limit_runtime::Error>` for the error type (`impl From<limit_runtime::Error> for MyError {{ fn from(e: limit_runtime::Error) -> Self {{ ... }} }}`), or return `std::io::Result<T>`, `anyhow::Result<T>` or `Result<T, Box<dyn std::error::Error + Send + Sync>>`"
            )]
            pub trait $name: Sized {
                /// The function's outcome for a call that `limit` failed.
                fn refused(err: crate::Error) -> Self;
            }

            #[diagnostic::do_not_recommend]
            impl<T, E: From<crate::Error>> $name for Result<T, E> {
                #[inline]
                fn refused(err: crate::Error) -> Self {
                    Err(E::from(err))
                }
            }
        )*};
    }

    refusal_traits! {
        WaitResult:
            "`wait` can make a call fail with `limit_runtime::Error`, so the function must return `Result<T, E>` where `E: From<limit_runtime::Error>`; `{Self}` is not",
            "this return type cannot carry the error of `wait`";
        QueueResult:
            "`queue` can make a call fail with `limit_runtime::Error`, so the function must return `Result<T, E>` where `E: From<limit_runtime::Error>`; `{Self}` is not",
            "this return type cannot carry the error of `queue`";
        TimeoutResult:
            "#[timeout] can make a call fail with `limit_runtime::Error`, so the function must return `Result<T, E>` where `E: From<limit_runtime::Error>`; `{Self}` is not",
            "this return type cannot carry the error of #[timeout]";
        BreakerResult:
            "#[circuit_breaker] can make a call fail with `limit_runtime::Error`, so the function must return `Result<T, E>` where `E: From<limit_runtime::Error>`; `{Self}` is not",
            "this return type cannot carry the error of #[circuit_breaker]";
    }

    /// The output type `R` of a `#[limited]` function without `wait` or
    /// `queue`. If it is a `Result` whose error can carry a
    /// `limit_runtime::Error`, a name shared through a server that fails
    /// closed refuses the call with `Unavailable` ([`RefuseResult`]); any
    /// other output waits as long as it takes ([`RefuseNever`]). Method
    /// resolution picks: `(&Refuse::<R>::NEW).start(..)`.
    pub struct Refuse<R>(core::marker::PhantomData<fn() -> R>);

    impl<R> Refuse<R> {
        /// The marker.
        pub const NEW: Self = Refuse(core::marker::PhantomData);
    }

    /// [`Refuse`] of a `Result` that can carry the error.
    pub trait RefuseResult<R> {
        /// Waits for a start; a shared name may refuse.
        fn start(&self, limiter: &'static crate::StaticLimiter) -> crate::AcquireWith<'static>;
        /// The function's output for a refusal.
        fn refused(&self, err: crate::Error) -> R;
    }

    impl<T, E: From<crate::Error>> RefuseResult<Result<T, E>> for Refuse<Result<T, E>> {
        #[inline]
        fn start(&self, limiter: &'static crate::StaticLimiter) -> crate::AcquireWith<'static> {
            limiter.acquire_declared()
        }

        #[inline]
        fn refused(&self, err: crate::Error) -> Result<T, E> {
            Err(E::from(err))
        }
    }

    /// [`Refuse`] of any other output.
    pub trait RefuseNever<R> {
        /// Waits for a start, as long as it takes.
        fn start(&self, limiter: &'static crate::StaticLimiter) -> crate::AcquireWith<'static>;
        /// Never called: such a start is never refused.
        fn refused(&self, err: crate::Error) -> R;
    }

    impl<R> RefuseNever<R> for &Refuse<R> {
        #[inline]
        fn start(&self, limiter: &'static crate::StaticLimiter) -> crate::AcquireWith<'static> {
            limiter.acquire_unrefused()
        }

        #[cold]
        fn refused(&self, err: crate::Error) -> R {
            unreachable!("a call that cannot carry an error was refused: {err}")
        }
    }

    /// The default `failure` of `#[circuit_breaker]`: every error counts.
    #[inline]
    pub fn every_error<E: ?Sized>(_: &E) -> bool {
        true
    }

    /// The output of a function with `#[limited(overload = ...)]`.
    #[diagnostic::on_unimplemented(
        message = "`overload` needs the function to return `Result<T, E>`, not `{Self}`",
        label = "not a `Result`",
        note = "`overload = ...` picks the errors that mean \"overloaded\"; return a `Result`, or remove `overload`"
    )]
    pub trait OverloadResult {
        /// The error type `overload` judges.
        type Error;
        /// The error, if the output is one.
        fn error(&self) -> Option<&Self::Error>;
    }

    #[diagnostic::do_not_recommend]
    impl<T, E> OverloadResult for Result<T, E> {
        type Error = E;
        #[inline]
        fn error(&self) -> Option<&E> {
            self.as_ref().err()
        }
    }

    /// An adaptive limiter's signal from an attempt's outcome, with an
    /// `overload` predicate.
    #[inline]
    pub fn adaptive_outcome<R: OverloadResult>(
        outcome: &R,
        overload: impl FnOnce(&R::Error) -> bool,
    ) -> crate::Outcome {
        match outcome.error() {
            None => crate::Outcome::Success,
            Some(e) if overload(e) => crate::Outcome::Overloaded,
            Some(_) => crate::Outcome::Ignored,
        }
    }

    /// An attempt's output, for an adaptive limiter without `overload`:
    /// `(&Observed(&out)).outcome()` is `Success` for `Ok` and `Ignored`
    /// for `Err` when `out` is a `Result`, and `Success` for any other
    /// output (method resolution picks [`ObservedResult`] first).
    pub struct Observed<'a, T>(pub &'a T);

    /// [`Observed`] of a `Result`.
    pub trait ObservedResult {
        /// The signal.
        fn outcome(&self) -> crate::Outcome;
    }

    impl<T, E> ObservedResult for Observed<'_, Result<T, E>> {
        #[inline]
        fn outcome(&self) -> crate::Outcome {
            match self.0 {
                Ok(_) => crate::Outcome::Success,
                Err(_) => crate::Outcome::Ignored,
            }
        }
    }

    /// [`Observed`] of anything else.
    pub trait ObservedAny {
        /// The signal.
        fn outcome(&self) -> crate::Outcome;
    }

    impl<T> ObservedAny for &Observed<'_, T> {
        #[inline]
        fn outcome(&self) -> crate::Outcome {
            crate::Outcome::Success
        }
    }

    /// Whether an attempt's outcome is a failure for the breaker.
    #[inline]
    pub fn breaker_failed<T, E>(outcome: &Result<T, E>, failure: impl FnOnce(&E) -> bool) -> bool {
        match outcome {
            Ok(_) => false,
            Err(e) => failure(e),
        }
    }

    #[cfg(feature = "backoff")]
    pub use crate::retry::backoff_policy;

    #[cfg(not(feature = "backoff"))]
    #[diagnostic::on_unimplemented(
        message = "`policy = ...` needs the `backoff` feature of limit-runtime",
        note = "enable it in Cargo.toml: limit-runtime = {{ version = \"...\", features = [\"backoff\"] }}"
    )]
    pub trait BackoffFeatureDisabled {}

    #[cfg(not(feature = "backoff"))]
    pub fn backoff_policy<B: BackoffFeatureDisabled>(_: B) -> crate::retry::Builtin {
        unreachable!("no type implements BackoffFeatureDisabled")
    }
}
