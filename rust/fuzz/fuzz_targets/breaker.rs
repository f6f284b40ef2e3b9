//! A circuit breaker under arbitrary sequences of calls and clock moves behaves as its documented model.
//!
//! The model below restates rust/core/src/breaker.rs's module documentation with the plainest data
//! structures (a `VecDeque` for the window, recounted on every read) and is checked after every operation:
//! state, permits, and the metrics' counts and rates.

#![no_main]

use std::collections::VecDeque;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tiergate_core::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use tiergate_core::clock::{Clock, ManualClock};

#[derive(Arbitrary, Debug)]
struct Case {
    failure_rate: u8,
    slow_call_rate: u8,
    slow_call_ms: u16,
    window: u8,
    min_calls: u8,
    open_ms: u16,
    half_open_calls: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Acquire,
    Record { success: bool, duration_ms: u16 },
    RecordRaw { success: bool, duration_ms: f64 },
    Release,
    Advance(u16),
    Reset,
}

#[derive(Clone, Copy, Debug)]
struct Outcome {
    failed: bool,
    slow: bool,
}

/// (calls, failed, slow) of a set of outcomes.
fn counts<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> (u32, u32, u32) {
    outcomes
        .into_iter()
        .fold((0, 0, 0), |(calls, failed, slow), o| {
            (
                calls + 1,
                failed + u32::from(o.failed),
                slow + u32::from(o.slow),
            )
        })
}

fn rates((calls, failed, slow): (u32, u32, u32), min_calls: u32) -> Option<(f64, f64)> {
    (calls > 0 && calls >= min_calls).then(|| {
        let calls = f64::from(calls);
        (
            f64::from(failed) * 100.0 / calls,
            f64::from(slow) * 100.0 / calls,
        )
    })
}

struct Model {
    config: BreakerConfig,
    min_calls: u32,
    open_us: u64,
    state: BreakerState,
    window: VecDeque<Outcome>,
    probes: Vec<Outcome>,
    in_flight: u32,
    open_until_us: u64,
    opened_by_probes: bool,
}

impl Model {
    fn new(config: BreakerConfig) -> Self {
        Self {
            min_calls: config.min_calls.min(config.window),
            open_us: (config.open_ms * 1000.0).round() as u64,
            config,
            state: BreakerState::Closed,
            window: VecDeque::new(),
            probes: Vec::new(),
            in_flight: 0,
            open_until_us: 0,
            opened_by_probes: false,
        }
    }

    fn exceeded(&self, counted: (u32, u32, u32), min_calls: u32) -> bool {
        rates(counted, min_calls).is_some_and(|(failed, slow)| {
            failed >= self.config.failure_rate || slow >= self.config.slow_call_rate
        })
    }

    fn open(&mut self, now_us: u64, by_probes: bool) {
        self.state = BreakerState::Open;
        self.open_until_us = now_us.saturating_add(self.open_us);
        self.opened_by_probes = by_probes;
        self.in_flight = 0;
    }

    fn take_probe(&mut self) -> bool {
        let permitted = (self.probes.len() as u32) + self.in_flight < self.config.half_open_calls;
        self.in_flight += u32::from(permitted);
        permitted
    }

