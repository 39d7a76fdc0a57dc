//! [`LimitedLayer`]: a named limiter as a layer.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{BoxError, OrRefused};
use crate::limiter::{AcquireWith, Permit};
use crate::{AcquireOptions, AdaptiveOptions, Error, Limiter, Outcome, Rate, StaticLimiter};

/// A [`Layer`] that puts services under a limiter: the one `#[limited]`
/// functions with the same name use.
///
/// The options mirror `#[limited]`'s. *Name* options
/// ([`max`](LimitedLayer::new), [`rate`](LimitedLayer::rate),
/// [`reserve`](LimitedLayer::reserve)) belong to the limiter: a layer and
/// the functions sharing its name must agree on them, exactly as two
/// functions must (debug builds panic on the first use of a layer that
/// disagrees with the first declaration, naming both). *Call* options
/// ([`wait`](LimitedLayer::wait), [`queue`](LimitedLayer::queue)) belong to
/// the layer: a service may give up after 50 ms on the limiter a batch
/// function waits on forever.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use limit_runtime::tower::LimitedLayer;
/// use limit_runtime::Rate;
///
/// // #[limited(name = "doc-layer-users", max = 20, rate = "50/s", burst = 10, wait = "200ms")]
/// let users = LimitedLayer::new("doc-layer-users", 20)
///     .rate(Rate::per_second(50).with_burst(10))
///     .wait(Duration::from_millis(200));
/// // #[limited(name = "doc-layer-github", rate = "5000/h", queue = 100)]
/// let github = LimitedLayer::uncapped("doc-layer-github")
///     .rate("5000/h".parse().unwrap())
///     .queue(100);
/// assert_eq!(users.limiter().max(), 20);
/// assert_eq!(github.limiter().rate(), Some(Rate::per_hour(5000)));
/// # }
/// ```
///
/// The limiter is looked up (or created) once, on the layer's first
/// [`layer`](Layer::layer) or [`limiter`](LimitedLayer::limiter) call;
/// wrapping a service costs a clone of the layer's handle, not a lookup.
#[derive(Clone)]
pub struct LimitedLayer {
    source: Source,
    options: AcquireOptions,
    at: &'static Location<'static>,
    resolved: OnceLock<&'static Limiter>,
}

#[derive(Clone)]
enum Source {
    Declared {
        name: &'static str,
        /// `usize::MAX`: no concurrency cap.
        max: usize,
        rate: Option<Rate>,
        reserve: usize,
        adaptive: Option<AdaptiveOptions>,
    },
    Handle(Limiter),
}

impl LimitedLayer {
    /// A layer over the limiter `name`, at most `max` calls at once
    /// (`#[limited(name = "...", max = N)]`).
    ///
    /// # Panics
    ///
    /// If `max` is 0; on first use in debug builds, if the limiter was
    /// declared with other *name* options (see the type's docs).
    #[track_caller]
    pub fn new(name: &'static str, max: usize) -> Self {
        assert!(max >= 1, "a limiter's `max` must be at least 1");
        LimitedLayer::declared(name, max)
    }

    /// A layer over the limiter `name` with no concurrency cap: give it a
    /// [`rate`](LimitedLayer::rate) (`#[limited(name = "...", rate = "...")]`).
    #[track_caller]
    pub fn uncapped(name: &'static str) -> Self {
        LimitedLayer::declared(name, usize::MAX)
    }

    #[track_caller]
    fn declared(name: &'static str, max: usize) -> Self {
        LimitedLayer {
            source: Source::Declared {
                name,
                max,
                rate: None,
                reserve: 0,
                adaptive: None,
            },
            options: AcquireOptions::new(),
            at: Location::caller(),
            resolved: OnceLock::new(),
        }
    }

    /// A layer over an existing limiter: a name known only at run time
    /// ([`Limiter::named`]) or a private one ([`Limiter::private`]). Its
    /// *name* options are the handle's own
    /// ([`set_rate`](Limiter::set_rate), [`set_reserve`](Limiter::set_reserve)):
    /// [`rate`](LimitedLayer::rate) and [`reserve`](LimitedLayer::reserve)
    /// do not apply to it.
    ///
    /// The limiter is kept for the rest of the process once a layer has
    /// used it (a service holds it by a plain reference, with no count to
    /// keep per call): build one layer per limiter and clone it, rather
    /// than a private limiter per connection.
    ///
    /// ```
    /// use limit_runtime::tower::LimitedLayer;
    /// use limit_runtime::Limiter;
    ///
    /// let tenant = String::from("doc-tenant-42");
    /// let layer = LimitedLayer::from_limiter(Limiter::named(&tenant, 4));
    /// assert_eq!(layer.limiter().name(), "doc-tenant-42");
    /// ```
    #[track_caller]
    pub fn from_limiter(limiter: Limiter) -> Self {
        LimitedLayer {
            source: Source::Handle(limiter),
            options: AcquireOptions::new(),
            at: Location::caller(),
            resolved: OnceLock::new(),
        }
    }

