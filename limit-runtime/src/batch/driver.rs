//! The job driver: an async function over many items, as batch work.

use std::any::Any;
use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::stream::{self, FuturesUnordered, Stream, StreamExt};
use tokio::time::Instant;

/// A batch job over many items, from [`job`]: at most `concurrency` items
/// in progress, every failure reported, progress through a callback.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use limit_runtime::batch;
///
/// async fn label(customer: u64) -> Result<(), String> {
///     assert!(batch::is_batch()); // every call inside is batch work
///     if customer % 100 == 7 { Err(format!("no address for {customer}")) } else { Ok(()) }
/// }
///
/// let report = batch::job(64)
///     .on_progress(|p| {
///         if p.done() % 500 == 0 {
///             println!("{p}"); // 500/1000 done, 5 failed, 4850.2/s, 0.1s left
///         }
///     })
///     .run(0..1000u64, label)
///     .await;
/// assert_eq!(report.succeeded(), 990);
/// assert_eq!(report.failures().len(), 10);
/// assert_eq!(report.failures()[0], (7, "no address for 7".to_string()));
/// # }
/// ```
///
/// Items that have not started are not futures yet: a job over ten million
/// items holds `concurrency` futures at a time, whatever the iterator. The
/// job never stops at a failure: it runs every item and returns them all in
/// the [`Report`] (like `Promise.allSettled`). Nor at a panic: an item whose
/// call panics is reported in [`Report::panicked`] with the panic's message
/// (which the panic hook has printed already), and the other items go on;
/// build with `panic = "abort"` to stop the process at the first one
/// instead. Dropping the job's future
/// drops every item in progress: their permits go back, nothing keeps
/// running.
///
/// The items run in the job's own task (like
/// `futures::StreamExt::buffer_unordered`), so the function's futures need
/// not be `Send` or `'static`; to use several cores, run several jobs over
/// parts of the input in spawned tasks.
pub struct Job<'a> {
    concurrency: usize,
    total: Option<u64>,
    on_progress: Option<ProgressFn<'a>>,
}

type ProgressFn<'a> = Box<dyn FnMut(&Progress) + Send + 'a>;

/// A job that keeps at most `concurrency` items in progress (0 counts as
/// 1). See [`Job`].
pub fn job<'a>(concurrency: usize) -> Job<'a> {
    Job {
        concurrency: concurrency.max(1),
        total: None,
        on_progress: None,
    }
}

impl<'a> Job<'a> {
    /// How many items there are, for progress (otherwise taken from the
    /// iterator's size hint when it is exact).
    pub fn total(mut self, total: u64) -> Self {
        self.total = Some(total);
        self
    }

    /// Called after every item, with the job's progress so far: a progress
    /// bar is one line.
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + Send + 'a) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Runs `f` over every item as batch work (see [`scope`](super::scope))
    /// and reports how it went. `f` receives a clone of the item; the
    /// original is kept for the report if the call fails.
    pub async fn run<I, T, F, Fut, R, E>(mut self, items: I, f: F) -> Report<T, E>
    where
        I: IntoIterator<Item = T>,
        T: Clone,
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let items = items.into_iter();
        if self.total.is_none() {
            if let (lo, Some(hi)) = items.size_hint() {
                if lo == hi {
                    self.total = u64::try_from(lo).ok();
                }
            }
        }
        self.run_stream(stream::iter(items), f).await
    }

    /// [`run`](Job::run) over a stream of items (a paginated listing, a
    /// file read line by line): the stream is polled only while fewer than
    /// `concurrency` items are in progress, and waiting for it never holds
    /// up the items in progress.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use futures_util::{stream, StreamExt};
    /// use limit_runtime::batch;
    ///
    /// let pages = stream::iter(0..3u32).flat_map(|page| stream::iter(page * 10..page * 10 + 10));
    /// let report = batch::job(8).run_stream(pages, |id| async move { Ok::<_, ()>(id) }).await;
    /// assert_eq!(report.succeeded(), 30);
    /// # }
    /// ```
    pub async fn run_stream<S, T, F, Fut, R, E>(mut self, items: S, mut f: F) -> Report<T, E>
    where
        S: Stream<Item = T>,
        T: Clone,
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let mut items = pin!(items);
        let total = self.total;
        let started = Instant::now();
        let mut report = Report {
            succeeded: 0,
            failures: Vec::new(),
            panicked: Vec::new(),
            elapsed: Duration::ZERO,
        };
        let mut running = FuturesUnordered::new();
        let mut exhausted = false;
        poll_fn(|cx| loop {
            // Start items while there is room and the stream has them.
            while !exhausted && running.len() < self.concurrency {
                match items.as_mut().poll_next(cx) {
                    Poll::Ready(Some(item)) => {
                        // `f` itself runs as batch work too: what it does
                        // before returning its future (an acquire future
                        // built there, say) is part of the job.
                        let call = catch_unwind(AssertUnwindSafe(|| {
                            let _class = super::Enter::set(true);
                            f(Clone::clone(&item))
                        }));
                        running.push(async move {
                            let outcome = match call {
                                Ok(call) => caught(super::scope(call)).await,
                                Err(panic) => Err(panic),
                            };
                            (item, outcome)
                        });
                    }
                    Poll::Ready(None) => exhausted = true,
                    Poll::Pending => break,
                }
            }
            let (item, outcome) = match running.poll_next_unpin(cx) {
                Poll::Ready(Some(finished)) => finished,
                Poll::Ready(None) if exhausted => return Poll::Ready(()),
                // Nothing in progress: waiting for the stream (its waker is
                // registered above).
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            };
            match outcome {
                Ok(Ok(_)) => report.succeeded += 1,
                Ok(Err(e)) => report.failures.push((item, e)),
                Err(panic) => report.panicked.push((item, panic_message(&*panic))),
            }
            if let Some(cb) = &mut self.on_progress {
                let failed = (report.failures.len() + report.panicked.len()) as u64;
                cb(&Progress {
                    done: report.succeeded + failed,
                    failed,
                    total,
                    elapsed: started.elapsed(),
                });
            }
        })
        .await;
        report.elapsed = started.elapsed();
        report
    }
}

