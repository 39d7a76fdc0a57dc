//! Rates: the public [`Rate`] and the gate that enforces one (GCRA).
//!
//! The gate is the generic cell rate algorithm: one atomic word, the
//! *theoretical arrival time* (TAT) of the next start. A start at `now` is
//! allowed when `TAT − τ ≤ now`, and moves the TAT to `max(TAT, now) + T`,
//! where `T` is the interval between starts and `τ = (burst − 1) × T`. This
//! gives exactly the contract's bound: in any interval of length `t`, at
//! most `burst + ⌊t / T⌋` starts. `T` is rounded up to a whole nanosecond,
//! so rounding can only make starts rarer, never more frequent.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A rate of starts: at most `count` per `period`, with a `burst`.
///
/// Parses from the strings `#[limited(rate = ...)]` takes: `"N/s"`, `"N/m"`,
/// `"N/h"`, or `"N/<duration>"` such as `"100/10s"` or `"2/100ms"`. Equal
/// rates compare equal however they were written:
///
/// ```
/// use limit_runtime::Rate;
///
/// let a: Rate = "60/m".parse().unwrap();
/// let b: Rate = "1/s".parse().unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "1/s");
/// assert_eq!("2/100ms".parse::<Rate>().unwrap(), Rate::per_second(20));
/// assert!("0/s".parse::<Rate>().is_err());
/// assert_eq!(Rate::per_second(50).with_burst(10).burst(), 10);
/// ```
///
/// The burst is how many starts may happen at once after a quiet period; the
/// default, 1, spaces starts evenly (no burst at start-up).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Starts per `period_ns`, reduced with `period_ns` to lowest terms.
    count: u64,
    period_ns: u64,
    burst: u32,
}

/// Why a rate string was rejected, from `"...".parse::<Rate>()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseRateError(String);

impl fmt::Display for ParseRateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseRateError {}

const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// A duration in whole nanoseconds, saturating at `u64::MAX`.
pub(crate) const fn saturating_ns(d: Duration) -> u64 {
    let ns = d.as_nanos();
    if ns > u64::MAX as u128 {
        u64::MAX
    } else {
        ns as u64
    }
}

impl Rate {
    /// `count` starts per `period`.
    ///
    /// # Panics
    ///
    /// If `count` is 0 or `period` is zero (at compile time in a `static`).
    pub const fn new(count: u64, period: Duration) -> Rate {
        let period_ns = saturating_ns(period);
        assert!(count >= 1, "a rate needs at least one start per period");
        assert!(period_ns >= 1, "a rate's period must be longer than zero");
        let g = gcd(count, period_ns);
        Rate {
            count: count / g,
            period_ns: period_ns / g,
            burst: 1,
        }
    }

    /// `count` starts per second.
    pub const fn per_second(count: u64) -> Rate {
        Rate::new(count, Duration::from_secs(1))
    }

    /// `count` starts per minute.
    pub const fn per_minute(count: u64) -> Rate {
        Rate::new(count, Duration::from_secs(60))
    }

    /// `count` starts per hour.
    pub const fn per_hour(count: u64) -> Rate {
        Rate::new(count, Duration::from_secs(3600))
    }

    /// The same rate with another burst (values below 1 count as 1).
    pub const fn with_burst(mut self, burst: u32) -> Rate {
        self.burst = if burst == 0 { 1 } else { burst };
        self
    }

    /// How many starts may happen at once after a quiet period.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// Starts per [`period`](Rate::period), in lowest terms.
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The period of [`count`](Rate::count) starts, in lowest terms.
    pub const fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns)
    }

    /// The time between two starts at the steady rate, rounded up to a
    /// whole nanosecond.
    pub const fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns())
    }

    const fn interval_ns(&self) -> u64 {
        self.period_ns.div_ceil(self.count)
    }

    /// Starts per second, as a float (for display and arithmetic).
    pub fn per_second_f64(&self) -> f64 {
        self.count as f64 * 1e9 / self.period_ns as f64
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rate({self})")
    }
}

impl fmt::Display for Rate {
    /// `"50/s"`, `"5000/h"`, `"3/10s"`, with `", burst 10"` when the burst
    /// is not 1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SEC: u64 = 1_000_000_000;
        let (count, period) = (self.count, self.period_ns);
        // Prefer a whole count per second, minute or hour.
        let mut written = false;
        for (unit_ns, unit) in [(SEC, "s"), (60 * SEC, "m"), (3600 * SEC, "h")] {
            if unit_ns % period == 0 {
                if let Some(n) = count.checked_mul(unit_ns / period) {
                    write!(f, "{n}/{unit}")?;
                    written = true;
                    break;
                }
            }
        }
        if !written {
            let period = crate::error::Written(Duration::from_nanos(period));
            write!(f, "{count}/{period}")?;
        }
        if self.burst != 1 {
            write!(f, ", burst {}", self.burst)?;
        }
        Ok(())
    }
}

impl FromStr for Rate {
    type Err = ParseRateError;

