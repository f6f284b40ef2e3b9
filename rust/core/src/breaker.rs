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
mod tests;
