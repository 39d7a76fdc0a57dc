//! The adaptive limit: a concurrency limit that follows the service.
//!
//! The algorithm is documented on [`AdaptiveOptions`] (public docs).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::core::Core;

/// How a body under an adaptive limiter ended: what it tells the limiter
/// about the service's load. See [`Permit::record`](crate::Permit::record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The body succeeded: the time it held the permit is a latency sample.
    Success,
    /// The service is overloaded (a 503, a 429, a throttling error), or the
    /// attempt timed out: the limit falls.
    Overloaded,
    /// Any other failure: no signal, and not a latency sample.
    Ignored,
}

/// The options of an adaptive limit (`#[limited(adaptive, min = ..,
/// initial = ..)]`); its ceiling is the limiter's `max`.
///
/// # The signals
///
/// Every call under an adaptive limiter ends with an [`Outcome`]:
///
/// * [`Outcome::Success`]: the body succeeded. The time it held its permit
///   is a *latency sample*.
/// * [`Outcome::Overloaded`]: the service said it is overloaded (an
///   `overload` error: a 503, a 429, a throttling code) or the attempt timed
///   out (`#[timeout]`). A *drop*.
/// * [`Outcome::Ignored`]: any other failure. It says nothing about load,
///   and its latency is not a sample: fast failures would look like a fast
///   service (Netflix concurrency-limits #176).
///
/// # The controller
///
/// The limiter keeps a *baseline*, the service's unloaded latency, and
/// judges the limit in *windows* of `clamp(limit / 2, 16, 64)` outcomes (a
/// window ends early once `max(1, limit / 4)` of them are drops: a drop is
/// a strong signal). Only calls that *started* after the limit last changed
/// judge it: a call that started under the old limit says nothing about the
/// new one, and this is also what keeps one burst of drops from cutting the
/// limit again and again. Latencies count only once one baseline has
/// passed since the change: of the calls that start after a change, the
/// fast ones finish first, so a window made of the first to finish says the
/// service is faster than it is (and the next one, of the slow rest, says
/// it is slower). With a noisy service, that kept the limit below its
/// capacity. At the end of a window, with `m` the median latency of its
/// samples and `r = m / baseline`:
///
/// | window | new limit |
/// |---|---|
/// | a fraction `d` of its outcomes are drops | `limit × clamp(1 − d, 0.5, 0.9)` |
/// | `r > 1.2`: calls queue inside the service | `limit × clamp(1.1 / r, 0.5, 0.95)` |
/// | `r ≤ 1.05`, no drop, and the limit was in use | `limit + max(1, limit / 16)`; `limit × 2` until the first cut |
/// | otherwise | unchanged |
///
/// always within `[min, max]`, and above the limiter's `reserve`: at
/// least `reserve + 1`, so that batch work always has a permit (a limit cut
/// to the reserve would leave a job alone on the limiter waiting for good,
/// with no call to show the service had recovered). *In use* means that
/// for at least half of the window's outcomes, nine tenths of the limit or
/// more was running, or batch work held every permit the reserve leaves
/// it: a limit nobody reaches (too few callers, or a `rate` that holds them
/// back) never climbs. The window is judged by its median, not its mean or a maximum,
/// so a slow tail (a few percent of calls ten times slower, which is the
/// service's nature, not overload) does not move the limit, and neither
/// does noise. Between 1.05 and 1.2 the limit holds: the service is full,
/// with a short queue of its own (a tenth of the limit or so), and latency
/// is near the baseline, so in steady state the median latency stays within
/// 1.2 × the baseline. A cut aims at 1.1, in the middle of that band.
///
/// Timeouts are drops, never samples: a service that stops answering makes
/// every call time out at the same latency, and a controller that took
/// those as samples would see a steady latency and climb (concurrency-limits
/// #137). Here windows of timeouts halve the limit until it reaches `min`.
///
/// # The baseline, and why it is re-measured
///
/// The baseline is the median latency of a *probe*: the limit drops to half
/// of itself (at least `min`), so the service is far from full and the
/// samples show its unloaded latency. The probe measures every call that
/// starts within three times the first sample's latency, and waits for
/// them to finish (six times), widening the span until it has 32 samples:
/// a median of the first calls to *finish* would favour the fast ones. The
/// first probe runs at start-up, at `initial` itself, so the limit starts
/// where `initial` says; the second 5 s later, at half the limit, in case `initial` was
/// already more than the service takes; then one every 30 s. Each interval
/// is jittered by ±25 % (seeded per process and name, so processes sharing
/// a service do not probe together). A window whose median is below
/// 0.8 × the baseline (the service got faster, or the baseline is off)
/// starts a probe at once: one window is too few samples to move the
/// baseline by itself.
///
/// Only probes set the baseline. A controller that let it follow recent
/// latencies would, while the service queues, take the queueing for the
/// service's nature, and the limit and the baseline would drift up together
/// (concurrency-limits #165). When three windows cut the limit for
/// latency alone with no growth in between, the baseline may be stale (the
/// service got slower for good), so a probe runs at once, at half the
/// limit from before those cuts; if it finds the service more than 25 %
/// slower than before, the cuts were the stale baseline's doing and the
/// limit goes back to where it was.
///
/// A probe costs little: half the limit for about six latencies, every
/// 30 s.
///
/// Lowering the limit never interrupts a running body: new starts wait
/// until fewer than the new limit run.
///
/// # Example
///
/// ```
/// use limit_runtime::{AdaptiveOptions, Limiter};
///
/// let s3 = Limiter::adaptive("doc-s3", 256, AdaptiveOptions::new().min(2).initial(16));
/// assert_eq!(s3.limit(), 16); // it starts at `initial`
/// assert_eq!(s3.max(), 256);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AdaptiveOptions {
    min: usize,
    initial: usize,
}

