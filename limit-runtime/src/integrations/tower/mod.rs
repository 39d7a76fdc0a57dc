//! Limiters and circuit breakers as [`tower`](https://docs.rs/tower)
//! layers (cargo feature `tower`).
//!
//! [`LimitedLayer`] puts any [`Service`](tower_service::Service) under a limiter, in the same way
//! `#[limited]` puts a function under one: a layer and a function that
//! name the same limiter share it, with its queue, rate, reserve, classes
//! and stats. A team with a `tower` stack (hyper, tonic, axum, reqwest
//! middleware) and plain `async fn` clients for one service gets one limit
//! for that service, not two.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use limit_runtime::limited;
//! use limit_runtime::tower::LimitedLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! // A function and a service under one limiter, "doc-users".
//! #[limited(name = "doc-users", max = 20)]
//! async fn get_user(id: u64) -> u64 {
//!     id
//! }
//!
//! let users = ServiceBuilder::new()
//!     .layer(LimitedLayer::new("doc-users", 20))
//!     .service(service_fn(|id: u64| async move { Ok::<_, std::io::Error>(id) }));
//!
//! assert_eq!(users.oneshot(7).await.unwrap(), 7);
//! assert_eq!(get_user(7).await, 7);
//! let limiter = limit_runtime::limiter("doc-users").unwrap();
//! assert_eq!(limiter.stats().acquired, 2); // one limiter, two calls
//! # }
//! ```
//!
//! # Back pressure
//!
//! [`poll_ready`](tower_service::Service::poll_ready) waits for a permit (in the
//! limiter's queue, in arrival order, online before [batch](crate::batch)
//! work) and then for the inner service to be ready; the permit is held
//! by the [`ResponseFuture`] until the response is ready (for HTTP: until
//! the response head has arrived; the body is not covered, as with tower's
//! `ConcurrencyLimit`). A permit reserved by `poll_ready` and never used is
//! not lost: dropping the service gives it back, and a clone of the
//! service starts without one (each clone waits for its own).
//!
//! # Errors
//!
//! The service's error is [`BoxError`], as for tower's own middleware that
//! can fail (`Timeout`, `LoadShed`): the inner service's errors pass
//! through boxed, and a call the limiter refuses (with
//! [`wait`](LimitedLayer::wait) or [`queue`](LimitedLayer::queue):
//! [`ErrorKind::WaitTimeout`](crate::ErrorKind::WaitTimeout),
//! [`ErrorKind::QueueFull`](crate::ErrorKind::QueueFull)) fails with a boxed
//! [`limit_runtime::Error`](crate::Error), which names the limiter and the
//! line the layer was built on. A refusal is the error of that one call's
//! [`ResponseFuture`], not of `poll_ready` (which tower reads as "this
//! service is broken"): `poll_ready` says ready, and the call fails at once
//! without reaching the inner service, as with tower's `LoadShed`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! use limit_runtime::tower::LimitedLayer;
//! use limit_runtime::{Error, ErrorKind};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! let slow = service_fn(|ms: u64| async move {
//!     tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
//!     Ok::<_, std::io::Error>(ms)
//! });
//! let layer = LimitedLayer::new("doc-shed", 1).queue(0); // never wait
//! let busy = tokio::spawn(layer.layer(slow).oneshot(1000));
//! tokio::task::yield_now().await; // it holds the only permit
//!
//! let err = layer.layer(slow).oneshot(1).await.unwrap_err();
//! let refused = err.downcast_ref::<Error>().unwrap();
//! assert_eq!(refused.kind(), ErrorKind::QueueFull);
//! assert_eq!(refused.name(), "doc-shed");
//! assert_eq!(busy.await.unwrap().unwrap(), 1000);
//! # }
//! ```
//!
//! | file | part |
//! |---|---|
//! | `limited.rs` | [`LimitedLayer`], [`Limited`] and its [`ResponseFuture`] |
//! | `breaker.rs` | [`CircuitBreakerLayer`], [`CircuitBreaker`] and its [`BreakerFuture`] |

mod breaker;
mod limited;

pub use breaker::{BreakerFuture, CircuitBreaker, CircuitBreakerLayer};
pub use limited::{Limited, LimitedLayer, ResponseFuture};

/// The error of the layers' services: the inner service's error or a
/// refusal ([`limit_runtime::Error`](crate::Error)), boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    /// The inner service's response future, or a refusal in its place:
    /// what both layers' response futures wrap. An enum, so a running
    /// call carries no empty refusal beside its future.
    #[project = OrRefusedProj]
    enum OrRefused<F> {
        Running { #[pin] future: F },
        Refused { error: Option<Box<crate::Error>> },
    }
}

impl<F> OrRefused<F> {
    #[inline]
    fn running(future: F) -> Self {
        OrRefused::Running { future }
    }

    fn refused(refused: Box<crate::Error>) -> Self {
        OrRefused::Refused {
            error: Some(refused),
        }
    }
}

impl<F, T, E> std::future::Future for OrRefused<F>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.project() {
            OrRefusedProj::Running { future } => future.poll(cx).map_err(Into::into),
            OrRefusedProj::Refused { error } => std::task::Poll::Ready(Err(error
                .take()
                .expect("a response future was polled after it completed"))),
        }
    }
}
