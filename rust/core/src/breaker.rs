//! Per-model circuit breaker with resilience4j's semantics over a count-based sliding window.
//!
//! ```text
//!            rates >= threshold (once min_calls recorded)
//!   CLOSED ------------------------------------------------> OPEN
//!     ^                                                      |  open_ms passed, then the next
//!     | all half_open_calls probes recorded,                 |  try_acquire() (lazily; reading
//!     | rates below both thresholds                          v  `state` never moves it)
//!     +------------------------------------------------- HALF_OPEN
//!                 all probes recorded, a rate >= threshold: back to OPEN for another open_ms
//! ```
//!
//! - A call is *failed* if the caller says so, *slow* if it took longer than `slow_call_ms`; a slow failure
//!   counts as both, as in resilience4j.
//! - CLOSED keeps the last `window` outcomes in a ring buffer with running totals, so recording is O(1) and
//!   allocation-free. Rates are computed only once `min_calls` outcomes are in the window (resilience4j
//!   clamps `min_calls` to `window` in count-based mode; so do we).
//! - HALF_OPEN hands out at most `half_open_calls` probe permits; a released permit (cancelled call) can be
//!   handed out again. Once that many probes are recorded, their rates decide: CLOSED with an empty window,
//!   or OPEN again.
//! - An outcome recorded while OPEN (a call permitted before the breaker opened) changes nothing.
//!   resilience4j adds it to the open state's metrics, which are discarded on the way to HALF_OPEN, so it can
//!   never cause a transition there either; we drop it outright so that an open breaker's metrics keep
//!   showing exactly the calls that opened it.
//! - An outcome recorded in HALF_OPEN counts as a probe even if its permit was taken earlier, in CLOSED: the
//!   breaker cannot tell the two apart, and neither can resilience4j.
//! - If a probe is neither recorded nor released, HALF_OPEN waits for it indefinitely: callers must always do
//!   one or the other (resilience4j's optional `maxWaitDurationInHalfOpenState` is not implemented).
//!
//! All state sits behind one short mutex: no allocation, no clock read unless the breaker is OPEN (to check
//! the wait) or opening (to stamp it).

use parking_lot::Mutex;

use crate::clock::Clock;

/// The largest `window` accepted: one byte per slot, so this caps a breaker at about 1 MB.
pub const MAX_WINDOW: u32 = 1_000_000;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls are permitted and their outcomes fill the sliding window.
    Closed,
    /// No call is permitted until the open wait has passed.
    Open,
    /// A bounded number of probe calls decide whether to close or open again.
    HalfOpen,
}

impl BreakerState {
    /// The state's name as the Python API and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A rejected breaker argument.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BreakerError {
    /// A rate threshold outside (0, 100].
    #[error("{name} must be a percentage in (0, 100], got {value}")]
    InvalidRate { name: &'static str, value: f64 },
    /// A duration that is negative, NaN, or (where it must be) infinite.
    #[error("{name} must be a {kind} number of milliseconds >= 0, got {value}")]
    InvalidMillis {
        name: &'static str,
        kind: &'static str,
        value: f64,
    },
    /// A count outside its bounds.
    #[error("{name} must be between {min} and {max}, got {value}")]
    InvalidCount {
        name: &'static str,
        min: u64,
        max: u64,
        value: i128,
    },
}

/// A breaker's settings; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Failure rate in percent at or above which the breaker opens.
    pub failure_rate: f64,
    /// Slow-call rate in percent at or above which the breaker opens.
    pub slow_call_rate: f64,
    /// A call that took longer than this many milliseconds is slow (infinity: no call is ever slow).
    pub slow_call_ms: f64,
    /// How many of the most recent outcomes the CLOSED state judges by.
    pub window: u32,
    /// How many outcomes the window must hold before rates are computed.
    pub min_calls: u32,
    /// How long the breaker stays OPEN before it lets probes through.
    pub open_ms: f64,
    /// How many probes HALF_OPEN permits, and records before it decides.
    pub half_open_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_rate: 50.0,
            slow_call_rate: 100.0,
            slow_call_ms: 10_000.0,
            window: 20,
            min_calls: 5,
            open_ms: 30_000.0,
            half_open_calls: 2,
        }
    }
}