    /// Parses `"N/s"`, `"N/m"`, `"N/h"` or `"N/<duration>"`; `N` ≥ 1 and the
    /// period longer than zero.
    fn from_str(text: &str) -> Result<Rate, ParseRateError> {
        let err = |why: &str| {
            ParseRateError(format!(
                "invalid rate `{text}`: {why}; write starts per period, e.g. \"50/s\", \"5000/h\", \"100/10s\" or \"2/100ms\""
            ))
        };
        let (count, period) = text.split_once('/').ok_or_else(|| err("no `/`"))?;
        let count = count.trim().replace('_', "");
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("the count must be a whole number"));
        }
        let count: u64 = count.parse().map_err(|_| err("the count is too large"))?;
        if count == 0 {
            return Err(err("the count must be at least 1"));
        }
        let period = period.trim();
        let period_ns: u128 = match period {
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => parse_duration_ns(period).map_err(|why| err(&why))?,
        };
        if period_ns == 0 {
            return Err(err("the period must be longer than zero"));
        }
        let period_ns = u64::try_from(period_ns).map_err(|_| err("the period is too long"))?;
        Ok(Rate::new(count, Duration::from_nanos(period_ns)))
    }
}

/// `"10s"`, `"100ms"`, `"1.5s"`, `"2m"`, `"1h"`: the duration syntax of the
/// attributes.
fn parse_duration_ns(text: &str) -> Result<u128, String> {
    const UNITS: [(&str, u128); 7] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    if text.trim_start().starts_with('-') {
        return Err(format!("the period `{}` is negative", text.trim()));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .ok_or_else(|| format!("the period `{text}` has no unit (ns, us, ms, s, m, h)"))?;
    let (number, unit) = text.split_at(split);
    let scale = UNITS
        .iter()
        .find(|(u, _)| *u == unit.trim())
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            if number.is_empty() && unit.contains(|c: char| c.is_ascii_digit()) {
                format!("the period `{}` does not start with a number", text.trim())
            } else {
                format!("unknown unit `{}` in the period", unit.trim())
            }
        })?;
    let number = number.replace('_', "");
    let (whole, frac) = number.split_once('.').unwrap_or((&number, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(format!("the period `{text}` is not a number with a unit"));
    }
    let too_long = || "the period is too long".to_string();
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_long())?
    };
    let mut ns = whole.checked_mul(scale).ok_or_else(too_long)?;
    let mut place = scale;
    for d in frac.bytes() {
        place /= 10;
        ns = ns
            .checked_add(u128::from(d - b'0') * place)
            .ok_or_else(too_long)?;
    }
    Ok(ns)
}

/// The rate gate of one limiter: lock-free, one compare-and-swap per start.
///
/// Its parameters sit behind a sequence lock so that [`Gcra::set`] (rare)
/// never lets a start see the interval of one rate with the tolerance of
/// another.
pub(crate) struct Gcra {
    /// Time zero of `tat`: when the limiter was created.
    base: Instant,
    /// Nanoseconds between starts; 0 = no rate.
    interval: AtomicU64,
    /// `(burst − 1) × interval`.
    tolerance: AtomicU64,
    /// Even while the parameters are stable.
    seq: AtomicU64,
    /// Theoretical arrival time of the next start, in ns since `base`.
    tat: AtomicU64,
    /// The rate as configured, for [`Gcra::rate`].
    rate: std::sync::Mutex<Option<Rate>>,
}

impl Gcra {
    pub(crate) fn new(rate: Option<Rate>) -> Gcra {
        let g = Gcra {
            base: Instant::now(),
            interval: AtomicU64::new(0),
            tolerance: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            tat: AtomicU64::new(0),
            rate: std::sync::Mutex::new(None),
        };
        g.set(rate);
        g
    }

