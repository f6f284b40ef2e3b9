//! Rate limits ([`TokenBucket`]) and spend limits ([`BudgetCounter`]), both thread-safe.
//!
//! Amounts (tokens, dollars) must be finite and non-negative: a NaN or negative amount is a bug upstream,
//! and letting it through would silently mint tokens or budget, so it is an error here.

use std::str::FromStr;

use parking_lot::Mutex;

use crate::clock::{utc_day, utc_month, Clock};

/// A rejected limit argument.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// An amount or setting that is NaN, infinite or negative.
    #[error("{name} must be a finite number >= 0, got {value}")]
    NotFiniteNonNegative { name: &'static str, value: f64 },
    /// A setting that must be strictly positive.
    #[error("{name} must be a finite number > 0, got {value}")]
    NotPositive { name: &'static str, value: f64 },
    /// A budget period other than "day" or "month".
    #[error("period must be \"day\" or \"month\", got {0:?}")]
    UnknownPeriod(String),
}

fn check_amount(name: &'static str, value: f64) -> Result<f64, LimitError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(LimitError::NotFiniteNonNegative { name, value })
    }
}

/// A token bucket: holds up to `capacity` tokens, starts full, refills continuously at `refill_per_sec`.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    /// Tokens per microsecond, the clock's unit.
    refill_per_us: f64,
    clock: Clock,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    /// Monotonic time (µs) up to which refill has been credited.
    refilled_at_us: u64,
}

impl TokenBucket {
    /// A full bucket. `capacity` must be > 0; `refill_per_sec` >= 0 (0: a bucket that never refills).
    pub fn new(capacity: f64, refill_per_sec: f64, clock: Clock) -> Result<Self, LimitError> {
        if !(capacity.is_finite() && capacity > 0.0) {
            return Err(LimitError::NotPositive {
                name: "capacity",
                value: capacity,
            });
        }
        let refill_per_sec = check_amount("refill_per_sec", refill_per_sec)?;
        let refilled_at_us = clock.now_us();
        Ok(Self {
            capacity,
            refill_per_us: refill_per_sec / 1e6,
            clock,
            state: Mutex::new(BucketState {
                tokens: capacity,
                refilled_at_us,
            }),
        })
    }

    /// The tokens the bucket would hold `elapsed_us` after `state` was last refilled. Every refill goes
    /// through here, so `retry_after_ms` can check its answer against exactly the arithmetic `try_take` will
    /// use.
    fn refilled(&self, state: &BucketState, elapsed_us: u64) -> f64 {
        (state.tokens + elapsed_us as f64 * self.refill_per_us).min(self.capacity)
    }

    /// Credits the refill up to now; returns the time it read.
    fn refill(&self, state: &mut BucketState) -> u64 {
        let now = self.clock.now_us();
        // A clock that went backwards (a manual clock being set) credits nothing until it is past the last
        // refill again: the same interval is never credited twice.
        if now > state.refilled_at_us {
            state.tokens = self.refilled(state, now - state.refilled_at_us);
            state.refilled_at_us = now;
        }
        now
    }

