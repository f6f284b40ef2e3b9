//! The time source that breakers and limits read, injectable so that every transition can be table-tested.
//!
//! [`Clock::System`] reads the OS: a monotonic clock for durations (open waits, refills) and the UTC wall clock
//! for calendar periods (budgets). [`Clock::Manual`] reads a [`ManualClock`], a shared counter that only moves
//! when a test tells it to; it serves both readings, so in a budget test its value is "milliseconds since the
//! Unix epoch".
//!
//! Time is carried as whole microseconds (`u64`): integer arithmetic makes elapsed time exact and ordering
//! total, and a microsecond is far below anything a breaker or a rate limit can meaningfully distinguish.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds in one UTC day (UTC has no leap seconds in Unix time).
const MS_PER_DAY: i64 = 86_400_000;

/// A rejected clock argument.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClockError {
    /// Times and advances must be finite and non-negative.
    #[error("{name} must be a finite number >= 0, got {value}")]
    InvalidMillis { name: &'static str, value: f64 },
}

/// Converts milliseconds to whole microseconds, rounding to the nearest one.
fn ms_to_us(name: &'static str, ms: f64) -> Result<u64, ClockError> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(ClockError::InvalidMillis { name, value: ms });
    }
    // `as` saturates at u64::MAX, which is ~584,000 years: no real input gets there.
    Ok((ms * 1000.0).round() as u64)
}

/// A clock that only moves when told to. Cloning shares the same time (it is a handle), so a test keeps one
/// clone and hands others to the breakers and limits under test.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `start_ms` milliseconds (rounded to the microsecond).
    pub fn new(start_ms: f64) -> Result<Self, ClockError> {
        let us = ms_to_us("start_ms", start_ms)?;
        Ok(Self {
            micros: Arc::new(AtomicU64::new(us)),
        })
    }

    /// The current time in milliseconds.
    pub fn now_ms(&self) -> f64 {
        self.now_us() as f64 / 1000.0
    }

    /// The current time in whole microseconds.
    pub fn now_us(&self) -> u64 {
        // Acquire pairs with the Release in advance/set, so a thread that sees the new time also sees
        // everything the advancing thread wrote before moving the clock.
        self.micros.load(Ordering::Acquire)
    }

    /// Moves the clock forward by `ms` milliseconds (use [`ManualClock::set`] to move it back).
    pub fn advance(&self, ms: f64) -> Result<(), ClockError> {
        let us = ms_to_us("ms", ms)?;
        // fetch_update instead of fetch_add so an absurd advance saturates instead of wrapping to the past.
        let _ = self
            .micros
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(us))
            });
        Ok(())
    }

    /// Puts the clock at `ms` milliseconds, forwards or backwards.
    pub fn set(&self, ms: f64) -> Result<(), ClockError> {
        let us = ms_to_us("ms", ms)?;
        self.micros.store(us, Ordering::Release);
        Ok(())
    }
}

/// The time source of a breaker or limit.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The operating system's clocks.
    #[default]
    System,
    /// A [`ManualClock`] handle; its value serves as both the monotonic and the wall-clock reading.
    Manual(ManualClock),
}

impl Clock {
    /// Monotonic time in whole microseconds since an arbitrary origin (for the system clock: the first
    /// reading in this process). Only differences between readings mean anything.
    pub fn now_us(&self) -> u64 {
        match self {
            Clock::System => {
                static ORIGIN: OnceLock<Instant> = OnceLock::new();
                let origin = *ORIGIN.get_or_init(Instant::now);
                u64::try_from(Instant::now().saturating_duration_since(origin).as_micros())
                    .unwrap_or(u64::MAX)
            }
            Clock::Manual(clock) => clock.now_us(),
        }
    }

    /// Wall-clock time in milliseconds since the Unix epoch, UTC. It can jump (NTP, manual `set`), so callers
    /// must not treat it as monotonic.
    pub fn unix_ms(&self) -> i64 {
        match self {
            Clock::System => match SystemTime::now().duration_since(UNIX_EPOCH) {
                Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
                // A system clock set before 1970 is broken; clamping to the epoch keeps periods well-defined.
                Err(_) => 0,
            },
            Clock::Manual(clock) => i64::try_from(clock.now_us() / 1000).unwrap_or(i64::MAX),
        }
    }
}

/// The UTC day that `unix_ms` falls in, as days since 1970-01-01.
pub fn utc_day(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(MS_PER_DAY)
}

/// The UTC calendar month that `unix_ms` falls in, as `year * 12 + (month - 1)`: consecutive months get
/// consecutive numbers, so "the month changed" is a plain comparison.
pub fn utc_month(unix_ms: i64) -> i64 {
    let (year, month, _) = civil_from_days(utc_day(unix_ms));
    year * 12 + i64::from(month) - 1
}

