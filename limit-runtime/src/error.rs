//! [`Error`]: why a call was refused, or cut short, by `limit` itself.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A call that `limit` refused to start, or cut short.
///
/// Several options make a call fail without running its body (a full queue,
/// a wait that ran out, an open circuit, an unreachable shared backend) or
/// end a body early (a timeout). The annotated function then returns
/// `Err(E::from(err))`, so its error type must implement
/// `From<limit_runtime::Error>` (`anyhow::Error`,
/// `Box<dyn std::error::Error + Send + Sync>` and `std::io::Error` already
/// do):
///
/// ```
/// #[derive(Debug)]
/// enum ApiError {
///     Http(u16),
///     Limit(limit_runtime::Error),
/// }
///
/// impl From<limit_runtime::Error> for ApiError {
///     fn from(e: limit_runtime::Error) -> Self {
///         ApiError::Limit(e)
///     }
/// }
/// # let _ = ApiError::Http(500);
/// ```
///
/// Its [`Display`](fmt::Display) says what happened, to which limiter or
/// breaker, and which declaration's option caused it:
///
/// ```text
/// limiter "users": gave up after waiting 2s for a permit (wait = "2s" at src/client.rs:41)
/// ```
///
/// Cloning is cheap (one reference count), so a coalesced call can hand the
/// same error to every caller.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: ErrorKind,
    subject: Subject,
    name: Box<str>,
    what: String,
    origin: Option<Origin>,
}

/// What the error is about: the word that precedes its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum Subject {
    /// A limiter (`limiter "users": ...`).
    Limiter,
    /// A circuit breaker (`breaker "billing": ...`).
    Breaker,
    /// A function (`call "crate::get_user": ...`), for timeouts.
    Call,
}

impl Subject {
    fn word(self) -> &'static str {
        match self {
            Subject::Limiter => "limiter",
            Subject::Breaker => "breaker",
            Subject::Call => "call",
        }
    }
}

/// The declaration whose option caused the error.
#[derive(Clone, Debug)]
struct Origin {
    option: String,
    file: &'static str,
    line: u32,
}

/// Why a call failed, from [`Error::kind`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The limiter's queue already held as many waiting calls as the
    /// declaration's `queue` allows (`queue = 0`: the call could not start
    /// at once). The body never ran.
    QueueFull,
    /// The call could not start within the declaration's `wait` (waiting
    /// for a permit and for the rate together). The body never ran.
    WaitTimeout,
    /// The circuit breaker is open (or half-open with every trial taken).
    /// The body never ran.
    CircuitOpen,
    /// The body (`#[timeout(attempt = ...)]`) or the whole call
    /// (`#[timeout(total = ...)]`) ran longer than allowed and was dropped.
    Timeout,
    /// A shared backend could not be reached and the limiter fails closed.
    /// The body never ran.
    Unavailable,
}

impl ErrorKind {
    /// Whether the call was refused before its body started (everything but
    /// [`Timeout`](ErrorKind::Timeout)). `#[retry]` never retries a refusal.
    pub fn is_refusal(self) -> bool {
        !matches!(self, ErrorKind::Timeout)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::QueueFull => "queue full",
            ErrorKind::WaitTimeout => "wait timed out",
            ErrorKind::CircuitOpen => "circuit open",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Unavailable => "backend unavailable",
        })
    }
}

impl Error {
    /// What happened.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The limiter or breaker involved; for a timeout, the function's label
    /// (`module::path::function`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the call was refused before its body started; see
    /// [`ErrorKind::is_refusal`].
    pub fn is_refusal(&self) -> bool {
        self.inner.kind.is_refusal()
    }

    /// Builds an error. `what` completes `limiter "name": ...`.
    #[doc(hidden)]
    pub fn new(kind: ErrorKind, subject: Subject, name: &str, what: String) -> Error {
        Error {
            inner: Arc::new(Inner {
                kind,
                subject,
                name: name.into(),
                what,
                origin: None,
            }),
        }
    }

