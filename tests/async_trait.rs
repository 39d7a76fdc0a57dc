//! Every attribute on `#[async_trait]` methods: in impls and trait default
//! methods, `Send` and `?Send`, with the attributes in either order, and
//! on the same boxed form written by hand.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use limit_runtime::{circuit_breaker, coalesce, limited, retry, timeout, BreakerState, ErrorKind};
use limit_suite::Gauge;

#[derive(Debug)]
enum ApiError {
    Flaky,
    Limit(limit_runtime::Error),
}

impl From<limit_runtime::Error> for ApiError {
    fn from(e: limit_runtime::Error) -> Self {
        ApiError::Limit(e)
    }
}

#[async_trait]
trait Api: Send + Sync {
    async fn get(&self, id: u64) -> Result<u64, ApiError>;
    async fn bump(&mut self, fail_first: bool) -> Result<u32, ApiError>;
    async fn profile(&self, id: u64) -> Arc<String>;
    async fn ping(&self);

    #[limited(name = "async-trait-default", max = 1)]
    #[retry(attempts = 2, initial = "1ms")]
    async fn default_get(&self, id: u64) -> Result<u64, ApiError> {
        Ok(id + 100)
    }
}

struct Client {
    calls: AtomicU32,
    bumps: u32,
    running: Gauge,
}

impl Client {
    fn new() -> Self {
        Client {
            calls: AtomicU32::new(0),
            bumps: 0,
            running: Gauge::new(),
        }
    }
}