/// Runs `call`, turning a panic in one of its polls into `Err` (the future
/// is not polled again).
async fn caught<F: Future>(call: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut call = pin!(call);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(panic) => Poll::Ready(Err(panic)),
        },
    )
    .await
}

/// A panic's message, when it has one (`panic!` with a literal or a format).
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

impl fmt::Debug for Job<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("concurrency", &self.concurrency)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// How far a [`Job`] has got, passed to its progress callback.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    done: u64,
    failed: u64,
    total: Option<u64>,
    elapsed: Duration,
}

impl Progress {
    /// Items finished, failed ones included.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Items that failed (or panicked).
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Items in all, when known.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// Time since the job started.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Items finished per second so far.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }

    /// Estimated time left at the rate so far, when the total is known.
    pub fn eta(&self) -> Option<Duration> {
        let left = self.total?.saturating_sub(self.done);
        let rate = self.rate();
        if left == 0 {
            return Some(Duration::ZERO);
        }
        (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate))
    }
}

impl fmt::Display for Progress {
    /// `500/1000 done, 5 failed, 4850.2/s, 0.1s left`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.total {
            Some(t) => write!(f, "{}/{t} done", self.done)?,
            None => write!(f, "{} done", self.done)?,
        }
        write!(f, ", {} failed, {:.1}/s", self.failed, self.rate())?;
        if let Some(eta) = self.eta() {
            write!(f, ", {:.1}s left", eta.as_secs_f64())?;
        }
        Ok(())
    }
}

/// What a [`Job`] did: how many items succeeded, and every failure (and
/// panic) with its item, in the order they finished.
#[derive(Debug)]
pub struct Report<T, E> {
    succeeded: u64,
    failures: Vec<(T, E)>,
    panicked: Vec<(T, String)>,
    elapsed: Duration,
}

impl<T, E> Report<T, E> {
    /// Items whose call succeeded.
    pub fn succeeded(&self) -> u64 {
        self.succeeded
    }

    /// Every failed item with its error.
    pub fn failures(&self) -> &[(T, E)] {
        &self.failures
    }

    /// The failures, owned.
    pub fn into_failures(self) -> Vec<(T, E)> {
        self.failures
    }

    /// Every item whose call panicked, with the panic's message.
    pub fn panicked(&self) -> &[(T, String)] {
        &self.panicked
    }