    /// Names the option and the declaration (`file:line`) that caused the
    /// error, e.g. `wait = "2s"`.
    #[doc(hidden)]
    #[must_use]
    pub fn caused_by(self, option: String, file: &'static str, line: u32) -> Error {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            kind: shared.kind,
            subject: shared.subject,
            name: shared.name.clone(),
            what: shared.what.clone(),
            origin: None,
        });
        inner.origin = Some(Origin { option, file, line });
        Error {
            inner: Arc::new(inner),
        }
    }

    /// The declaration that caused the error, as `file:line`, if known.
    pub fn declared_at(&self) -> Option<String> {
        self.inner
            .origin
            .as_ref()
            .map(|o| format!("{}:{}", o.file, o.line))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        write!(f, "{} \"{}\": {}", i.subject.word(), i.name, i.what)?;
        if let Some(o) = &i.origin {
            write!(f, " ({} at {}:{})", o.option, o.file, o.line)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("name", &self.inner.name)
            .field("message", &format_args!("{self}"))
            .finish()
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    /// `Timeout` and `WaitTimeout` become [`std::io::ErrorKind::TimedOut`];
    /// the other kinds [`std::io::ErrorKind::Other`]. The `limit` error is
    /// kept as the source (`get_ref()` / `into_inner()` give it back).
    fn from(e: Error) -> std::io::Error {
        let kind = match e.kind() {
            ErrorKind::Timeout | ErrorKind::WaitTimeout => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// A duration as the attributes write it: `"250ms"`, `"2s"`, `"1.5s"`,
/// `"3m"`, `"1h"`.
pub(crate) struct Written(pub Duration);

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ns = d.as_nanos();
        const UNITS: [(u128, &str); 6] = [
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        if ns == 0 {
            return f.write_str("0s");
        }
        for (scale, unit) in UNITS {
            if ns % scale == 0 {
                return write!(f, "{}{unit}", ns / scale);
            }
        }
        // Not a whole number of any unit above a nanosecond: seconds with
        // up to three decimals, the way people read them.
        write!(f, "{:.3}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_traits<T: std::error::Error + Send + Sync + Clone + 'static>() {}

    #[test]
    fn is_a_std_error_that_travels() {
        assert_traits::<Error>();
        let e = Error::new(
            ErrorKind::WaitTimeout,
            Subject::Limiter,
            "users",
            "gave up after waiting 2s for a permit".into(),
        )
        .caused_by("wait = \"2s\"".into(), "src/client.rs", 41);
        assert_eq!(
            e.to_string(),
            "limiter \"users\": gave up after waiting 2s for a permit (wait = \"2s\" at src/client.rs:41)"
        );
        assert_eq!(e.kind(), ErrorKind::WaitTimeout);
        assert_eq!(e.name(), "users");
        assert_eq!(e.declared_at().as_deref(), Some("src/client.rs:41"));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e.clone());
        assert!(boxed.to_string().contains("users"));
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        let back = io
            .get_ref()
            .and_then(|s| s.downcast_ref::<Error>())
            .unwrap();
        assert_eq!(back.kind(), ErrorKind::WaitTimeout);
    }

    #[test]
    fn io_kinds() {
        for (kind, io) in [
            (ErrorKind::Timeout, std::io::ErrorKind::TimedOut),
            (ErrorKind::WaitTimeout, std::io::ErrorKind::TimedOut),
            (ErrorKind::QueueFull, std::io::ErrorKind::Other),
            (ErrorKind::CircuitOpen, std::io::ErrorKind::Other),
            (ErrorKind::Unavailable, std::io::ErrorKind::Other),
        ] {
            let e = Error::new(kind, Subject::Breaker, "b", "x".into());
            assert_eq!(std::io::Error::from(e).kind(), io, "{kind:?}");
        }
        assert!(!ErrorKind::Timeout.is_refusal());
        assert!(ErrorKind::QueueFull.is_refusal());
    }

    #[test]
    fn written_durations() {
        let w = |d| Written(d).to_string();
        assert_eq!(w(Duration::from_secs(2)), "2s");
        assert_eq!(w(Duration::from_millis(250)), "250ms");
        assert_eq!(w(Duration::from_millis(1500)), "1500ms");
        assert_eq!(w(Duration::from_secs(180)), "3m");
        assert_eq!(w(Duration::from_secs(3600)), "1h");
        assert_eq!(w(Duration::ZERO), "0s");
    }
}