/// Rates and counts of the outcomes the breaker currently judges by: the sliding window in CLOSED, the
/// probes in HALF_OPEN, and in OPEN whichever of the two opened it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerMetrics {
    /// Failed calls in percent, or -1 while fewer outcomes than the minimum are recorded.
    pub failure_rate: f64,
    /// Slow calls in percent, or -1 while fewer outcomes than the minimum are recorded.
    pub slow_call_rate: f64,
    /// Outcomes counted.
    pub calls: u32,
    /// Of which failed.
    pub failed: u32,
    /// Of which slow (a slow failure is also counted in `failed`).
    pub slow: u32,
}

// One outcome packed into a byte of the ring buffer.
const FAILED: u8 = 1;
const SLOW: u8 = 2;

/// Running totals over a set of outcomes.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    calls: u32,
    failed: u32,
    slow: u32,
}

impl Counts {
    fn add(&mut self, outcome: u8) {
        self.calls += 1;
        self.failed += u32::from(outcome & FAILED != 0);
        self.slow += u32::from(outcome & SLOW != 0);
    }

    fn remove(&mut self, outcome: u8) {
        self.calls -= 1;
        self.failed -= u32::from(outcome & FAILED != 0);
        self.slow -= u32::from(outcome & SLOW != 0);
    }

    /// (failure rate, slow-call rate) in percent, or `None` below `min_calls`.
    fn rates(&self, min_calls: u32) -> Option<(f64, f64)> {
        if self.calls == 0 || self.calls < min_calls {
            return None;
        }
        let calls = f64::from(self.calls);
        Some((
            f64::from(self.failed) * 100.0 / calls,
            f64::from(self.slow) * 100.0 / calls,
        ))
    }
}

/// The last `slots.len()` outcomes, oldest overwritten first.
#[derive(Debug)]
struct Window {
    slots: Box<[u8]>,
    /// Where the next outcome goes; once the window is full, also the oldest outcome.
    next: usize,
    counts: Counts,
}

impl Window {
    fn new(size: u32) -> Self {
        Self {
            slots: vec![0; size as usize].into_boxed_slice(),
            next: 0,
            counts: Counts::default(),
        }
    }

    fn push(&mut self, outcome: u8) {
        // `next` is always < slots.len() (>= 1), so the indexing cannot fail.
        if self.counts.calls as usize == self.slots.len() {
            self.counts.remove(self.slots[self.next]);
        }
        self.slots[self.next] = outcome;
        self.counts.add(outcome);
        self.next += 1;
        if self.next == self.slots.len() {
            self.next = 0;
        }
    }

    /// Empties the window in O(1): slots are only read once overwritten again.
    fn clear(&mut self) {
        self.next = 0;
        self.counts = Counts::default();
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    window: Window,
    /// Outcomes recorded in the current HALF_OPEN period (or the one that reopened the breaker).
    probes: Counts,
    /// Probe permits handed out in HALF_OPEN and not yet recorded or released.
    probes_in_flight: u32,
    /// In OPEN: the monotonic time (µs) from which the next permission request moves to HALF_OPEN.
    open_until_us: u64,
    /// In OPEN: whether the probes (rather than the window) opened it, which decides what metrics show.
    opened_by_probes: bool,
}

/// A thread-safe circuit breaker; see the module documentation for its semantics.
#[derive(Debug)]
pub struct CircuitBreaker {
    failure_rate: f64,
    slow_call_rate: f64,
    slow_call_ms: f64,
    min_calls: u32,
    open_us: u64,
    half_open_calls: u32,
    clock: Clock,
    inner: Mutex<Inner>,
}

fn check_rate(name: &'static str, value: f64) -> Result<f64, BreakerError> {
    // Written so that NaN fails too.
    if value > 0.0 && value <= 100.0 {
        Ok(value)
    } else {
        Err(BreakerError::InvalidRate { name, value })
    }
}

fn check_count(name: &'static str, value: u32, max: u32) -> Result<u32, BreakerError> {
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(BreakerError::InvalidCount {
            name,
            min: 1,
            max: u64::from(max),
            value: i128::from(value),
        })
    }
}

