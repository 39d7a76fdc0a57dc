//! [`CircuitBreakerLayer`]: a named circuit breaker as a layer.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{BoxError, OrRefused};
use crate::breaker::Trial;
use crate::{Breaker, BreakerConfig, Error, ErrorKind};

/// A [`Layer`] that puts services behind a circuit breaker: the one
/// `#[circuit_breaker]` functions with the same name use, with its state
/// and stats.
///
/// Every call is a call for the breaker: while it is open, a call fails at
/// once with a boxed [`ErrorKind::CircuitOpen`] error and never reaches
/// the inner service. A call whose response future fails counts as a
/// failure, except a refusal by a limiter or breaker inside it (a
/// [`LimitedLayer`](super::LimitedLayer) below this one), which is not
/// counted, as with the attributes. A response that is `Ok` counts as a
/// success: for HTTP, turn the statuses that mean failure (5xx) into
/// errors below this layer (tower's `map_result`, `and_then`). Put it
/// outside the limiter, as the attributes compose
/// (`circuit_breaker → limited`):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use limit_runtime::tower::{CircuitBreakerLayer, LimitedLayer};
/// use limit_runtime::{BreakerConfig, BreakerState, ErrorKind};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// let billing = ServiceBuilder::new()
///     .layer(CircuitBreakerLayer::new("doc-tower-billing", BreakerConfig::new().min_calls(4)))
///     .layer(LimitedLayer::new("doc-tower-billing", 8))
///     .service(service_fn(|_: u32| async { Err::<u32, _>(std::io::Error::other("down")) }));
///
/// for _ in 0..4 {
///     assert!(billing.clone().oneshot(1).await.is_err()); // four failures
/// }
/// let breaker = limit_runtime::breaker("doc-tower-billing").unwrap();
/// assert_eq!(breaker.state(), BreakerState::Open);
/// let err = billing.oneshot(1).await.unwrap_err();
/// let refused = err.downcast_ref::<limit_runtime::Error>().unwrap();
/// assert_eq!(refused.kind(), ErrorKind::CircuitOpen);
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    breaker: &'static Breaker,
}

impl CircuitBreakerLayer {
    /// A layer behind the breaker `name`, created with `config` if it does
    /// not exist yet (the first declaration stands, as with
    /// [`Breaker::named`]).
    pub fn new(name: &str, config: BreakerConfig) -> Self {
        CircuitBreakerLayer::from_breaker(Breaker::named(name, config))
    }

    /// A layer behind an existing breaker.
    pub fn from_breaker(breaker: Breaker) -> Self {
        CircuitBreakerLayer {
            breaker: forever(breaker),
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &'static Breaker {
        self.breaker
    }
}

/// A handle to `breaker` that lives as long as the process, so that a
/// response future can hold its trial without an allocation. Breakers
/// already do: the registry never forgets one, and a name is one breaker.
fn forever(breaker: Breaker) -> &'static Breaker {
    static HANDLES: Mutex<Option<HashMap<String, &'static Breaker>>> = Mutex::new(None);
    let mut handles = HANDLES.lock().unwrap_or_else(PoisonError::into_inner);
    handles
        .get_or_insert_with(HashMap::new)
        .entry(breaker.name().to_owned())
        .or_insert_with(|| Box::leak(Box::new(breaker)))
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker {
            inner,
            breaker: self.breaker,
        }
    }
}

impl fmt::Debug for CircuitBreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", &self.breaker.name())
            .finish()
    }
}

/// A service behind a circuit breaker; built by [`CircuitBreakerLayer`].
#[derive(Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    breaker: &'static Breaker,
}

impl<S> CircuitBreaker<S> {
    /// The breaker the service is behind.
    pub fn breaker(&self) -> &Breaker {
        self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Request> Service<Request> for CircuitBreaker<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BreakerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.breaker.admit() {
            Ok(trial) => BreakerFuture {
                inner: OrRefused::running(self.inner.call(request)),
                trial: Some(trial),
            },
            Err(refused) => BreakerFuture {
                inner: OrRefused::refused(Box::new(refused)),
                trial: None,
            },
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker.name())
            .finish()
    }
}