    /// Calls start at most at this rate, with its burst (a *name* option,
    /// `rate = "...", burst = N`).
    pub fn rate(mut self, rate: Rate) -> Self {
        if let Source::Declared { rate: r, .. } = &mut self.source {
            *r = Some(rate);
        }
        self
    }

    /// Permits that [batch](crate::batch) work never takes (a *name*
    /// option, `reserve = N`).
    pub fn reserve(mut self, reserve: usize) -> Self {
        if let Source::Declared { reserve: r, .. } = &mut self.source {
            *r = reserve;
        }
        self
    }

    /// Makes the limit adaptive, with the layer's `max` as its ceiling (a
    /// *name* option, `#[limited(adaptive, min = .., initial = ..)]`). A
    /// response that is `Ok` is a latency sample; an `Err` tells the
    /// limiter nothing (a timeout layer inside this one, or a service whose
    /// errors mean overload, can be told apart with
    /// [`Permit::record`](crate::Permit::record) by hand).
    pub fn adaptive(mut self, options: AdaptiveOptions) -> Self {
        if let Source::Declared { adaptive: a, .. } = &mut self.source {
            *a = Some(options);
        }
        self
    }

    /// A call that cannot start within `wait` fails with
    /// [`ErrorKind::WaitTimeout`](crate::ErrorKind::WaitTimeout) (a *call*
    /// option, `wait = "..."`).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.options = self.options.wait(wait);
        self
    }

    /// A call that finds `queue` calls already waiting fails at once with
    /// [`ErrorKind::QueueFull`](crate::ErrorKind::QueueFull) (a *call*
    /// option, `queue = N`; 0: never wait).
    pub fn queue(mut self, queue: usize) -> Self {
        self.options = self.options.queue(queue);
        self
    }

    /// The limiter, looked up or created on first use.
    ///
    /// # Panics
    ///
    /// In debug builds, if the limiter was declared with other *name*
    /// options.
    pub fn limiter(&self) -> &'static Limiter {
        self.resolved.get_or_init(|| self.resolve())
    }

    #[cold]
    fn resolve(&self) -> &'static Limiter {
        let limiter = match &self.source {
            Source::Handle(l) => l.clone(),
            &Source::Declared {
                name,
                max,
                rate,
                reserve,
                adaptive,
            } => {
                let mut decl = if max == usize::MAX {
                    StaticLimiter::uncapped(name)
                } else {
                    StaticLimiter::new(name, max)
                };
                if let Some(rate) = rate {
                    decl = decl.rate(rate);
                }
                if let Some(options) = adaptive {
                    decl = decl.adaptive(options);
                }
                let decl = decl
                    .reserve(reserve)
                    .declared_at(self.at.file(), self.at.line());
                decl.limiter().clone()
            }
        };
        forever(limiter)
    }
}

/// A handle to `limiter` that lives as long as the process, so that a
/// service can hold its acquire future and its permit without an
/// allocation per call. Named limiters do anyway (the registry never
/// forgets a name); a private one given to a layer is kept from then on.
/// One handle per limiter, however many layers use it.
fn forever(limiter: Limiter) -> &'static Limiter {
    static HANDLES: Mutex<Vec<&'static Limiter>> = Mutex::new(Vec::new());
    let mut handles = HANDLES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = handles.iter().find(|l| l.same_as(&limiter)) {
        return known;
    }
    let handle: &'static Limiter = Box::leak(Box::new(limiter));
    handles.push(handle);
    handle
}

impl<S> Layer<S> for LimitedLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            limiter: self.limiter(),
            options: self.options,
            at: self.at,
            permit: None,
            pending: Pending::Nothing,
            acquire: None,
        }
    }
}

impl fmt::Debug for LimitedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LimitedLayer");
        match &self.source {
            Source::Declared { name, .. } => d.field("name", name),
            Source::Handle(l) => d.field("limiter", l),
        };
        d.field("options", &self.options)
            .field(
                "declared_at",
                &format_args!("{}:{}", self.at.file(), self.at.line()),
            )
            .finish()
    }
}