    /// Takes `amount` tokens if the bucket holds that many; otherwise takes nothing.
    pub fn try_take(&self, amount: f64) -> Result<bool, LimitError> {
        let amount = check_amount("amount", amount)?;
        let mut state = self.state.lock();
        self.refill(&mut state);
        if state.tokens >= amount {
            state.tokens -= amount;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// The tokens in the bucket now.
    pub fn available(&self) -> f64 {
        let mut state = self.state.lock();
        self.refill(&mut state);
        state.tokens
    }

    /// How many milliseconds until `amount` could be taken: 0 if now, infinity if it exceeds the capacity
    /// or the bucket never refills. Rounded up to the clock's microsecond, so that waiting exactly this long
    /// (with no other takes in between) is enough.
    pub fn retry_after_ms(&self, amount: f64) -> Result<f64, LimitError> {
        let amount = check_amount("amount", amount)?;
        if amount > self.capacity {
            return Ok(f64::INFINITY);
        }
        let mut state = self.state.lock();
        let now = self.refill(&mut state);
        if state.tokens >= amount {
            return Ok(0.0);
        }
        if self.refill_per_us == 0.0 {
            return Ok(f64::INFINITY);
        }
        // A clock behind the last refill (set back) credits nothing until it has caught up: that time comes
        // first, and the refill time below counts from there.
        let behind_us = state.refilled_at_us.saturating_sub(now);
        // `as` saturates; the wait is finite and positive here.
        let mut wait_us = ((amount - state.tokens) / self.refill_per_us).ceil() as u64;
        // The division is the answer up to floating-point rounding, which can put it one microsecond off either
        // way. Checking against `refilled` (the arithmetic `try_take` uses) makes it exact: the smallest whole
        // microsecond after which `amount` is there. Steps up double so the loop ends within 64 rounds even
        // where one microsecond is below the f64 resolution of the wait; the step down runs at most twice in
        // practice and never below 1 (0 was answered above).
        let mut step = 1_u64;
        while wait_us < u64::MAX && self.refilled(&state, wait_us) < amount {
            wait_us = wait_us.saturating_add(step);
            step = step.saturating_mul(2);
        }
        if step == 1 {
            while wait_us > 1 && self.refilled(&state, wait_us - 1) >= amount {
                wait_us -= 1;
            }
        }
        Ok(wait_us.saturating_add(behind_us) as f64 / 1000.0)
    }
}

/// The calendar period a [`BudgetCounter`] resets on, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetPeriod {
    Day,
    Month,
}

impl BudgetPeriod {
    /// A number that identifies the period containing `unix_ms`, increasing with time.
    fn key(self, unix_ms: i64) -> i64 {
        match self {
            BudgetPeriod::Day => utc_day(unix_ms),
            BudgetPeriod::Month => utc_month(unix_ms),
        }
    }
}

impl FromStr for BudgetPeriod {
    type Err = LimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(BudgetPeriod::Day),
            "month" => Ok(BudgetPeriod::Month),
            other => Err(LimitError::UnknownPeriod(other.to_owned())),
        }
    }
}

/// Spend (in USD) against a limit per UTC calendar day or month: reserve an estimate before a call, settle it
/// with the real cost afterwards.
///
/// When a new period starts, the settled spend goes back to 0 but reservations still outstanding are carried
/// over: those calls are still running, and their real cost is counted in the period in which it is settled.
/// The period only ever moves forward: if the wall clock steps back across a boundary (NTP, a manual clock),
/// the counter keeps the later period instead of handing out a fresh budget.
///
/// Money is kept in whole nano-dollars (1e-9 USD, far below any per-call price) so that reserving and
/// settling the same amounts returns exactly to where it started: with f64 sums, 0.1 + 0.2 - 0.1 - 0.2 leaves
/// a residue that would make an idle counter look slightly spent.
#[derive(Debug)]
pub struct BudgetCounter {
    limit: u64,
    period: BudgetPeriod,
    clock: Clock,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    period_key: i64,
    /// Real cost settled in this period, in nano-dollars.
    settled: u64,
    /// Reservations not yet settled, in nano-dollars.
    reserved: u64,
}

const NANOS_PER_USD: f64 = 1e9;

/// USD to whole nano-dollars, after validation.
fn usd_to_nanos(name: &'static str, usd: f64) -> Result<u64, LimitError> {
    // `as` saturates: amounts beyond ~1.8e10 USD (which no budget reaches) clamp to u64::MAX.
    Ok((check_amount(name, usd)? * NANOS_PER_USD).round() as u64)
}

fn nanos_to_usd(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_USD
}

impl BudgetCounter {
    /// A counter with nothing spent in the current period. `limit` must be finite and >= 0.
    pub fn new(limit: f64, period: BudgetPeriod, clock: Clock) -> Result<Self, LimitError> {
        let limit = usd_to_nanos("limit", limit)?;
        let period_key = period.key(clock.unix_ms());
        Ok(Self {
            limit,
            period,
            clock,
            state: Mutex::new(BudgetState {
                period_key,
                settled: 0,
                reserved: 0,
            }),
        })
    }

    fn roll(&self, state: &mut BudgetState) {
        let key = self.period.key(self.clock.unix_ms());
        if key > state.period_key {
            state.period_key = key;
            state.settled = 0;
        }
    }