impl AdaptiveOptions {
    /// `initial` when it is not given (clamped into `[min, max]`).
    pub const DEFAULT_INITIAL: usize = 20;
    /// The ceiling (`max`) of `#[limited(adaptive)]` when it is not given.
    pub const DEFAULT_MAX: usize = 1000;

    /// `min = 1`, `initial = 20` (clamped into `[min, max]`).
    pub const fn new() -> Self {
        AdaptiveOptions {
            min: 1,
            initial: Self::DEFAULT_INITIAL,
        }
    }

    /// The floor: the limit never falls below it (at least 1).
    pub const fn min(mut self, min: usize) -> Self {
        self.min = if min == 0 { 1 } else { min };
        self
    }

    /// Where the limit starts (clamped into `[min, max]`).
    pub const fn initial(mut self, initial: usize) -> Self {
        self.initial = initial;
        self
    }

    /// The floor.
    pub const fn get_min(&self) -> usize {
        self.min
    }

    /// Where the limit starts, before clamping.
    pub const fn get_initial(&self) -> usize {
        self.initial
    }
}

impl Default for AdaptiveOptions {
    fn default() -> Self {
        AdaptiveOptions::new()
    }
}

/// The controller's constants (see the module docs).
const TARGET: f64 = 1.1;
const GROW_BELOW: f64 = 1.05;
const TOLERANCE: f64 = 1.2;
const FASTER: f64 = 0.8;
const PROBE_SAMPLES: usize = 32;
const PROBE_EVERY: Duration = Duration::from_secs(30);
const FIRST_PROBE_AFTER: Duration = Duration::from_secs(5);
const STALE_AFTER_CUTS: u32 = 3;
const SLOWER: f64 = 1.25;

/// An adaptive limiter's controller and its published state.
pub(crate) struct Adaptive {
    #[cfg(feature = "tracing")]
    name: Box<str>,
    min: usize,
    ceiling: AtomicUsize,
    epoch: Instant,
    control: Mutex<Control>,
    baseline_ns: AtomicU64,
    latency_ns: AtomicU64,
    limit_min_seen: AtomicUsize,
    limit_max_seen: AtomicUsize,
    samples: AtomicU64,
    drops: AtomicU64,
}