/// A service under a limiter; built by [`LimitedLayer`].
pub struct Limited<S> {
    inner: S,
    limiter: &'static Limiter,
    options: AcquireOptions,
    at: &'static Location<'static>,
    /// The permit `poll_ready` reserved for the next call. Apart from
    /// `pending`, so that the uncontended start fills an empty slot and
    /// drops nothing.
    permit: Option<Permit<'static>>,
    pending: Pending,
    /// The acquire future of the latest wait (boxed: most calls never
    /// wait, and the service stays small). Kept once the wait is over and
    /// restarted for the next one: one allocation serves every wait.
    acquire: Option<Box<AcquireWith<'static>>>,
}

/// A call that could not start at once.
enum Pending {
    Nothing,
    /// In the limiter's queue, through `acquire`.
    Waiting,
    /// The limiter refused; the next call fails with this (boxed: the
    /// rare case does not make every service larger).
    Refused(Box<Error>),
}

impl<S> Limited<S> {
    /// The limiter the service is under.
    pub fn limiter(&self) -> &Limiter {
        self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service; a permit reserved by `poll_ready` is given back.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// A clone starts without a permit: a permit reserved by the original's
/// `poll_ready` stays with it.
impl<S: Clone> Clone for Limited<S> {
    fn clone(&self) -> Self {
        Limited {
            inner: self.inner.clone(),
            limiter: self.limiter,
            options: self.options,
            at: self.at,
            permit: None,
            pending: Pending::Nothing,
            acquire: None,
        }
    }
}

impl<S, Request> Service<Request> for Limited<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.permit.is_none() {
            if !matches!(self.pending, Pending::Nothing) {
                return self.poll_ready_slow(cx);
            }
            // The uncontended start, as the acquire future's first poll
            // would make it, without building that future; everything
            // else is out of line.
            match self.limiter.try_acquire() {
                Some(permit) => self.permit = Some(permit),
                None => return self.poll_ready_slow(cx),
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        match self.permit.take() {
            Some(permit) => ResponseFuture {
                inner: OrRefused::running(self.inner.call(request)),
                permit: Some(permit),
            },
            // The refusal comes back as a pointer, not as a whole response
            // future: a future returned through memory here was built on the
            // stack and copied, and the copy stalled on the stores that had
            // just built it (about a third of an uncontended call).
            None => ResponseFuture {
                inner: OrRefused::refused(self.take_refusal()),
                permit: None,
            },
        }
    }
}

impl<S> Limited<S> {
    /// `poll_ready` past the uncontended start: queueing, a refusal, or
    /// the inner service's readiness after a wait.
    #[cold]
    #[inline(never)]
    fn poll_ready_slow<Request>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>
    where
        S: Service<Request>,
        S::Error: Into<BoxError>,
    {
        if self.permit.is_none() {
            let fresh = match self.pending {
                Pending::Nothing => true,
                Pending::Waiting => false,
                Pending::Refused(_) => return Poll::Ready(Ok(())),
            };
            // A fresh wait is reached only just after `poll_ready`'s
            // lock-free start failed; the acquire future's first poll tries
            // it again.
            let acquire = match &mut self.acquire {
                Some(acquire) => {
                    if fresh {
                        acquire.restart();
                    }
                    acquire
                }
                none => none.insert(Box::new(self.limiter.acquire_at(self.options, self.at))),
            };
            match Pin::new(&mut **acquire).poll(cx) {
                Poll::Pending => {
                    self.pending = Pending::Waiting;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(permit)) => {
                    self.permit = Some(permit);
                    self.pending = Pending::Nothing;
                }
                Poll::Ready(Err(refused)) => {
                    self.pending = Pending::Refused(Box::new(refused));
                    return Poll::Ready(Ok(()));
                }
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// `call` without a permit: the refusal `poll_ready` reported.
    #[cold]
    #[inline(never)]
    fn take_refusal(&mut self) -> Box<Error> {
        match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Refused(refused) => refused,
            Pending::Nothing | Pending::Waiting => {
                panic!("Limited::call without poll_ready returning Ready(Ok(())) first")
            }
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Limited<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (&self.permit, &self.pending) {
            (Some(_), _) => "holding a permit",
            (None, Pending::Nothing) => "idle",
            (None, Pending::Waiting) => "waiting",
            (None, Pending::Refused(_)) => "refused",
        };
        f.debug_struct("Limited")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter.name())
            .field("state", &state)
            .finish()
    }
}

pin_project! {
    /// The response future of a [`Limited`] service: the inner service's,
    /// holding the call's permit until it is ready; or a refusal.
    #[must_use = "futures do nothing unless awaited"]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: OrRefused<F>,
        permit: Option<Permit<'static>>,
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        // The call is over: its permit goes back now, not when the future
        // is dropped. An adaptive limit learns from a success; an error
        // says nothing it can tell apart.
        if let Some(permit) = this.permit.as_ref() {
            permit.note(if out.is_ok() {
                Outcome::Success
            } else {
                Outcome::Ignored
            });
        }
        *this.permit = None;
        Poll::Ready(out)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("holds_permit", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::task::Waker;

    /// A service that is always ready and answers at once.
    #[derive(Clone, Debug)]
    struct Echo;

    impl Service<u32> for Echo {
        type Response = u32;
        type Error = Infallible;
        type Future = std::future::Ready<Result<u32, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, n: u32) -> Self::Future {
            std::future::ready(Ok(n))
        }
    }

    fn ready<S: Service<u32>>(s: &mut S) -> Poll<Result<(), S::Error>> {
        s.poll_ready(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_reserved_permit_is_given_back_when_the_service_is_dropped() {
        let layer = LimitedLayer::new("tower-unit-drop", 1);
        let mut a = layer.layer(Echo);
        assert!(ready(&mut a).is_ready());
        assert_eq!(layer.limiter().active(), 1);
        let mut b = layer.layer(Echo);
        assert!(ready(&mut b).is_pending());
        assert_eq!(layer.limiter().waiting(), 1);
        drop(a);
        assert!(ready(&mut b).is_ready()); // handed on to the waiting one
        drop(b);
        assert_eq!(layer.limiter().active(), 0);
        assert_eq!(layer.limiter().waiting(), 0);
    }

    #[test]
    fn a_clone_starts_without_the_originals_permit() {
        let layer = LimitedLayer::new("tower-unit-clone", 1);
        let mut a = layer.layer(Echo);
        assert!(ready(&mut a).is_ready());
        let mut b = a.clone();
        assert!(ready(&mut b).is_pending()); // waits for a permit of its own
        drop(b); // leaves the queue
        assert_eq!(layer.limiter().waiting(), 0);
        assert_eq!(layer.limiter().active(), 1);
        drop(a);
        assert_eq!(layer.limiter().active(), 0);
    }

    #[test]
    fn the_permit_is_held_from_poll_ready_until_the_response() {
        let layer = LimitedLayer::new("tower-unit-call", 1);
        let mut s = layer.layer(Echo);
        assert!(ready(&mut s).is_ready());
        assert!(ready(&mut s).is_ready()); // ready again: still one permit
        assert_eq!(layer.limiter().active(), 1);
        let mut fut = std::pin::pin!(s.call(7));
        assert_eq!(layer.limiter().active(), 1);
        let out = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(out, Poll::Ready(Ok(7))));
        assert_eq!(layer.limiter().active(), 0);
        assert_eq!(layer.limiter().stats().acquired, 1);
    }

    #[test]
    fn the_service_and_its_future_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Limited<Echo>>();
        send_sync::<ResponseFuture<std::future::Ready<Result<u32, Infallible>>>>();
        send_sync::<LimitedLayer>();
    }

    #[test]
    #[should_panic(expected = "without poll_ready")]
    fn call_without_poll_ready_panics() {
        let mut s = LimitedLayer::new("tower-unit-unready", 1).layer(Echo);
        drop(s.call(1));
    }

    #[test]
    fn a_refusal_fails_the_call_not_the_service() {
        let layer = LimitedLayer::new("tower-unit-refused", 1).queue(0);
        let mut holder = layer.layer(Echo);
        assert!(ready(&mut holder).is_ready());
        let mut s = layer.layer(Echo);
        assert!(matches!(ready(&mut s), Poll::Ready(Ok(()))));
        let mut fut = std::pin::pin!(s.call(1));
        let Poll::Ready(Err(e)) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
            panic!("the call was not refused");
        };
        let e = e.downcast_ref::<Error>().expect("a limit_runtime::Error");
        assert_eq!(e.kind(), crate::ErrorKind::QueueFull);
        assert!(e.to_string().contains("queue = 0 at "), "{e}");
        assert!(e.to_string().contains("tower/limited.rs"), "{e}");
        assert_eq!(layer.limiter().stats().rejected_full, 1);
        // The next call waits its turn again.
        drop(holder);
        assert!(ready(&mut s).is_ready());
    }

    /// Calls a ready service and polls the response to completion.
    fn respond(s: &mut Limited<Echo>, n: u32) -> u32 {
        let cx = &mut Context::from_waker(Waker::noop());
        match std::pin::pin!(s.call(n)).poll(cx) {
            Poll::Ready(Ok(n)) => n,
            _ => panic!("no response"),
        }
    }

    #[test]
    fn a_service_that_waits_again_and_again_gets_its_turn_each_time() {
        let layer = LimitedLayer::new("tower-unit-again", 1);
        let (mut holder, mut s) = (layer.layer(Echo), layer.layer(Echo));
        for round in 0..3 {
            assert!(ready(&mut holder).is_ready());
            assert!(ready(&mut s).is_pending());
            assert_eq!(respond(&mut holder, round), round); // hands the permit on
            assert!(ready(&mut s).is_ready());
            assert_eq!(respond(&mut s, round), round);
        }
        let stats = layer.limiter().stats();
        assert_eq!((stats.acquired, stats.waited, stats.active), (6, 3, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_of_one_service_has_its_own_deadline_and_class() {
        use tokio::time::{sleep, Instant};
        use tower::ServiceExt;
        let ms = Duration::from_millis;
        let layer = LimitedLayer::new("tower-unit-rewait", 1).wait(ms(50));
        let mut holder = layer.layer(Echo);
        assert!(ready(&mut holder).is_ready());
        let mut s = layer.layer(Echo);
        // A batch wait that runs out: the next call fails with it.
        let start = Instant::now();
        crate::batch::scope(ServiceExt::<u32>::ready(&mut s))
            .await
            .expect("a refusal fails the call, not the service");
        assert_eq!(start.elapsed(), ms(50));
        let e = s.call(1).await.expect_err("the wait ran out");
        let e = e.downcast_ref::<Error>().expect("a limit_runtime::Error");
        assert_eq!(e.kind(), crate::ErrorKind::WaitTimeout);
        // The next wait, online, counts its 50 ms afresh: it starts when
        // the holder's permit passes on after 30 ms, and its old timer
        // (due at 50 ms from the first wait's start) wakes nothing.
        let start = Instant::now();
        let (waited, ()) = tokio::join!(ServiceExt::<u32>::ready(&mut s), async {
            sleep(ms(30)).await;
            assert_eq!(respond(&mut holder, 0), 0);
        });
        waited.expect("the permit passed on in time");
        assert_eq!(start.elapsed(), ms(30));
        assert_eq!(s.call(2).await.expect("a permit"), 2);
        let stats = layer.limiter().stats();
        assert_eq!((stats.rejected_wait, stats.rejected_batch), (1, 1));
        assert_eq!((stats.waited, stats.waited_batch), (1, 0));
        assert_eq!((stats.wait_total, stats.active), (ms(30), 0));
    }

    #[tokio::test]
    async fn a_service_polled_in_a_batch_scope_waits_as_batch_work() {
        let layer = LimitedLayer::new("tower-unit-batch", 2).reserve(1);
        let (mut a, mut b) = (layer.layer(Echo), layer.layer(Echo));
        crate::batch::scope(async {
            assert!(ready(&mut a).is_ready());
            assert!(ready(&mut b).is_pending()); // the last permit is reserved
        })
        .await;
        assert_eq!(layer.limiter().batch_active(), 1);
        let mut online = layer.layer(Echo);
        assert!(ready(&mut online).is_ready()); // online work takes it at once
    }

    #[test]
    fn an_adaptive_layer_learns_from_its_responses() {
        static DECLARED: StaticLimiter =
            StaticLimiter::new("tower-unit-adaptive", 50).adaptive(AdaptiveOptions::new());
        let layer = LimitedLayer::new("tower-unit-adaptive", 50).adaptive(AdaptiveOptions::new());
        assert!(layer.limiter().same_as(&DECLARED) && DECLARED.is_adaptive());
        let mut s = layer.layer(Echo);
        for n in 0..5 {
            assert!(matches!(ready(&mut s), Poll::Ready(Ok(()))));
            assert_eq!(respond(&mut s, n), n);
        }
        assert_eq!(DECLARED.stats().samples, 5);
    }

    #[test]
    fn layers_and_declarations_of_one_name_share_one_limiter() {
        static DECLARED: StaticLimiter = StaticLimiter::new("tower-unit-shared", 3);
        let layer = LimitedLayer::new("tower-unit-shared", 3);
        assert!(layer.limiter().same_as(&DECLARED));
        let again = LimitedLayer::new("tower-unit-shared", 3);
        assert!(std::ptr::eq(layer.limiter(), again.limiter()));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "declared twice with different options")]
    fn a_layer_that_disagrees_with_the_declaration_panics() {
        let _ = LimitedLayer::new("tower-unit-conflict", 3).limiter();
        let _ = LimitedLayer::new("tower-unit-conflict", 4).limiter();
    }
}