    /// Reserves `amount` USD if it fits in what is left of this period's budget; otherwise reserves nothing.
    pub fn try_reserve(&self, amount: f64) -> Result<bool, LimitError> {
        let amount = usd_to_nanos("amount", amount)?;
        let mut state = self.state.lock();
        self.roll(&mut state);
        if state
            .settled
            .saturating_add(state.reserved)
            .saturating_add(amount)
            <= self.limit
        {
            state.reserved += amount;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Replaces a reservation of `reserved` USD with the real cost `actual`. The actual cost is counted even
    /// if it goes over the limit (the money is spent); later reservations then fail until the period ends.
    /// Settling more than is outstanding releases only what is outstanding: the counter cannot tell whose
    /// reservation is whose, so it never lets reservations go below zero.
    pub fn settle(&self, reserved: f64, actual: f64) -> Result<(), LimitError> {
        let reserved = usd_to_nanos("reserved", reserved)?;
        let actual = usd_to_nanos("actual", actual)?;
        let mut state = self.state.lock();
        self.roll(&mut state);
        state.reserved = state.reserved.saturating_sub(reserved);
        state.settled = state.settled.saturating_add(actual);
        Ok(())
    }

    /// This period's settled cost plus the reservations outstanding, in USD.
    pub fn spent(&self) -> f64 {
        let mut state = self.state.lock();
        self.roll(&mut state);
        nanos_to_usd(state.settled.saturating_add(state.reserved))
    }

    /// What can still be reserved in this period, in USD (never negative).
    pub fn remaining(&self) -> f64 {
        let mut state = self.state.lock();
        self.roll(&mut state);
        nanos_to_usd(
            self.limit
                .saturating_sub(state.settled.saturating_add(state.reserved)),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[derive(Debug, Clone, Copy)]
    enum Bucket {
        /// try_take(amount) must return this.
        Take(f64, bool),
        /// available() must be this.
        Holds(f64),
        /// retry_after_ms(amount) must be this.
        RetryAfter(f64, f64),
        Advance(f64),
        Set(f64),
    }

    // One scenario per row: rustfmt would put every step on its own line.
    #[rustfmt::skip]
    #[test]
    fn token_bucket() {
        use Bucket::*;
        let inf = f64::INFINITY;
        // (name, capacity, refill_per_sec, steps); the clock starts at 1000 ms.
        let cases: &[(&str, f64, f64, &[Bucket])] = &[
            ("starts full and a failed take takes nothing", 5.0, 1.0, &[
                Holds(5.0), Take(3.0, true), Holds(2.0), Take(3.0, false), Holds(2.0), Take(2.0, true), Holds(0.0),
            ]),
            ("refills continuously, up to the capacity", 10.0, 2.0, &[
                Take(10.0, true), Advance(250.0), Holds(0.5), Take(1.0, false), Advance(250.0), Take(1.0, true),
                Holds(0.0), Advance(1e9), Holds(10.0),
            ]),
            ("zero is always available; more than the capacity never is", 3.0, 1.0, &[
                Take(3.0, true), Take(0.0, true), Take(3.5, false), Advance(1e9), Take(3.5, false), Holds(3.0),
            ]),
            ("retry_after: 0 now, the refill time, or inf beyond capacity", 10.0, 2.0, &[
                RetryAfter(10.0, 0.0), RetryAfter(10.5, inf), Take(10.0, true),
                RetryAfter(1.0, 500.0), RetryAfter(10.0, 5_000.0), RetryAfter(0.0, 0.0),
                Advance(250.0), RetryAfter(1.0, 250.0), RetryAfter(0.5, 0.0),
                Advance(250.0), Take(1.0, true), Take(0.1, false),
            ]),
            ("retry_after rounds up to the microsecond", 1.0, 3.0, &[
                Take(1.0, true), RetryAfter(1.0, 333.334), Advance(333.333), Take(1.0, false),
                Advance(0.001), Take(1.0, true),
            ]),
            ("a bucket that never refills", 2.0, 0.0, &[
                Take(2.0, true), RetryAfter(1.0, inf), RetryAfter(0.0, 0.0), Advance(1e9), Take(1.0, false),
            ]),
            ("a clock set backwards credits nothing, and nothing twice", 10.0, 1.0, &[
                Take(10.0, true), Set(0.0), Holds(0.0), Advance(500.0), Holds(0.0),
                Set(2_000.0), Holds(1.0),
            ]),
            // Found by rust/fuzz (limits): retry_after used to leave out the time to catch up (1000 ms).
            ("retry_after includes the time a clock set backwards takes to catch up", 10.0, 1.0, &[
                Take(10.0, true), Set(500.0), RetryAfter(1.0, 1_500.0), Advance(1_499.999), Take(1.0, false),
                Advance(0.001), Take(1.0, true),
            ]),
        ];
        for &(name, capacity, refill, steps) in cases {
            let clock = ManualClock::new(1_000.0).unwrap();
            let bucket = TokenBucket::new(capacity, refill, Clock::Manual(clock.clone())).unwrap();
            for (i, step) in steps.iter().enumerate() {
                let at = format!("{name}: step {i} {step:?}");
                match *step {
                    Take(amount, expected) => assert_eq!(bucket.try_take(amount).unwrap(), expected, "{at}"),
                    Holds(expected) => assert!((bucket.available() - expected).abs() < 1e-9, "{at}"),
                    RetryAfter(amount, expected) => {
                        assert_eq!(bucket.retry_after_ms(amount).unwrap(), expected, "{at}");
                    }
                    Advance(ms) => clock.advance(ms).unwrap(),
                    Set(ms) => clock.set(ms).unwrap(),
                }
            }
        }
    }

    #[test]
    fn waiting_retry_after_is_always_enough_and_barely_so() {
        let rates = [0.1, 0.3, 1.0 / 3.0, 0.7, 3.0, 7.0, 1_000.0, 12_345.678];
        let amounts = [0.1, 0.3, 1.0, 2.5, 7.0];
        // (refill_per_sec, amount, ms refilled before asking): from an empty bucket, from one that already
        // holds 37% of `amount`, and two where the plain division comes out a microsecond short.
        let mut cases = vec![(0.7, 7.0, 306.147), (1.0 / 3.0, 0.3, 186.993)];
        for rate in rates {
            for amount in amounts {
                cases.push((rate, amount, 0.0));
                cases.push((rate, amount, amount * 0.37 / rate * 1000.0));
            }
        }
        for (rate, amount, refilled_ms) in cases {
            let clock = ManualClock::new(0.0).unwrap();
            let empty = || {
                let bucket = TokenBucket::new(10.0, rate, Clock::Manual(clock.clone())).unwrap();
                assert!(bucket.try_take(10.0).unwrap());
                bucket
            };
            let (enough, barely) = (empty(), empty());
            clock.advance(refilled_ms).unwrap();
            let wait = enough.retry_after_ms(amount).unwrap();
            // Same question, same history: the two buckets are in the same state.
            assert_eq!(barely.retry_after_ms(amount).unwrap(), wait);
            let at =
                format!("rate {rate}, amount {amount}, after {refilled_ms} ms: wait {wait} ms");
            assert!(wait > 0.0, "{at}");
            clock.advance(wait - 0.001).unwrap();
            assert!(
                !barely.try_take(amount).unwrap(),
                "one microsecond less is not enough: {at}"
            );
            clock.advance(0.001).unwrap();
            assert!(enough.try_take(amount).unwrap(), "{at}");
        }
    }

    #[test]
    fn bad_bucket_arguments_are_rejected() {
        for (capacity, refill) in [
            (0.0, 1.0),
            (-1.0, 1.0),
            (f64::NAN, 1.0),
            (f64::INFINITY, 1.0),
            (1.0, -1.0),
        ] {
            assert!(
                TokenBucket::new(capacity, refill, Clock::System).is_err(),
                "{capacity}, {refill}"
            );
        }
        for refill in [f64::NAN, f64::INFINITY] {
            assert!(
                TokenBucket::new(1.0, refill, Clock::System).is_err(),
                "{refill}"
            );
        }
        let bucket = TokenBucket::new(5.0, 1.0, Clock::System).unwrap();
        for bad in [-1.0, f64::NAN, f64::INFINITY, -0.0001] {
            let err = bucket.try_take(bad).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("amount must be a finite number >= 0"),
                "{err}"
            );
            assert!(bucket.retry_after_ms(bad).is_err(), "{bad}");
        }
        assert_eq!(bucket.available(), 5.0, "rejected takes take nothing");
    }

    #[derive(Debug, Clone, Copy)]
    enum Budget {
        /// try_reserve(amount) must return this.
        Reserve(f64, bool),
        Settle(f64, f64),
        /// spent() and remaining() must be these.
        Is(f64, f64),
        Advance(f64),
        Set(f64),
    }

    /// 2024-02-28T23:00:00Z, one hour before a leap day.
    const FEB_28_23H: f64 = 1_709_161_200_000.0;
    const HOUR: f64 = 3_600_000.0;
    const DAY: f64 = 24.0 * HOUR;

    #[rustfmt::skip]
    #[test]
    fn budget_counter() {
        use Budget::*;
        use BudgetPeriod::{Day, Month};
        // (name, limit, period, steps); the clock starts at FEB_28_23H.
        let cases: &[(&str, f64, BudgetPeriod, &[Budget])] = &[
            ("reservations up to the limit, not beyond", 10.0, Day, &[
                Is(0.0, 10.0), Reserve(6.0, true), Reserve(4.5, false), Is(6.0, 4.0), Reserve(4.0, true),
                Is(10.0, 0.0), Reserve(0.0, true), Reserve(0.01, false),
            ]),
            ("settle replaces the reservation with the real cost", 10.0, Day, &[
                Reserve(5.0, true), Settle(5.0, 2.0), Is(2.0, 8.0), Reserve(8.0, true), Reserve(0.01, false),
            ]),
            ("a real cost over the limit counts, and blocks until the period ends", 10.0, Day, &[
                Reserve(5.0, true), Settle(5.0, 12.0), Is(12.0, 0.0), Reserve(0.0, false),
                Advance(HOUR), Is(0.0, 10.0), Reserve(10.0, true),
            ]),
            ("many small amounts add up exactly", 1.0, Day, &[
                Reserve(0.1, true), Reserve(0.2, true), Reserve(0.7, true), Reserve(1e-9, false),
                Settle(0.1, 0.0), Settle(0.2, 0.0), Settle(0.7, 0.0), Is(0.0, 1.0),
            ]),
            ("settling one reservation leaves the others held", 10.0, Day, &[
                Reserve(3.0, true), Reserve(4.0, true), Settle(3.0, 2.0), Is(6.0, 4.0), Reserve(4.5, false),
            ]),
            ("settling more than is reserved frees only what is reserved", 10.0, Day, &[
                Reserve(1.0, true), Settle(5.0, 0.0), Is(0.0, 10.0), Reserve(10.0, true),
            ]),
            ("the day rolls over at UTC midnight, even on a leap day", 10.0, Day, &[
                Reserve(10.0, true), Settle(10.0, 10.0), Advance(HOUR - 1.0), Is(10.0, 0.0),
                Advance(1.0), Is(0.0, 10.0), Settle(0.0, 3.0),
                Advance(DAY - 1.0), Is(3.0, 7.0), Advance(1.0), Is(0.0, 10.0),
            ]),
            ("reservations outstanding at the rollover carry over; their cost lands when settled", 10.0, Day, &[
                Settle(0.0, 6.0), Reserve(4.0, true), Advance(HOUR), Is(4.0, 6.0),
                Settle(4.0, 3.0), Is(3.0, 7.0),
            ]),
            ("the month rolls over on the first, not at midnight", 10.0, Month, &[
                Settle(0.0, 10.0), Advance(HOUR), Is(10.0, 0.0),
                Advance(DAY - 1.0), Is(10.0, 0.0), Advance(1.0), Is(0.0, 10.0),
            ]),
            ("a wall clock stepping back never resets the budget", 10.0, Day, &[
                Settle(0.0, 4.0), Advance(HOUR), Settle(0.0, 5.0), Set(FEB_28_23H), Is(5.0, 5.0),
                Set(FEB_28_23H + HOUR + DAY), Is(0.0, 10.0),
            ]),
            ("a zero limit admits only zero", 0.0, Day, &[
                Reserve(0.0, true), Reserve(1e-9, false), Is(0.0, 0.0),
            ]),
        ];
        for &(name, limit, period, steps) in cases {
            let clock = ManualClock::new(FEB_28_23H).unwrap();
            let budget = BudgetCounter::new(limit, period, Clock::Manual(clock.clone())).unwrap();
            for (i, step) in steps.iter().enumerate() {
                let at = format!("{name}: step {i} {step:?}");
                match *step {
                    Reserve(amount, expected) => assert_eq!(budget.try_reserve(amount).unwrap(), expected, "{at}"),
                    Settle(reserved, actual) => budget.settle(reserved, actual).unwrap(),
                    Is(spent, remaining) => assert_eq!((budget.spent(), budget.remaining()), (spent, remaining), "{at}"),
                    Advance(ms) => clock.advance(ms).unwrap(),
                    Set(ms) => clock.set(ms).unwrap(),
                }
            }
        }
    }

    #[test]
    fn bad_budget_arguments_are_rejected() {
        for limit in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(
                BudgetCounter::new(limit, BudgetPeriod::Day, Clock::System).is_err(),
                "{limit}"
            );
        }
        assert_eq!(
            "week".parse::<BudgetPeriod>(),
            Err(LimitError::UnknownPeriod("week".into()))
        );
        assert_eq!("month".parse::<BudgetPeriod>(), Ok(BudgetPeriod::Month));
        let budget = BudgetCounter::new(10.0, BudgetPeriod::Day, Clock::System).unwrap();
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(budget.try_reserve(bad).is_err(), "{bad}");
            assert!(budget.settle(bad, 1.0).is_err(), "{bad}");
            let err = budget.settle(1.0, bad).unwrap_err();
            assert!(err.to_string().starts_with("actual must be"), "{err}");
        }
        assert_eq!(budget.spent(), 0.0, "rejected calls change nothing");
    }
}