enum Phase {
    /// Measuring the baseline at a low limit; `resume` is the limit to go
    /// back to, `if_slower` the one if the service turns out slower than
    /// the old baseline said (the limit before the cuts a stale baseline
    /// caused).
    Probe {
        resume: usize,
        if_slower: usize,
        /// When the probe began (0: at its first sample's start).
        since: u64,
        /// Calls that start after this are not measured...
        starts_until: u64,
        /// ...and the probe ends with the first outcome after this (0: not
        /// known before the first sample).
        end: u64,
    },
    Normal,
}

#[derive(Default)]
struct Window {
    latencies: Vec<u64>,
    drops: u32,
    saturated: u32,
}

impl Window {
    fn events(&self) -> usize {
        self.latencies.len() + self.drops as usize
    }

    fn clear(&mut self) {
        self.latencies.clear();
        self.drops = 0;
        self.saturated = 0;
    }
}

struct Control {
    /// The limit decided (during a probe, the core runs lower).
    limit: usize,
    phase: Phase,
    /// Nanoseconds since the epoch when the core's limit last changed:
    /// calls that started before it do not judge the limit in force.
    changed_at: u64,
    window: Window,
    baseline: Option<u64>,
    slow_start: bool,
    latency_cuts: u32,
    /// The limit before the current run of latency cuts.
    cut_from: usize,
    next_probe: u64,
    rng: u64,
}

fn window_size(limit: usize) -> usize {
    (limit / 2).clamp(16, 64)
}

fn probe_limit(limit: usize, min: usize) -> usize {
    limit.div_ceil(2).max(min).min(limit.max(min))
}

fn median(v: &mut [u64]) -> u64 {
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}

fn scale(limit: usize, factor: f64) -> usize {
    // Truncation is the point: a cut always lowers by at least one.
    let scaled = (limit as f64 * factor) as usize;
    scaled.min(limit.saturating_sub(1))
}