    fn acquire(&mut self, now_us: u64) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open if now_us < self.open_until_us => false,
            BreakerState::Open => {
                self.state = BreakerState::HalfOpen;
                self.probes.clear();
                self.in_flight = 0;
                self.take_probe()
            }
            BreakerState::HalfOpen => self.take_probe(),
        }
    }

    fn record(&mut self, now_us: u64, success: bool, duration_ms: f64) -> bool {
        if duration_ms.is_nan() || duration_ms < 0.0 {
            return false;
        }
        let outcome = Outcome {
            failed: !success,
            slow: duration_ms > self.config.slow_call_ms,
        };
        match self.state {
            BreakerState::Closed => {
                if self.window.len() == self.config.window as usize {
                    self.window.pop_front();
                }
                self.window.push_back(outcome);
                if self.exceeded(counts(&self.window), self.min_calls) {
                    self.open(now_us, false);
                }
            }
            BreakerState::Open => {}
            BreakerState::HalfOpen => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.probes.push(outcome);
                if self.probes.len() as u32 >= self.config.half_open_calls {
                    if self.exceeded(counts(&self.probes), self.config.half_open_calls) {
                        self.open(now_us, true);
                    } else {
                        self.state = BreakerState::Closed;
                        self.window.clear();
                        self.probes.clear();
                        self.in_flight = 0;
                    }
                }
            }
        }
        true
    }

    fn release(&mut self) {
        if self.state == BreakerState::HalfOpen {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
    }

    fn reset(&mut self) {
        self.state = BreakerState::Closed;
        self.window.clear();
        self.probes.clear();
        self.in_flight = 0;
        self.opened_by_probes = false;
    }

    /// (calls, failed, slow, failure rate, slow-call rate) as `CircuitBreaker::metrics` reports them.
    fn metrics(&self) -> (u32, u32, u32, f64, f64) {
        let (counted, min_calls) = match self.state {
            BreakerState::Open if self.opened_by_probes => {
                (counts(&self.probes), self.config.half_open_calls)
            }
            BreakerState::Closed | BreakerState::Open => (counts(&self.window), self.min_calls),
            BreakerState::HalfOpen => (counts(&self.probes), self.config.half_open_calls),
        };
        let (failure_rate, slow_call_rate) = rates(counted, min_calls).unwrap_or((-1.0, -1.0));
        (
            counted.0,
            counted.1,
            counted.2,
            failure_rate,
            slow_call_rate,
        )
    }
}

fuzz_target!(|case: Case| {
    let config = BreakerConfig {
        failure_rate: f64::from(case.failure_rate % 100) + 1.0,
        slow_call_rate: f64::from(case.slow_call_rate % 100) + 1.0,
        slow_call_ms: f64::from(case.slow_call_ms),
        window: u32::from(case.window % 32) + 1,
        min_calls: u32::from(case.min_calls % 40) + 1,
        open_ms: f64::from(case.open_ms),
        half_open_calls: u32::from(case.half_open_calls % 8) + 1,
    };
    let clock = ManualClock::default();
    let breaker =
        CircuitBreaker::new(&config, Clock::Manual(clock.clone())).expect("a valid config");
    let mut model = Model::new(config);
    for op in case.ops.iter().take(512) {
        let now_us = clock.now_us();
        match *op {
            Op::Acquire => assert_eq!(
                breaker.try_acquire(),
                model.acquire(now_us),
                "acquire after {op:?}"
            ),
            Op::Record {
                success,
                duration_ms,
            } => {
                let duration_ms = f64::from(duration_ms);
                assert!(breaker.record(success, duration_ms).is_ok());
                model.record(now_us, success, duration_ms);
            }
            Op::RecordRaw {
                success,
                duration_ms,
            } => {
                let accepted = model.record(now_us, success, duration_ms);
                assert_eq!(
                    breaker.record(success, duration_ms).is_ok(),
                    accepted,
                    "{duration_ms}"
                );
            }
            Op::Release => {
                breaker.release();
                model.release();
            }
            Op::Advance(ms) => clock.advance(f64::from(ms)).expect("a finite advance"),
            Op::Reset => {
                breaker.reset();
                model.reset();
            }
        }
        assert_eq!(breaker.state(), model.state, "state after {op:?}");
        let m = breaker.metrics();
        let (calls, failed, slow, failure_rate, slow_call_rate) = model.metrics();
        assert_eq!(
            (m.calls, m.failed, m.slow),
            (calls, failed, slow),
            "counts after {op:?}"
        );
        assert_eq!(
            (m.failure_rate, m.slow_call_rate),
            (failure_rate, slow_call_rate),
            "rates after {op:?}"
        );
        assert!(m.failed <= m.calls && m.slow <= m.calls);
        assert!(m.calls <= config_bound(&model), "{} calls counted", m.calls);
    }
});

/// No state counts more outcomes than its window or its probes allow.
fn config_bound(model: &Model) -> u32 {
    model.config.window.max(model.config.half_open_calls)
}
