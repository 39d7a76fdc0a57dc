//! `tracing` events (cargo feature `tracing`:
//! `cargo test --features tracing --test tracing_events`).
#![cfg(feature = "tracing")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use limit_runtime::{coalesce, limited, retry};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Records every event as `LEVEL target: message {field=value ...}`.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let m = event.metadata();
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}:{}", m.level(), m.target(), fields.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[limited(name = "traced", max = 1)]
#[retry(attempts = 2, initial = "10ms", jitter = "none")]
async fn traced(fail: bool) -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if fail {
        Err("down".into())
    } else {
        Ok(())
    }
}

#[coalesce]
async fn shared(id: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(5)).await;
    id
}

#[test]
fn events_for_waiting_retrying_giving_up_and_sharing() {
    let rec = Recorder::default();
    let events = rec.0.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    tracing::subscriber::with_default(rec, || {
        rt.block_on(async {
            let (a, b) = tokio::join!(traced(true), traced(false));
            assert!(a.is_err() && b.is_ok());
            let (x, y) = tokio::join!(shared(1), shared(1));
            assert_eq!((x, y), (1, 1));
            let b = limit_runtime::Breaker::named(
                "traced-breaker",
                limit_runtime::BreakerConfig::new().min_calls(1),
            );
            b.admit().unwrap().failure();
            b.reset();
        })
    });
    let events = events.lock().unwrap().clone();
    let has = |level: Level, needle: &str| {
        events
            .iter()
            .any(|e| e.starts_with(&level.to_string()) && e.contains(needle))
    };
    assert!(
        has(Level::TRACE, "limit_runtime::limited: message=limiter full; waiting for a permit limiter=\"traced\" max=1"),
        "{events:#?}"
    );
    assert!(
        has(
            Level::DEBUG,
            "function=\"tracing_events::traced\" attempt=1 delay_ms=10.0"
        ),
        "{events:#?}"
    );
    assert!(
        has(
            Level::WARN,
            "message=giving up function=\"tracing_events::traced\" attempts=2"
        ),
        "{events:#?}"
    );
    assert!(
        has(
            Level::TRACE,
            "limit_runtime::coalesce: message=result shared"
        ),
        "{events:#?}"
    );
    for state in ["open", "closed"] {
        assert!(
            has(
                Level::WARN,
                &format!("limit_runtime::breaker: message=circuit breaker state changed breaker=\"traced-breaker\" state={state}")
            ),
            "{events:#?}"
        );
    }
}