    /// Whether every item succeeded.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty() && self.panicked.is_empty()
    }

    /// How long the job took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    #[tokio::test(start_paused = true)]
    async fn never_more_than_n_in_progress_and_every_failure_reported() {
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let progress = Arc::new(Mutex::new(Vec::new()));
        let p2 = progress.clone();
        let report = job(8)
            .on_progress(move |p| p2.lock().unwrap().push(*p))
            .run(0..100u32, |i| {
                let (now, peak, seen) = (now.clone(), peak.clone(), seen.clone());
                async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    assert!(super::super::is_batch());
                    tokio::time::sleep(Duration::from_millis(10 + u64::from(i % 7))).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    seen.lock().unwrap().push(i);
                    if i % 10 == 3 {
                        Err(i * 2)
                    } else {
                        Ok(())
                    }
                }
            })
            .await;
        assert_eq!(peak.load(Ordering::SeqCst), 8);
        assert_eq!(report.succeeded(), 90);
        let mut failed: Vec<(u32, u32)> = report.failures().to_vec();
        failed.sort();
        assert_eq!(
            failed,
            (0..10)
                .map(|k| (k * 10 + 3, (k * 10 + 3) * 2))
                .collect::<Vec<_>>()
        );
        let progress = progress.lock().unwrap();
        assert_eq!(progress.len(), 100);
        assert!(progress.windows(2).all(|w| w[1].done() == w[0].done() + 1));
        let last = progress.last().unwrap();
        assert_eq!(
            (last.done(), last.failed(), last.total()),
            (100, 10, Some(100))
        );
        assert_eq!(last.eta(), Some(Duration::ZERO));
        assert_eq!(seen.lock().unwrap().len(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn items_are_pulled_lazily() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let p = pulled.clone();
        let items = (0..1_000_000u64).inspect(move |_| {
            p.fetch_add(1, Ordering::SeqCst);
        });
        let seen_max = Arc::new(AtomicUsize::new(0));
        let (pulled2, seen2) = (pulled.clone(), seen_max.clone());
        let report = job(4)
            .run(items.take(50), move |_| {
                seen2.fetch_max(pulled2.load(Ordering::SeqCst), Ordering::SeqCst);
                async { Ok::<_, ()>(()) }
            })
            .await;
        assert_eq!(report.succeeded(), 50);
        // When an item starts, at most `concurrency` more were pulled.
        assert!(seen_max.load(Ordering::SeqCst) <= 50);
        assert_eq!(pulled.load(Ordering::SeqCst), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_stream_never_holds_up_items_in_progress() {
        // Items arrive every 100 ms; each takes 250 ms: with 4 in progress,
        // they overlap, and the job ends 250 ms after the last arrives.
        let items = futures_util::stream::unfold(0u32, |i| async move {
            if i == 10 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((i, i + 1))
        });
        let report = job(4)
            .run_stream(items, |_| async {
                tokio::time::sleep(Duration::from_millis(250)).await;
                Ok::<_, ()>(())
            })
            .await;
        assert_eq!(report.succeeded(), 10);
        assert_eq!(report.elapsed(), Duration::from_millis(1250));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_without_a_known_total_and_its_display() {
        let last = Arc::new(Mutex::new(None));
        let l2 = last.clone();
        let items = (0..10u32).filter(|i| i % 2 == 0); // no exact size hint
        job(2)
            .on_progress(move |p| *l2.lock().unwrap() = Some(*p))
            .run(items, |_| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, ()>(())
            })
            .await;
        let p = last.lock().unwrap().unwrap();
        assert_eq!((p.done(), p.total(), p.eta()), (5, None, None));
        assert_eq!(p.elapsed(), Duration::from_secs(3));
        assert_eq!(p.to_string(), "5 done, 0 failed, 1.7/s");
        let with_total = Progress {
            total: Some(10),
            ..p
        };
        assert_eq!(
            with_total.to_string(),
            "5/10 done, 0 failed, 1.7/s, 3.0s left"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_item_is_reported_and_the_others_go_on() {
        let progress = Arc::new(Mutex::new(Vec::new()));
        let p2 = progress.clone();
        let in_progress = Arc::new(AtomicUsize::new(0));
        let report = job(4)
            .on_progress(move |p| p2.lock().unwrap().push((p.done(), p.failed())))
            .run(0..20u32, |i| {
                if i == 5 {
                    panic!("no future for item {i}");
                }
                let in_progress = in_progress.clone();
                async move {
                    in_progress.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    if i == 3 {
                        panic!("item {i} is malformed");
                    }
                    in_progress.fetch_sub(1, Ordering::SeqCst);
                    match i {
                        13 => std::panic::panic_any(13u8),
                        7 => Err(i),
                        _ => Ok(i),
                    }
                }
            })
            .await;
        assert_eq!(report.succeeded(), 16);
        assert_eq!(report.failures(), &[(7, 7)]);
        let mut panicked = report.panicked().to_vec();
        panicked.sort();
        assert_eq!(
            panicked,
            vec![
                (3, "item 3 is malformed".to_owned()),
                (5, "no future for item 5".to_owned()),
                (13, "a panic without a message".to_owned()),
            ]
        );
        assert!(!report.is_success());
        // Item 3 panicked between counting itself in and out, and was not
        // polled again; every other item counted itself out.
        assert_eq!(in_progress.load(Ordering::SeqCst), 1);
        let progress = progress.lock().unwrap();
        assert_eq!(progress.len(), 20);
        assert_eq!(progress.last(), Some(&(20, 4)));
    }
}