pin_project! {
    /// The response future of a [`CircuitBreaker`] service: the inner
    /// service's, reporting its outcome to the breaker; or a refusal.
    #[must_use = "futures do nothing unless awaited"]
    pub struct BreakerFuture<F> {
        #[pin]
        inner: OrRefused<F>,
        trial: Option<Trial<'static>>,
    }
}

/// Whether `e` is a refusal by a limiter or breaker (not counted).
fn is_refusal(e: &BoxError) -> bool {
    e.downcast_ref::<Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            ErrorKind::QueueFull | ErrorKind::WaitTimeout | ErrorKind::CircuitOpen
        )
    })
}

impl<F, T, E> Future for BreakerFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some(trial) = this.trial.take() {
            match &out {
                Ok(_) => trial.success(),
                Err(e) if is_refusal(e) => drop(trial), // not an outcome
                Err(_) => trial.failure(),
            }
        }
        Poll::Ready(out)
    }
}

impl<F> fmt::Debug for BreakerFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerFuture")
            .field("trial", &self.trial)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tower::LimitedLayer;
    use crate::BreakerState;
    use std::task::Waker;

    /// Answers `Ok(n)` for even `n`, `Err` for odd.
    #[derive(Clone)]
    struct EvenOnly;

    impl Service<u32> for EvenOnly {
        type Response = u32;
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<u32, std::io::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, n: u32) -> Self::Future {
            std::future::ready(if n % 2 == 0 {
                Ok(n)
            } else {
                Err(std::io::Error::other("odd"))
            })
        }
    }

    fn call<S: Service<u32, Error = BoxError>>(s: &mut S, n: u32) -> Result<S::Response, BoxError> {
        let cx = &mut Context::from_waker(Waker::noop());
        assert!(s.poll_ready(cx).is_ready());
        match std::pin::pin!(s.call(n)).poll(cx) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("the call did not finish"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_count_and_an_open_breaker_refuses_without_calling() {
        let config = BreakerConfig::new().min_calls(4);
        let layer = CircuitBreakerLayer::new("tower-unit-breaker", config);
        let mut s = layer.layer(EvenOnly);
        for n in [0, 1, 3, 5] {
            let _ = call(&mut s, n);
        }
        assert_eq!(layer.breaker().state(), BreakerState::Open);
        let err = call(&mut s, 2).unwrap_err(); // even, but refused
        assert_eq!(
            err.downcast_ref::<Error>().unwrap().kind(),
            ErrorKind::CircuitOpen
        );
        let stats = layer.breaker().stats();
        assert_eq!((stats.calls, stats.failures, stats.refused), (4, 3, 1));
        assert!(std::ptr::eq(
            layer.breaker(),
            CircuitBreakerLayer::new("tower-unit-breaker", config).breaker()
        ));
    }

    #[tokio::test]
    async fn a_limiter_refusal_inside_is_not_a_failure() {
        let breaker = CircuitBreakerLayer::new("tower-unit-breaker-limited", BreakerConfig::new());
        let limit = LimitedLayer::new("tower-unit-breaker-limited", 1).queue(0);
        let held = limit.limiter().try_acquire().unwrap();
        let mut s = breaker.layer(limit.layer(EvenOnly));
        let err = call(&mut s, 2).unwrap_err();
        assert_eq!(
            err.downcast_ref::<Error>().unwrap().kind(),
            ErrorKind::QueueFull
        );
        drop(held);
        assert_eq!(call(&mut s, 2).unwrap(), 2);
        let stats = breaker.breaker().stats();
        assert_eq!((stats.calls, stats.failures), (2, 0));
    }
}
