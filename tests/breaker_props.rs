//! Property test: a breaker driven by random outcomes, dropped trials,
//! forced openings and time steps behaves like a small reference model of
//! the state machine, step by step.
//!
//! The model counts the window the documented way (a hundred buckets of
//! `window / 100`; the current one and the 99 before it), so the two agree
//! exactly, also at bucket boundaries.

use std::collections::BTreeMap;
use std::time::Duration;

use limit_runtime::{Breaker, BreakerConfig, BreakerState};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    /// Time passes.
    Wait(u64),
    /// A call asks to run; if admitted, it succeeds, fails, or is dropped
    /// without an outcome (refused by a limiter, cancelled).
    Call(Outcome),
    ForceOpen,
    Reset,
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Ok,
    Fail,
    Drop,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..4_000u64).prop_map(Step::Wait),
        12 => prop_oneof![
            3 => Just(Outcome::Ok),
            3 => Just(Outcome::Fail),
            1 => Just(Outcome::Drop),
        ]
        .prop_map(Step::Call),
        1 => Just(Step::ForceOpen),
        1 => Just(Step::Reset),
    ]
}

/// The reference model.
struct Model {
    config: (f64, u64, u64, u64, u32), // rate, min_calls, window ms, open_for ms, half_open
    state: BreakerState,
    forced: bool,
    opened_at: u64,
    trials: u32,
    trials_ok: u32,
    buckets: BTreeMap<u64, (u64, u64)>,
}

impl Model {
    fn advance(&mut self, now: u64) {
        if self.state == BreakerState::Open && !self.forced && now - self.opened_at >= self.config.3
        {
            self.enter(BreakerState::HalfOpen, now);
        }
    }

    fn enter(&mut self, to: BreakerState, now: u64) {
        self.state = to;
        self.trials = 0;
        self.trials_ok = 0;
        if to == BreakerState::Open {
            self.opened_at = now;
        }
        if to == BreakerState::Closed {
            self.buckets.clear();
        }
    }

    /// `None`: refused; `Some(half_open_trial)`: admitted.
    fn admit(&mut self, now: u64) -> Option<bool> {
        self.advance(now);
        match self.state {
            BreakerState::Closed => Some(false),
            BreakerState::HalfOpen if self.trials < self.config.4 => {
                self.trials += 1;
                Some(true)
            }
            _ => None,
        }
    }

    fn record(&mut self, now: u64, trial: bool, failed: bool) {
        if trial {
            if self.state != BreakerState::HalfOpen {
                return;
            }
            if failed {
                self.enter(BreakerState::Open, now);
            } else {
                self.trials_ok += 1;
                if self.trials_ok >= self.config.4 {
                    self.enter(BreakerState::Closed, now);
                }
            }
            return;
        }
        if self.state != BreakerState::Closed {
            return;
        }
        let bucket = (self.config.2 / 100).max(1);
        let slot = now / bucket;
        let e = self.buckets.entry(slot).or_insert((0, 0));
        e.0 += 1;
        e.1 += u64::from(failed);
        let (calls, fails) = self
            .buckets
            .range(slot.saturating_sub(99)..=slot)
            .fold((0, 0), |(c, f), (_, (bc, bf))| (c + bc, f + bf));
        if calls >= self.config.1 && fails as f64 >= self.config.0 * calls as f64 {
            self.enter(BreakerState::Open, now);
        }
    }

    fn forget(&mut self, trial: bool) {
        if trial && self.state == BreakerState::HalfOpen && self.trials > 0 {
            self.trials -= 1;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_breaker_follows_the_reference_model(
        rate in prop_oneof![Just(0.25), Just(0.5), Just(1.0)],
        min_calls in 1..6u32,
        window_s in 1..20u64,
        open_for_s in 1..8u64,
        half_open in 1..4u32,
        steps in prop::collection::vec(step(), 1..120),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let config = BreakerConfig::new()
                .failure_rate(rate)
                .min_calls(min_calls)
                .window(Duration::from_secs(window_s))
                .open_for(Duration::from_secs(open_for_s))
                .half_open(half_open);
            let b = Breaker::named(&format!("props-{}", rand_name()), config);
            let mut m = Model {
                config: (rate, u64::from(min_calls), window_s * 1000, open_for_s * 1000, half_open),
                state: BreakerState::Closed,
                forced: false,
                opened_at: 0,
                trials: 0,
                trials_ok: 0,
                buckets: BTreeMap::new(),
            };
            let t0 = tokio::time::Instant::now();
            let now = || t0.elapsed().as_millis() as u64;
            // Half-open trials admitted but not finished yet, held across
            // steps: (trial, model's view).
            for (i, s) in steps.iter().enumerate() {
                match s {
                    Step::Wait(ms) => tokio::time::advance(Duration::from_millis(*ms)).await,
                    Step::ForceOpen => {
                        b.force_open();
                        m.forced = true;
                        m.enter(BreakerState::Open, now());
                    }
                    Step::Reset => {
                        b.reset();
                        m.forced = false;
                        m.enter(BreakerState::Closed, now());
                    }
                    Step::Call(outcome) => {
                        let real = b.admit();
                        let model = m.admit(now());
                        prop_assert_eq!(real.is_ok(), model.is_some(), "step {}: admit", i);
                        if let (Ok(trial), Some(is_trial)) = (real, model) {
                            match outcome {
                                Outcome::Ok => {
                                    trial.success();
                                    m.record(now(), is_trial, false);
                                }
                                Outcome::Fail => {
                                    trial.failure();
                                    m.record(now(), is_trial, true);
                                }
                                Outcome::Drop => {
                                    drop(trial);
                                    m.forget(is_trial);
                                }
                            }
                        }
                    }
                }
                m.advance(now());
                prop_assert_eq!(b.state(), m.state, "step {}: {:?}", i, s);
            }
            Ok(())
        })?;
    }
}

fn rand_name() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