impl CircuitBreaker {
    /// A CLOSED breaker with an empty window.
    pub fn new(config: &BreakerConfig, clock: Clock) -> Result<Self, BreakerError> {
        let failure_rate = check_rate("failure_rate", config.failure_rate)?;
        let slow_call_rate = check_rate("slow_call_rate", config.slow_call_rate)?;
        // Infinity is allowed: it switches slow-call detection off.
        if config.slow_call_ms.is_nan() || config.slow_call_ms < 0.0 {
            return Err(BreakerError::InvalidMillis {
                name: "slow_call_ms",
                kind: "non-NaN",
                value: config.slow_call_ms,
            });
        }
        if !config.open_ms.is_finite() || config.open_ms < 0.0 {
            return Err(BreakerError::InvalidMillis {
                name: "open_ms",
                kind: "finite",
                value: config.open_ms,
            });
        }
        let window = check_count("window", config.window, MAX_WINDOW)?;
        let min_calls = check_count("min_calls", config.min_calls, u32::MAX)?;
        let half_open_calls = check_count("half_open_calls", config.half_open_calls, u32::MAX)?;
        Ok(Self {
            failure_rate,
            slow_call_rate,
            slow_call_ms: config.slow_call_ms,
            // resilience4j's count-based window does the same: a minimum it could never reach would keep the
            // breaker closed forever.
            min_calls: min_calls.min(window),
            // `as` saturates; open_ms is finite and >= 0, so this is a plain rounding.
            open_us: (config.open_ms * 1000.0).round() as u64,
            half_open_calls,
            clock,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                window: Window::new(window),
                probes: Counts::default(),
                probes_in_flight: 0,
                open_until_us: 0,
                opened_by_probes: false,
            }),
        })
    }

    /// Asks for permission to call. CLOSED: yes. OPEN: no, unless the open wait has passed, in which case
    /// the breaker moves to HALF_OPEN and this request takes the first probe permit. HALF_OPEN: yes while
    /// probe permits are left.
    pub fn try_acquire(&self) -> bool {
        let mut inner = self.inner.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                if self.clock.now_us() < inner.open_until_us {
                    return false;
                }
                inner.state = BreakerState::HalfOpen;
                inner.probes = Counts::default();
                inner.probes_in_flight = 0;
                self.take_probe(&mut inner)
            }
            BreakerState::HalfOpen => self.take_probe(&mut inner),
        }
    }

    fn take_probe(&self, inner: &mut Inner) -> bool {
        // Probes already recorded used up their permits too: half_open_calls bounds the whole period.
        if inner.probes.calls + inner.probes_in_flight < self.half_open_calls {
            inner.probes_in_flight += 1;
            true
        } else {
            false
        }
    }

    /// Records a call's outcome. `duration_ms` must be >= 0 (infinity counts as slow); a rejected call
    /// changes nothing.
    pub fn record(&self, success: bool, duration_ms: f64) -> Result<(), BreakerError> {
        if duration_ms.is_nan() || duration_ms < 0.0 {
            return Err(BreakerError::InvalidMillis {
                name: "duration_ms",
                kind: "non-NaN",
                value: duration_ms,
            });
        }
        let outcome = if success { 0 } else { FAILED }
            | if duration_ms > self.slow_call_ms {
                SLOW
            } else {
                0
            };
        let mut inner = self.inner.lock();
        match inner.state {
            BreakerState::Closed => {
                inner.window.push(outcome);
                if self.exceeded(&inner.window.counts, self.min_calls) {
                    self.open(&mut inner, false);
                }
            }
            // Permitted before the breaker opened: see the module documentation.
            BreakerState::Open => {}
            BreakerState::HalfOpen => {
                inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
                inner.probes.add(outcome);
                if inner.probes.calls >= self.half_open_calls {
                    if self.exceeded(&inner.probes, self.half_open_calls) {
                        self.open(&mut inner, true);
                    } else {
                        inner.state = BreakerState::Closed;
                        inner.window.clear();
                        inner.probes = Counts::default();
                        inner.probes_in_flight = 0;
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives back a permit without an outcome (the call was cancelled before it meant anything). Only a
    /// HALF_OPEN probe permit is a scarce resource; in the other states there is nothing to give back.
    pub fn release(&self) {
        let mut inner = self.inner.lock();
        if inner.state == BreakerState::HalfOpen {
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        }
    }

    /// The current state. Reading it never moves OPEN to HALF_OPEN, even once the open wait has passed.
    pub fn state(&self) -> BreakerState {
        self.inner.lock().state
    }

    /// The outcomes the current state judges by, with their rates.
    pub fn metrics(&self) -> BreakerMetrics {
        let inner = self.inner.lock();
        let (counts, min_calls) = match inner.state {
            BreakerState::Closed => (inner.window.counts, self.min_calls),
            BreakerState::Open if !inner.opened_by_probes => (inner.window.counts, self.min_calls),
            BreakerState::Open | BreakerState::HalfOpen => (inner.probes, self.half_open_calls),
        };
        let (failure_rate, slow_call_rate) = counts.rates(min_calls).unwrap_or((-1.0, -1.0));
        BreakerMetrics {
            failure_rate,
            slow_call_rate,
            calls: counts.calls,
            failed: counts.failed,
            slow: counts.slow,
        }
    }

    /// Back to CLOSED with an empty window, forgetting any probes in flight.
    pub fn reset(&self) {
        let mut inner = self.inner.lock();
        inner.state = BreakerState::Closed;
        inner.window.clear();
        inner.probes = Counts::default();
        inner.probes_in_flight = 0;
        inner.opened_by_probes = false;
    }

    fn exceeded(&self, counts: &Counts, min_calls: u32) -> bool {
        counts.rates(min_calls).is_some_and(|(failed, slow)| {
            failed >= self.failure_rate || slow >= self.slow_call_rate
        })
    }

    fn open(&self, inner: &mut Inner, by_probes: bool) {
        inner.state = BreakerState::Open;
        inner.open_until_us = self.clock.now_us().saturating_add(self.open_us);
        inner.opened_by_probes = by_probes;
        inner.probes_in_flight = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use BreakerState::{Closed, HalfOpen, Open};

    /// One step of a scenario, with what it must return or leave behind.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// try_acquire() must return this.
        Acquire(bool),
        /// record(success = true, duration_ms).
        Ok(f64),
        /// record(success = false, duration_ms).
        Fail(f64),
        Release,
        Advance(f64),
        Reset,
        /// state() must be this.
        Is(BreakerState),
        /// metrics() must show (calls, failed, slow, failure_rate, slow_call_rate).
        Shows(u32, u32, u32, f64, f64),
    }
    use Step::*;

    fn config(window: u32, min_calls: u32, half_open_calls: u32) -> BreakerConfig {
        BreakerConfig {
            failure_rate: 50.0,
            slow_call_rate: 100.0,
            slow_call_ms: 1_000.0,
            window,
            min_calls,
            open_ms: 10_000.0,
            half_open_calls,
        }
    }

    fn run(name: &str, config: &BreakerConfig, steps: &[Step]) {
        let clock = ManualClock::new(0.0).unwrap();
        let breaker = CircuitBreaker::new(config, Clock::Manual(clock.clone())).unwrap();
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{name}: step {i} {step:?}");
            match *step {
                Acquire(expected) => assert_eq!(breaker.try_acquire(), expected, "{at}"),
                Ok(ms) => breaker.record(true, ms).unwrap(),
                Fail(ms) => breaker.record(false, ms).unwrap(),
                Release => breaker.release(),
                Advance(ms) => clock.advance(ms).unwrap(),
                Reset => breaker.reset(),
                Is(state) => assert_eq!(breaker.state(), state, "{at}"),
                Shows(calls, failed, slow, failure_rate, slow_call_rate) => {
                    let expected = BreakerMetrics {
                        failure_rate,
                        slow_call_rate,
                        calls,
                        failed,
                        slow,
                    };
                    assert_eq!(breaker.metrics(), expected, "{at}");
                }
            }
        }
    }

    /// Opens a breaker built with `config(4, 4, _)` (failure_rate 50%) by failing every call.
    const OPEN_IT: [Step; 6] = [
        Fail(1.0),
        Fail(1.0),
        Fail(1.0),
        Fail(1.0),
        Is(Open),
        Acquire(false),
    ];

    // One scenario per row, one step after another: rustfmt would put every step on its own line.
    #[rustfmt::skip]
    #[test]
    fn transitions() {
        let slow = BreakerConfig { slow_call_rate: 50.0, ..config(4, 4, 2) };
        let cases: Vec<(&str, BreakerConfig, Vec<Step>)> = vec![
            ("below min_calls no rate is computed and nothing opens", config(10, 5, 2), vec![
                Fail(1.0), Fail(1.0), Fail(1.0), Fail(1.0), Is(Closed), Shows(4, 4, 0, -1.0, -1.0),
            ]),
            ("the failure rate reaching the threshold opens", config(4, 4, 2), vec![
                Acquire(true), Ok(1.0), Ok(1.0), Fail(1.0), Is(Closed), Shows(3, 1, 0, -1.0, -1.0),
                Fail(1.0), Is(Open), Shows(4, 2, 0, 50.0, 0.0), Acquire(false),
            ]),
            ("a failure rate below the threshold stays closed", config(4, 4, 2), vec![
                Ok(1.0), Ok(1.0), Ok(1.0), Fail(1.0), Is(Closed), Shows(4, 1, 0, 25.0, 0.0), Acquire(true),
            ]),
            ("only calls slower than slow_call_ms are slow; the slow rate opens", slow.clone(), vec![
                Ok(1_000.0), Ok(999.0), Ok(1_000.5), Is(Closed), Ok(1_000.0), Shows(4, 0, 1, 0.0, 25.0),
                Ok(5_000.0), Is(Open), Shows(4, 0, 2, 0.0, 50.0),
            ]),
            ("a slow failure counts as failed and as slow",
             BreakerConfig { failure_rate: 100.0, slow_call_rate: 100.0, ..config(2, 2, 2) }, vec![
                Fail(2_000.0), Ok(1.0), Is(Closed), Shows(2, 1, 1, 50.0, 50.0),
            ]),
            ("infinitely slow calls are slow", config(1, 1, 1), vec![
                Ok(f64::INFINITY), Is(Open), Shows(1, 0, 1, 0.0, 100.0),
            ]),
            ("the window slides: the oldest outcome drops out", config(4, 4, 2), vec![
                Fail(1.0), Ok(1.0), Ok(1.0), Ok(1.0), Shows(4, 1, 0, 25.0, 0.0),
                Ok(1.0), Shows(4, 0, 0, 0.0, 0.0),
                Fail(1.0), Shows(4, 1, 0, 25.0, 0.0), Is(Closed),
                Fail(1.0), Is(Open), Shows(4, 2, 0, 50.0, 0.0),
            ]),
            ("min_calls larger than the window is clamped to it", config(3, 10, 1), vec![
                Fail(1.0), Fail(1.0), Is(Closed), Fail(1.0), Is(Open), Shows(3, 3, 0, 100.0, 0.0),
            ]),
            ("OPEN refuses until open_ms passed; reading state never moves it; the next request does",
             config(4, 4, 2), [&OPEN_IT[..], &[
                Advance(9_999.999), Acquire(false), Is(Open),
                Advance(0.001), Is(Open), Shows(4, 4, 0, 100.0, 0.0),
                Acquire(true), Is(HalfOpen), Shows(0, 0, 0, -1.0, -1.0),
            ]].concat()),
            ("HALF_OPEN hands out at most half_open_calls probe permits", config(4, 4, 2), [&OPEN_IT[..], &[
                Advance(10_000.0), Acquire(true), Acquire(true), Acquire(false), Acquire(false), Is(HalfOpen),
            ]].concat()),
            ("recorded probes used their permits too", config(4, 4, 3), [&OPEN_IT[..], &[
                Advance(10_000.0), Acquire(true), Ok(1.0), Acquire(true), Acquire(true), Acquire(false),
            ]].concat()),
            ("all probes fine: CLOSED with an empty window", config(4, 4, 2), [&OPEN_IT[..], &[
                Advance(10_000.0), Acquire(true), Acquire(true), Ok(1.0), Is(HalfOpen), Shows(1, 0, 0, -1.0, -1.0),
                Ok(1.0), Is(Closed), Shows(0, 0, 0, -1.0, -1.0),
                // The old failures are gone: three new ones are not enough to reopen.
                Fail(1.0), Fail(1.0), Fail(1.0), Is(Closed), Acquire(true),
            ]].concat()),
            ("the decision waits for every probe, then a probe failure rate at the threshold reopens",
             config(4, 4, 2), [&OPEN_IT[..], &[
                Advance(10_000.0), Acquire(true), Acquire(true), Fail(1.0), Is(HalfOpen), Acquire(false),
                Ok(1.0), Is(Open), Shows(2, 1, 0, 50.0, 0.0),
            ]].concat()),
            ("reopening restarts the open wait from that moment", config(4, 4, 1), [&OPEN_IT[..], &[
                Advance(10_000.0), Acquire(true), Advance(500.0), Fail(1.0), Is(Open),
                Advance(9_999.0), Acquire(false), Advance(1.0), Acquire(true), Is(HalfOpen),
            ]].concat()),
            ("slow probes reopen", slow, [&OPEN_IT[..], &[
                Advance(10_000.0), Acquire(true), Acquire(true), Ok(1.0), Ok(1_500.0),
                Is(Open), Shows(2, 0, 1, 0.0, 50.0),
            ]].concat()),
            ("a released probe permit can be taken again, but releases never mint extra permits",
             config(4, 4, 2), [&OPEN_IT[..], &[
                Advance(10_000.0), Acquire(true), Acquire(true), Acquire(false),
                Release, Acquire(true), Acquire(false),
                Release, Release, Release, Acquire(true), Acquire(true), Acquire(false),
                Ok(1.0), Ok(1.0), Is(Closed),
            ]].concat()),
            ("release outside HALF_OPEN changes nothing", config(4, 4, 1), [
                &[Acquire(true), Release, Shows(0, 0, 0, -1.0, -1.0)][..],
                &OPEN_IT[..],
                &[Release, Acquire(false), Is(Open)],
            ].concat()),
            ("an outcome recorded while OPEN is ignored", config(4, 4, 2), [&OPEN_IT[..], &[
                Ok(1.0), Ok(1.0), Ok(1.0), Ok(1.0), Fail(1.0), Is(Open), Shows(4, 4, 0, 100.0, 0.0),
                Advance(9_999.0), Acquire(false),
            ]].concat()),
            ("open_ms 0: the very next request probes", BreakerConfig { open_ms: 0.0, ..config(1, 1, 1) }, vec![
                Fail(1.0), Is(Open), Acquire(true), Is(HalfOpen), Acquire(false),
            ]),
            ("reset closes from OPEN and from HALF_OPEN, with an empty window", config(4, 4, 1), [
                &OPEN_IT[..],
                &[Reset, Is(Closed), Shows(0, 0, 0, -1.0, -1.0), Acquire(true)],
                &OPEN_IT[..],
                &[Advance(10_000.0), Acquire(true), Is(HalfOpen), Reset, Is(Closed), Acquire(true),
                  Fail(1.0), Fail(1.0), Fail(1.0), Is(Closed)],
            ].concat()),
        ];
        for (name, config, steps) in &cases {
            run(name, config, steps);
        }
    }

    #[test]
    fn bad_config_is_rejected() {
        let base = BreakerConfig::default();
        let cases: Vec<(BreakerConfig, &str)> = vec![
            (
                BreakerConfig {
                    failure_rate: 0.0,
                    ..base.clone()
                },
                "failure_rate",
            ),
            (
                BreakerConfig {
                    failure_rate: 100.5,
                    ..base.clone()
                },
                "failure_rate",
            ),
            (
                BreakerConfig {
                    failure_rate: f64::NAN,
                    ..base.clone()
                },
                "failure_rate",
            ),
            (
                BreakerConfig {
                    slow_call_rate: -1.0,
                    ..base.clone()
                },
                "slow_call_rate",
            ),
            (
                BreakerConfig {
                    slow_call_ms: -0.1,
                    ..base.clone()
                },
                "slow_call_ms",
            ),
            (
                BreakerConfig {
                    slow_call_ms: f64::NAN,
                    ..base.clone()
                },
                "slow_call_ms",
            ),
            (
                BreakerConfig {
                    open_ms: f64::INFINITY,
                    ..base.clone()
                },
                "open_ms",
            ),
            (
                BreakerConfig {
                    open_ms: -1.0,
                    ..base.clone()
                },
                "open_ms",
            ),
            (
                BreakerConfig {
                    window: 0,
                    ..base.clone()
                },
                "window",
            ),
            (
                BreakerConfig {
                    window: MAX_WINDOW + 1,
                    ..base.clone()
                },
                "window",
            ),
            (
                BreakerConfig {
                    min_calls: 0,
                    ..base.clone()
                },
                "min_calls",
            ),
            (
                BreakerConfig {
                    half_open_calls: 0,
                    ..base.clone()
                },
                "half_open_calls",
            ),
        ];
        for (config, field) in cases {
            let err = CircuitBreaker::new(&config, Clock::System).unwrap_err();
            assert!(err.to_string().starts_with(field), "{config:?}: {err}");
        }
        let edges = [
            BreakerConfig {
                failure_rate: 100.0,
                slow_call_ms: f64::INFINITY,
                open_ms: 0.0,
                ..base.clone()
            },
            BreakerConfig {
                window: MAX_WINDOW,
                min_calls: u32::MAX,
                ..base
            },
        ];
        for config in edges {
            assert!(
                CircuitBreaker::new(&config, Clock::System).is_ok(),
                "{config:?}"
            );
        }
    }

    #[test]
    fn bad_durations_are_rejected_and_change_nothing() {
        let breaker = CircuitBreaker::new(&config(1, 1, 1), Clock::System).unwrap();
        for bad in [-1.0, f64::NAN, f64::NEG_INFINITY] {
            let err = breaker.record(false, bad).unwrap_err();
            assert!(err.to_string().starts_with("duration_ms"), "{err}");
        }
        assert_eq!(breaker.state(), Closed);
        assert_eq!(breaker.metrics().calls, 0);
    }

    #[test]
    fn half_open_permits_are_bounded_across_threads() {
        let clock = ManualClock::new(0.0).unwrap();
        let breaker =
            Arc::new(CircuitBreaker::new(&config(1, 1, 3), Clock::Manual(clock.clone())).unwrap());
        breaker.record(false, 1.0).unwrap();
        clock.advance(10_000.0).unwrap();
        let granted = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (breaker, granted) = (Arc::clone(&breaker), Arc::clone(&granted));
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        if breaker.try_acquire() {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(granted.load(Ordering::Relaxed), 3);
        assert_eq!(breaker.state(), HalfOpen);
    }

    #[test]
    fn concurrent_records_keep_the_window_consistent() {
        let breaker = Arc::new(
            CircuitBreaker::new(
                &BreakerConfig {
                    failure_rate: 100.0,
                    ..config(100, 100, 1)
                },
                Clock::System,
            )
            .unwrap(),
        );
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let breaker = Arc::clone(&breaker);
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        // Every fourth call of thread 0 fails: never 100%, so the breaker stays closed.
                        breaker.record(!(t == 0 && i % 4 == 0), 1.0).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let metrics = breaker.metrics();
        assert_eq!(breaker.state(), Closed);
        assert_eq!(metrics.calls, 100);
        assert!(metrics.failed <= 100 && metrics.slow == 0, "{metrics:?}");
    }
}