#[async_trait]
impl Api for Client {
    // Written outermost first.
    #[timeout("1s")]
    #[retry(attempts = 3, initial = "1ms")]
    #[circuit_breaker(name = "async-trait-breaker", min_calls = 100)]
    #[limited(name = "async-trait-get", max = 2)]
    async fn get(&self, id: u64) -> Result<u64, ApiError> {
        let _running = self.running.enter();
        tokio::time::sleep(Duration::from_millis(5)).await;
        if id == 0 && self.calls.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err(ApiError::Flaky); // twice, then fine
        }
        Ok(id * 2)
    }

    // Written innermost first, on `&mut self`: each attempt reuses it.
    #[limited(name = "async-trait-bump", max = 1)]
    #[retry(attempts = 2, initial = "1ms")]
    async fn bump(&mut self, fail_first: bool) -> Result<u32, ApiError> {
        self.bumps += 1;
        if fail_first && self.bumps == 1 {
            return Err(ApiError::Flaky);
        }
        Ok(self.bumps)
    }

    #[coalesce]
    async fn profile(&self, id: u64) -> Arc<String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        Arc::new(format!("profile {id}"))
    }

    #[limited(name = "async-trait-ping", max = 1)]
    async fn ping(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn limited_retry_timeout_and_breaker_on_an_impl_method() {
    let concrete = Arc::new(Client::new());
    let client: Arc<dyn Api> = concrete.clone();
    assert_eq!(client.get(0).await.unwrap(), 0); // two failures retried
    let calls: Vec<_> = (1..=10)
        .map(|id| {
            let client = client.clone();
            tokio::spawn(async move { client.get(id).await.unwrap() }) // the future is Send
        })
        .collect();
    for (id, call) in (1..=10).zip(calls) {
        assert_eq!(call.await.unwrap(), id * 2);
    }
    let stats = limit_runtime::limiter("async-trait-get").unwrap().stats();
    assert_eq!(stats.acquired, 13); // 3 attempts, then 10 calls
    assert_eq!(stats.peak_active, 2);
    assert_eq!(concrete.running.peak(), 2); // as the body sees it
    let breaker = limit_runtime::breaker("async-trait-breaker").unwrap();
    assert_eq!(breaker.stats().calls, 13);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test]
async fn retry_on_a_mut_self_method() {
    let mut client = Client::new();
    assert_eq!(client.bump(true).await.unwrap(), 2);
    assert_eq!(client.bump(false).await.unwrap(), 3);
}

#[tokio::test]
async fn coalesce_on_an_impl_method() {
    let client = Client::new();
    let (a, b, c) = tokio::join!(client.profile(7), client.profile(7), client.profile(8));
    assert_eq!(
        (a.as_str(), b.as_str(), c.as_str()),
        ("profile 7", "profile 7", "profile 8")
    );
    assert_eq!(client.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn limited_on_a_method_returning_unit_and_on_a_default_method() {
    let client = Client::new();
    client.ping().await;
    assert_eq!(client.calls.load(Ordering::SeqCst), 1);
    assert_eq!(client.default_get(1).await.unwrap(), 101);
    let l = limit_runtime::limiter("async-trait-default").unwrap();
    assert_eq!(l.stats().acquired, 1);
}

// -- ?Send ------------------------------------------------------------------

#[async_trait(?Send)]
trait Local {
    async fn get(&self, fail: u32) -> Result<u32, ApiError>;

    #[limited(name = "async-trait-local-default", max = 1, queue = 0)]
    async fn default_get(&self) -> Result<u32, ApiError> {
        Ok(1)
    }
}

/// Not `Send`: its futures cannot be either.
struct LocalClient {
    tries: Rc<Cell<u32>>,
}

#[async_trait(?Send)]
impl Local for LocalClient {
    #[retry(attempts = 3, initial = "1ms")]
    #[limited(name = "async-trait-local", max = 1, wait = "1s")]
    async fn get(&self, fail: u32) -> Result<u32, ApiError> {
        let tries = self.tries.clone(); // an Rc held across an await
        tokio::task::yield_now().await;
        tries.set(tries.get() + 1);
        if tries.get() <= fail {
            Err(ApiError::Flaky)
        } else {
            Ok(tries.get())
        }
    }
}

#[tokio::test]
async fn attributes_on_not_send_methods() {
    let client = LocalClient {
        tries: Rc::new(Cell::new(0)),
    };
    assert_eq!(client.get(2).await.unwrap(), 3);
    assert!(matches!(client.get(10).await, Err(ApiError::Flaky)));
    assert_eq!(client.default_get().await.unwrap(), 1);
    let l = limit_runtime::limiter("async-trait-local").unwrap();
    assert_eq!(l.stats().acquired, 6);
}

#[tokio::test]
async fn a_refusal_on_a_not_send_method() {
    let client = LocalClient {
        tries: Rc::new(Cell::new(0)),
    };
    let l = limit_runtime::Limiter::named("async-trait-local-default", 1);
    let held = l.acquire().await;
    let Err(ApiError::Limit(e)) = client.default_get().await else {
        panic!("not refused");
    };
    assert_eq!(e.kind(), ErrorKind::QueueFull);
    drop(held);
}

// -- the boxed form written by hand -----------------------------------------

struct Handwritten;

#[async_trait]
trait Lookup {
    async fn lookup(&self, id: u64) -> u64;
}

impl Lookup for Handwritten {
    #[limited(name = "async-trait-handwritten", max = 1)]
    fn lookup<'a, 'b>(
        &'a self,
        id: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move { id + 1 })
    }
}

#[tokio::test]
async fn attributes_on_the_boxed_form_written_by_hand() {
    assert_eq!(Handwritten.lookup(1).await, 2);
    let l = limit_runtime::limiter("async-trait-handwritten").unwrap();
    assert_eq!(l.stats().acquired, 1);
}

// `#[coalesce]` keys on the receiver's identity whatever the receiver:
// under `#[async_trait]` the receiver has been moved into the box's own
// binding before the key is taken.
#[async_trait]
trait Receivers: Send + Sync {
    async fn by_mut(&mut self, id: u64) -> u64;
    async fn by_arc(self: Arc<Self>, id: u64) -> u64;
}

#[derive(Default)]
struct Counted(AtomicU32);

#[async_trait]
impl Receivers for Counted {
    #[coalesce]
    async fn by_mut(&mut self, id: u64) -> u64 {
        *self.0.get_mut() += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
        id
    }

    #[coalesce]
    async fn by_arc(self: Arc<Self>, id: u64) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        id
    }
}

#[tokio::test(start_paused = true)]
async fn coalesce_keys_on_a_mut_or_arc_receiver_of_an_async_trait_method() {
    let shared = Arc::new(Counted::default());
    let other = Arc::new(Counted::default());
    let (a, b, c) = tokio::join!(
        shared.clone().by_arc(1),
        shared.clone().by_arc(1),
        other.clone().by_arc(1)
    );
    assert_eq!((a, b, c), (1, 1, 1));
    assert_eq!(shared.0.load(Ordering::SeqCst), 1, "one instance: shared");
    assert_eq!(
        other.0.load(Ordering::SeqCst),
        1,
        "another instance: its own run"
    );
    let (mut x, mut y) = (Counted::default(), Counted::default());
    let (a, b) = tokio::join!(x.by_mut(2), y.by_mut(2));
    assert_eq!((a, b), (2, 2));
    assert_eq!((*x.0.get_mut(), *y.0.get_mut()), (1, 1));
}