/// Days since 1970-01-01 to a proleptic Gregorian `(year, month 1..=12, day 1..=31)`.
///
/// Howard Hinnant's `civil_from_days` algorithm: it counts in 400-year eras (146,097 days each) of years that
/// start on March 1st, so the leap day falls at the end of the year and every month length follows from one
/// linear formula. Exact for every `i64` day count that does not overflow the era arithmetic (far beyond any
/// date a clock can produce).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the origin from 1970-01-01 to 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11], 0 = March
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1; // [1, 31]
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    }; // [1, 12]
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are within u32 by the ranges above; the fallbacks are unreachable.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1.5).unwrap();
        let shared = clock.clone();
        assert_eq!(clock.now_ms(), 1.5);
        assert_eq!(clock.now_us(), 1_500);
        shared.advance(2.25).unwrap();
        assert_eq!(clock.now_ms(), 3.75);
        shared.set(0.5).unwrap();
        assert_eq!(clock.now_ms(), 0.5, "set may move the clock backwards");
        shared.advance(0.0004).unwrap();
        assert_eq!(clock.now_us(), 500, "sub-microsecond advances round away");
        shared.advance(0.0006).unwrap();
        assert_eq!(clock.now_us(), 501);
    }

    #[test]
    fn manual_clock_rejects_bad_times() {
        for bad in [-1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(ManualClock::new(bad).is_err(), "new({bad})");
            let clock = ManualClock::new(7.0).unwrap();
            assert!(clock.advance(bad).is_err(), "advance({bad})");
            assert!(clock.set(bad).is_err(), "set({bad})");
            assert_eq!(
                clock.now_ms(),
                7.0,
                "a rejected call leaves the clock alone"
            );
        }
    }

    #[test]
    fn manual_clock_advance_saturates() {
        let clock = ManualClock::new(0.0).unwrap();
        clock.set(1e300).unwrap();
        clock.advance(1e300).unwrap();
        assert_eq!(clock.now_us(), u64::MAX);
    }

    #[test]
    fn clock_enum_reads_manual_for_both_scales() {
        let manual = ManualClock::new(1_700_000_000_123.0).unwrap();
        let clock = Clock::Manual(manual.clone());
        assert_eq!(clock.now_us(), 1_700_000_000_123_000);
        assert_eq!(clock.unix_ms(), 1_700_000_000_123);
        manual.advance(1.0).unwrap();
        assert_eq!(clock.unix_ms(), 1_700_000_000_124);
    }

    #[test]
    fn system_clock_is_monotonic_and_near_now() {
        let clock = Clock::System;
        let a = clock.now_us();
        let b = clock.now_us();
        assert!(b >= a);
        // 2024-01-01 < now < 2200-01-01: a sanity bound, not a precise check.
        let now = clock.unix_ms();
        assert!(now > 1_704_067_200_000 && now < 7_258_118_400_000, "{now}");
    }

    /// An independent, obviously-correct reference: walk day by day from 1970-01-01.
    fn walk_days() -> impl Iterator<Item = (i64, i64, u32, u32)> {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_len = move |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1970_i64, 1_u32, 1_u32);
        (0_i64..).map(move |days| {
            let out = (days, y, m, d);
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
            out
        })
    }

    #[test]
    fn civil_from_days_matches_a_day_by_day_walk() {
        // 1970 to 2470 covers the 2000 (leap) and 2100/2200/2300 (not leap) century rules.
        for (days, y, m, d) in walk_days().take(500 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
        }
    }

    #[test]
    fn utc_day_and_month_boundaries() {
        // (unix ms, UTC day number, UTC month key)
        let jan_1970 = 1970 * 12;
        let cases: &[(i64, i64, i64)] = &[
            (0, 0, jan_1970),
            (MS_PER_DAY - 1, 0, jan_1970),
            (MS_PER_DAY, 1, jan_1970),
            (31 * MS_PER_DAY - 1, 30, jan_1970),
            (31 * MS_PER_DAY, 31, jan_1970 + 1),
            // 2024-02-29T23:59:59.999Z and the next millisecond, 2024-03-01T00:00:00Z.
            (1_709_251_199_999, 19_782, 2024 * 12 + 1),
            (1_709_251_200_000, 19_783, 2024 * 12 + 2),
            // 2025-12-31T23:59:59.999Z and 2026-01-01T00:00:00Z.
            (1_767_225_599_999, 20_453, 2025 * 12 + 11),
            (1_767_225_600_000, 20_454, 2026 * 12),
            // Before the epoch: 1969-12-31T23:59:59.999Z.
            (-1, -1, 1969 * 12 + 11),
        ];
        for &(ms, day, month) in cases {
            assert_eq!(utc_day(ms), day, "utc_day({ms})");
            assert_eq!(utc_month(ms), month, "utc_month({ms})");
        }
    }
}