    /// Whether a rate is in force (one relaxed load: the fast path's only
    /// cost when there is none).
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.interval.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn rate(&self) -> Option<Rate> {
        *self
            .rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the rate. Callers serialise (the limiter's queue lock).
    pub(crate) fn set(&self, rate: Option<Rate>) {
        let (interval, tolerance) = match rate {
            Some(r) => {
                let t = r.interval_ns().max(1);
                (t, t.saturating_mul(u64::from(r.burst - 1)))
            }
            None => (0, 0),
        };
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.interval.store(interval, Ordering::Relaxed);
        self.tolerance.store(tolerance, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
        *self
            .rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rate;
    }

    fn params(&self) -> (u64, u64) {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            let interval = self.interval.load(Ordering::Relaxed);
            let tolerance = self.tolerance.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            let s2 = self.seq.load(Ordering::Relaxed);
            if s1 == s2 && s1 % 2 == 0 {
                return (interval, tolerance);
            }
            std::hint::spin_loop();
        }
    }

    /// Now, in the gate's time (tokio's clock, so a paused clock is exact).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        let d = Instant::now().saturating_duration_since(self.base);
        // Whole seconds and the rest, not `as_nanos` (a 128-bit product).
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }

    /// The instant of the gate's time `ns`.
    pub(crate) fn instant(&self, ns: u64) -> Instant {
        self.base + Duration::from_nanos(ns)
    }

    /// Takes a start at `now`, or says when the next one is allowed.
    #[inline]
    pub(crate) fn try_take(&self, now: u64) -> Result<(), u64> {
        let (interval, tolerance) = self.params();
        if interval == 0 {
            return Ok(());
        }
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let allowed_at = tat.saturating_sub(tolerance);
            if now < allowed_at {
                return Err(allowed_at);
            }
            let next = tat.max(now).saturating_add(interval);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let p = |s: &str| s.parse::<Rate>().unwrap();
        assert_eq!(p("50/s"), Rate::per_second(50));
        assert_eq!(p("5000/h"), Rate::per_hour(5000));
        assert_eq!(p("10/m"), Rate::per_minute(10));
        assert_eq!(p("100/10s"), Rate::per_second(10));
        assert_eq!(p("2/100ms"), Rate::per_second(20));
        assert_eq!(p("60/m"), p("1/s"));
        assert_eq!(p("3600/h"), p("1/s"));
        assert_eq!(p("1/1.5s"), Rate::new(2, Duration::from_secs(3)));
        assert_eq!(p(" 7 / s "), Rate::per_second(7));
    }

    #[test]
    fn rejects_what_the_attribute_rejects() {
        for bad in [
            "",
            "0/s",
            "10/x",
            "ten/s",
            "10",
            "10/",
            "/s",
            "-1/s",
            "1.5/s",
            "10/0s",
            "10/0ms",
            "1/1e3s",
            "99999999999999999999999/s",
        ] {
            let e = bad.parse::<Rate>().unwrap_err();
            assert!(e.to_string().contains("invalid rate"), "{bad:?}: {e}");
        }
        let says = |s: &str, what: &str| {
            let e = s.parse::<Rate>().unwrap_err().to_string();
            assert!(e.contains(what), "{s:?}: {e}");
        };
        says("5/-1s", "the period `-1s` is negative");
        says("5/x1s", "the period `x1s` does not start with a number");
        says("5/1d", "unknown unit `d` in the period");
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        let d = |s: &str| s.parse::<Rate>().unwrap().to_string();
        assert_eq!(d("50/s"), "50/s");
        assert_eq!(d("5000/h"), "5000/h");
        assert_eq!(d("10/m"), "10/m");
        assert_eq!(d("2/100ms"), "20/s");
        assert_eq!(d("3/7s"), "3/7s");
        assert_eq!(
            Rate::per_second(5).with_burst(3).to_string(),
            "5/s, burst 3"
        );
    }

    #[test]
    fn interval_rounds_up() {
        assert_eq!(
            Rate::per_second(3).interval(),
            Duration::from_nanos(333_333_334)
        );
        assert_eq!(Rate::per_second(1000).interval(), Duration::from_millis(1));
        let huge = Rate::new(u64::MAX, Duration::from_nanos(1));
        assert_eq!(huge.interval(), Duration::from_nanos(1));
    }

    #[test]
    fn gcra_allows_burst_then_the_interval() {
        let g = Gcra::new(Some(Rate::per_second(10).with_burst(3)));
        let ms = 1_000_000;
        // Three at once after a quiet period, then one per 100 ms.
        assert!(g.try_take(0).is_ok());
        assert!(g.try_take(0).is_ok());
        assert!(g.try_take(0).is_ok());
        assert_eq!(g.try_take(0), Err(100 * ms));
        assert!(g.try_take(100 * ms).is_ok());
        assert_eq!(g.try_take(100 * ms), Err(200 * ms));
        // A quiet second refills the burst, no more.
        let t = 1_300 * ms;
        for _ in 0..3 {
            assert!(g.try_take(t).is_ok());
        }
        assert!(g.try_take(t).is_err());
    }

    #[test]
    fn gcra_bound_holds_in_every_window() {
        // Greedy starts at every 1 ms tick for 3 s with 7/s, burst 4: the
        // count in every window [a, a + t] is ≤ burst + ⌊t × rate⌋.
        let g = Gcra::new(Some(Rate::per_second(7).with_burst(4)));
        let ms = 1_000_000u64;
        let mut starts = Vec::new();
        for tick in 0..3000u64 {
            while g.try_take(tick * ms).is_ok() {
                starts.push(tick * ms);
            }
        }
        let rate_per_ns = 7.0 / 1e9;
        for (i, &a) in starts.iter().enumerate() {
            for (j, &b) in starts.iter().enumerate().skip(i) {
                let n = (j - i + 1) as f64;
                let bound = 4.0 + ((b - a) as f64 * rate_per_ns).floor();
                assert!(n <= bound, "{n} starts in [{a}, {b}]");
            }
        }
        assert!(starts.len() >= 4 + 20, "{} starts", starts.len());
    }

    #[test]
    fn removing_the_rate_opens_the_gate() {
        let g = Gcra::new(Some(Rate::per_hour(1)));
        assert!(g.try_take(0).is_ok());
        assert!(g.try_take(1).is_err());
        g.set(None);
        assert!(!g.enabled());
        assert!(g.try_take(1).is_ok());
        assert_eq!(g.rate(), None);
    }
}
