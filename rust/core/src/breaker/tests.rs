//! Table-driven tests of the circuit breaker on a manual clock.
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