impl Adaptive {
    pub(crate) fn new(name: &str, options: AdaptiveOptions, max: usize) -> (Adaptive, usize) {
        let max = max.max(1);
        let min = options.min.clamp(1, max);
        let initial = options.initial.clamp(min, max);
        // The start-up probe runs at `initial` (see the docs).
        let probe = initial;
        // Seeded per process and name: processes do not probe together.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
        for b in name.bytes() {
            seed = (seed ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let adaptive = Adaptive {
            #[cfg(feature = "tracing")]
            name: name.into(),
            min,
            ceiling: AtomicUsize::new(max),
            epoch: Instant::now(),
            control: Mutex::new(Control {
                limit: initial,
                phase: Phase::Probe {
                    resume: initial,
                    if_slower: initial,
                    since: 0,
                    starts_until: 0,
                    end: 0,
                },
                changed_at: 0,
                window: Window::default(),
                baseline: None,
                slow_start: true,
                latency_cuts: 0,
                cut_from: initial,
                next_probe: u64::MAX,
                rng: seed | 1,
            }),
            baseline_ns: AtomicU64::new(0),
            latency_ns: AtomicU64::new(0),
            limit_min_seen: AtomicUsize::new(probe),
            limit_max_seen: AtomicUsize::new(probe),
            samples: AtomicU64::new(0),
            drops: AtomicU64::new(0),
        };
        (adaptive, probe)
    }

    /// Now, in nanoseconds since the controller was made (never 0: 0 means
    /// "not timed" in a permit).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        let ns = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos();
        u64::try_from(ns).unwrap_or(u64::MAX).max(1)
    }

    pub(crate) fn ceiling(&self) -> usize {
        self.ceiling.load(Ordering::Relaxed)
    }

    /// The lowest limit the controller sets: `min`, and above the reserve.
    /// A limit at or below the reserve would leave batch work no permit,
    /// and then no call to learn from: a job alone on the limiter would
    /// wait for good after an overload cut the limit that far.
    pub(crate) fn floor(&self, core: &Core) -> usize {
        let ceiling = self.ceiling().max(self.min);
        self.min.max(core.reserve().saturating_add(1)).min(ceiling)
    }

    /// Lifts the limit to the [`floor`](Adaptive::floor) if it is below
    /// (the reserve was raised).
    pub(crate) fn lift_to_floor(&self, core: &Core) {
        let floor = self.floor(core);
        let run = {
            let mut c = self.lock();
            if c.limit >= floor && core.max() >= floor {
                return;
            }
            c.limit = c.limit.max(floor);
            core.max().max(floor)
        };
        self.apply(core, run);
    }

    pub(crate) fn baseline(&self) -> Option<Duration> {
        let ns = self.baseline_ns.load(Ordering::Relaxed);
        (ns != 0).then(|| Duration::from_nanos(ns))
    }

    pub(crate) fn latency(&self) -> Option<Duration> {
        let ns = self.latency_ns.load(Ordering::Relaxed);
        (ns != 0).then(|| Duration::from_nanos(ns))
    }

    pub(crate) fn limit_seen(&self) -> (usize, usize) {
        (
            self.limit_min_seen.load(Ordering::Relaxed),
            self.limit_max_seen.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    pub(crate) fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Control> {
        // The controller is consistent at every point a panic could start.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new ceiling (`Limiter::set_max`); returns the limit to run now.
    pub(crate) fn set_ceiling(&self, max: usize, core: &Core) {
        let max = max.max(self.min);
        self.ceiling.store(max, Ordering::Relaxed);
        let run = {
            let mut c = self.lock();
            c.limit = c.limit.min(max);
            if let Phase::Probe {
                resume, if_slower, ..
            } = &mut c.phase
            {
                *resume = (*resume).min(max);
                *if_slower = (*if_slower).min(max);
            }
            core.max().min(max)
        };
        self.apply(core, run);
    }

    /// One body's outcome. `started` is when it got its permit (see
    /// [`now`](Adaptive::now)); `saturated` whether, as it ended, the limit
    /// was nearly all in use.
    pub(crate) fn record(&self, core: &Core, started: u64, outcome: Outcome, saturated: bool) {
        if outcome == Outcome::Ignored {
            return;
        }
        let now = self.now();
        let floor = self.floor(core);
        match outcome {
            Outcome::Success => self.samples.fetch_add(1, Ordering::Relaxed),
            _ => self.drops.fetch_add(1, Ordering::Relaxed),
        };
        let decision = {
            let mut c = self.lock();
            // Started before (or at the very moment of) the last change:
            // it says nothing about the limit in force.
            if started <= c.changed_at {
                return;
            }
            let latency = now.saturating_sub(started);
            self.on_event(&mut c, now, latency, outcome, saturated, floor)
        };
        if let Some(limit) = decision {
            self.apply(core, limit);
        }
    }

    fn apply(&self, core: &Core, limit: usize) {
        if core.max() != limit {
            #[cfg(feature = "tracing")]
            tracing::debug!(
                target: "limit_runtime::adaptive",
                limiter = &*self.name,
                from = core.max(),
                to = limit,
                baseline = ?self.baseline(),
                latency = ?self.latency(),
                "adaptive limit changed"
            );
            core.set_max(limit);
        }
        self.limit_min_seen.fetch_min(limit, Ordering::Relaxed);
        self.limit_max_seen.fetch_max(limit, Ordering::Relaxed);
    }

    fn on_event(
        &self,
        c: &mut Control,
        now: u64,
        latency: u64,
        outcome: Outcome,
        saturated: bool,
        floor: usize,
    ) -> Option<usize> {
        let ceiling = self.ceiling();
        if let Phase::Probe {
            resume,
            if_slower,
            ref mut since,
            ref mut starts_until,
            ref mut end,
        } = c.phase
        {
            if outcome == Outcome::Overloaded {
                // Overloaded even at half the limit: no baseline to be had
                // now; back off and measure later.
                let limit = scale(resume, 0.5).max(floor);
                return self.end_probe(c, now, limit);
            }
            let started = now.saturating_sub(latency);
            if *end == 0 {
                // The first sample sets the probe's span: calls that start
                // within three of its latencies are measured, and the probe
                // waits six for them to finish, so slow calls are not left
                // out (the first calls to finish are the fast ones).
                if *since == 0 {
                    *since = started;
                }
                let d = now.saturating_sub(*since).max(1);
                *starts_until = since.saturating_add(3 * d);
                *end = since.saturating_add(6 * d);
            }
            let (since, starts_until, end) = (*since, starts_until, end);
            if started <= *starts_until {
                c.window.latencies.push(latency);
            }
            if now < *end {
                return None;
            }
            if c.window.latencies.len() < PROBE_SAMPLES {
                // Too few calls started in the span: widen it.
                let d = ((*end - since) / 6).max(1);
                *starts_until = starts_until.saturating_add(3 * d);
                *end = end.saturating_add(3 * d);
                return None;
            }
            let measured = median(&mut c.window.latencies).max(1);
            let mut limit = resume;
            if let Some(old) = c.baseline {
                if measured as f64 > old as f64 * SLOWER {
                    // The service is slower for good: the cuts were the
                    // stale baseline's doing.
                    limit = if_slower;
                }
            }
            c.baseline = Some(measured);
            self.baseline_ns.store(measured, Ordering::Relaxed);
            return self.end_probe(c, now, limit.min(ceiling));
        }

        // Of the calls that started after a change, the fast ones finish
        // first: a window that began at the change would judge the limit
        // by its fastest calls and the next one by the slow rest. Latencies
        // count from one baseline after the change on, when calls of every
        // usual latency have had time to finish (a drop is judged at once).
        if outcome == Outcome::Success && now < c.changed_at.saturating_add(c.baseline.unwrap_or(0))
        {
            return None;
        }
        let w = &mut c.window;
        match outcome {
            Outcome::Success => w.latencies.push(latency),
            _ => w.drops += 1,
        }
        w.saturated += u32::from(saturated);
        // A drop is a strong signal: a quarter of the limit's worth ends
        // the window early.
        let dropped = w.drops as usize >= (c.limit / 4).max(1);
        if w.events() < window_size(c.limit) && !dropped {
            return None;
        }

        let limit = c.limit;
        let events = w.events() as f64;
        let drops = f64::from(w.drops);
        let in_use = f64::from(w.saturated) * 2.0 >= events;
        let mut factor = 1.0_f64;
        let mut for_latency = false;
        let mut grow = false;
        let mut faster = false;
        if w.drops > 0 {
            factor = (1.0 - drops / events).clamp(0.5, 0.9);
        }
        if !w.latencies.is_empty() {
            let m = median(&mut w.latencies).max(1);
            self.latency_ns.store(m, Ordering::Relaxed);
            let baseline = c.baseline.unwrap_or(m);
            // Much faster than the baseline: the service got faster, or
            // the baseline is off. A probe tells (one window is too few
            // samples to move the baseline by itself).
            faster = (m as f64) < baseline as f64 * FASTER;
            let r = m as f64 / baseline as f64;
            if r > TOLERANCE {
                let f = (TARGET / r).clamp(0.5, 0.95);
                if f < factor {
                    factor = f;
                    for_latency = w.drops == 0;
                }
            } else if w.drops == 0 && r <= GROW_BELOW && in_use {
                grow = true;
            }
        }
        w.clear();

        let mut next = limit;
        if factor < 1.0 {
            next = scale(limit, factor);
            c.slow_start = false;
            if for_latency {
                if c.latency_cuts == 0 {
                    c.cut_from = limit;
                }
                c.latency_cuts += 1;
            } else {
                c.latency_cuts = 0;
            }
        } else if grow {
            // Cuts since the last growth count towards a stale baseline;
            // windows that hold do not reset them.
            c.latency_cuts = 0;
            next = if c.slow_start {
                limit.saturating_mul(2)
            } else {
                limit + (limit / 16).max(1)
            };
        }
        next = next.clamp(floor, ceiling.max(floor));
        c.limit = next;

        let stale = c.latency_cuts >= STALE_AFTER_CUTS;
        if now >= c.next_probe || stale || faster {
            let if_slower = if stale { c.cut_from.max(next) } else { next };
            c.latency_cuts = 0;
            c.phase = Phase::Probe {
                resume: next,
                if_slower,
                since: now,
                starts_until: 0,
                end: 0,
            };
            c.changed_at = now;
            // Half of the higher of the two: enough concurrency for a
            // quick probe, still far from full if the service is.
            return Some(probe_limit(if_slower, floor));
        }
        if next != limit {
            c.changed_at = now;
            return Some(next);
        }
        None
    }

    fn end_probe(&self, c: &mut Control, now: u64, limit: usize) -> Option<usize> {
        c.phase = Phase::Normal;
        c.limit = limit;
        c.changed_at = now;
        c.window.clear();
        // 5 s after the start-up probe, then 30 s; ±25 %.
        let every = if c.next_probe == u64::MAX {
            FIRST_PROBE_AFTER
        } else {
            PROBE_EVERY
        };
        c.rng ^= c.rng << 13;
        c.rng ^= c.rng >> 7;
        c.rng ^= c.rng << 17;
        let spread = (c.rng % 1000) as f64 / 1000.0; // [0, 1)
        let every = every.as_nanos() as f64 * (0.75 + 0.5 * spread);
        c.next_probe = now.saturating_add(every as u64);
        Some(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(min: usize, initial: usize, max: usize) -> (Adaptive, Core) {
        let (a, probe) = Adaptive::new(
            "unit",
            AdaptiveOptions::new().min(min).initial(initial),
            max,
        );
        (a, Core::new(probe, None))
    }

    thread_local! {
        /// The unit tests' own clock, in nanoseconds.
        static CLOCK: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
    }

    /// Feeds `n` outcomes of one kind: a steady stream, one finishing every
    /// quarter of `latency`, each started `latency` before it finished and
    /// after the last change.
    fn feed(a: &Adaptive, core: &Core, n: usize, latency: u64, outcome: Outcome, saturated: bool) {
        for _ in 0..n {
            let changed = a.lock().changed_at;
            let now = (CLOCK.get() + latency / 4).max(changed + latency + 1);
            CLOCK.set(now);
            event(a, core, now, latency, outcome, saturated);
        }
    }

    /// One outcome at `now`; the decision, if any, is applied.
    fn event(
        a: &Adaptive,
        core: &Core,
        now: u64,
        latency: u64,
        outcome: Outcome,
        saturated: bool,
    ) -> Option<usize> {
        let d = a.on_event(&mut a.lock(), now, latency, outcome, saturated, a.min);
        if let Some(l) = d {
            a.apply(core, l);
        }
        d
    }

    fn finish_probe(a: &Adaptive, core: &Core, latency: u64) {
        for _ in 0..1000 {
            if matches!(a.lock().phase, Phase::Normal) {
                return;
            }
            feed(a, core, 1, latency, Outcome::Success, true);
        }
        panic!("the probe never ended");
    }

    /// A controller at 20 whose start-up probe measured 1 ms just now;
    /// with the time of that change.
    fn just_probed() -> (Adaptive, Core, u64) {
        let (a, core) = controller(1, 20, 1000);
        finish_probe(&a, &core, 1_000_000);
        let changed = a.lock().changed_at;
        (a, core, changed)
    }

    #[tokio::test(start_paused = true)]
    async fn starts_at_initial_measuring_the_baseline() {
        let (a, core) = controller(1, 20, 100);
        assert_eq!(core.max(), 20);
        finish_probe(&a, &core, 1_000_000);
        assert_eq!(core.max(), 20);
        assert_eq!(a.baseline(), Some(Duration::from_millis(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn doubles_while_starting_then_grows_by_a_sixteenth() {
        let (a, core) = controller(1, 20, 1000);
        finish_probe(&a, &core, 1_000_000);
        feed(
            &a,
            &core,
            window_size(20),
            1_000_000,
            Outcome::Success,
            true,
        );
        assert_eq!(core.max(), 40);
        // Queueing in the service: cut, and leave slow start.
        feed(
            &a,
            &core,
            window_size(40),
            2_000_000,
            Outcome::Success,
            true,
        );
        assert_eq!(core.max(), 22); // 40 × 0.55
        feed(
            &a,
            &core,
            window_size(22),
            1_000_000,
            Outcome::Success,
            true,
        );
        assert_eq!(core.max(), 23);
    }

    #[tokio::test(start_paused = true)]
    async fn latencies_count_from_one_baseline_after_a_change() {
        let (a, core, changed) = just_probed();
        // Calls that started after the change and finished within a
        // baseline of it: the fast ones. However many, they judge nothing.
        for i in 0..100 {
            let now = changed + 500_000 + i * 4_000;
            let d = event(&a, &core, now, 400_000, Outcome::Success, true);
            assert_eq!(d, None);
            assert!(a.lock().window.latencies.is_empty());
        }
        assert_eq!(core.max(), 20);
        // From one baseline on they count: a window of them grows the limit.
        for i in 0..window_size(20) as u64 {
            let now = changed + 1_000_000 + i * 4_000;
            event(&a, &core, now, 900_000, Outcome::Success, true);
        }
        assert_eq!(core.max(), 40);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drop_counts_at_once_after_a_change() {
        let (a, core, changed) = just_probed();
        // Five drops (a quarter of the limit) within a baseline of the
        // change: the window ends and the limit falls.
        for i in 0..5 {
            let now = changed + 100_000 + i * 1_000;
            event(&a, &core, now, 50_000, Outcome::Overloaded, true);
        }
        assert_eq!(core.max(), 10); // 20 × clamp(1 − 5/5, 0.5, 0.9)
    }

    #[tokio::test(start_paused = true)]
    async fn never_grows_when_the_limit_is_not_in_use() {
        let (a, core) = controller(1, 20, 1000);
        finish_probe(&a, &core, 1_000_000);
        feed(&a, &core, 200, 1_000_000, Outcome::Success, false);
        assert_eq!(core.max(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn holds_between_target_and_tolerance() {
        let (a, core) = controller(1, 20, 1000);
        finish_probe(&a, &core, 1_000_000);
        feed(&a, &core, 200, 1_150_000, Outcome::Success, true);
        assert_eq!(core.max(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn drops_cut_and_timeouts_reach_min() {
        let (a, core) = controller(2, 20, 1000);
        finish_probe(&a, &core, 1_000_000);
        feed(&a, &core, 500, 1_000_000, Outcome::Overloaded, true);
        assert_eq!(core.max(), 2);
        assert_eq!(a.limit_seen().0, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_tail_does_not_move_the_limit() {
        let (a, core) = controller(1, 20, 1000);
        finish_probe(&a, &core, 1_000_000);
        // Settle: leave slow start with one cut, then hold at 1.15.
        for i in 0..400 {
            let latency = if i % 20 == 0 { 10_000_000 } else { 1_150_000 };
            feed(&a, &core, 1, latency, Outcome::Success, true);
        }
        assert_eq!(core.max(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn three_latency_cuts_in_a_row_reprobe_the_baseline() {
        let (a, core) = controller(1, 64, 1000);
        finish_probe(&a, &core, 1_000_000);
        // The service became twice as slow for good.
        for _ in 0..3 {
            let limit = core.max();
            feed(
                &a,
                &core,
                window_size(limit),
                2_000_000,
                Outcome::Success,
                true,
            );
        }
        assert!(matches!(a.lock().phase, Phase::Probe { .. }));
        finish_probe(&a, &core, 2_000_000);
        assert_eq!(a.baseline(), Some(Duration::from_millis(2)));
        // Back to the limit before the cuts.
        assert_eq!(core.max(), 64);
    }
}
