//! Token buckets and budget counters under arbitrary sequences of takes, reservations, settlements and
//! clock moves (backwards too) keep their documented invariants.
//!
//! - `TokenBucket`: tokens stay within `0..=capacity`; a take succeeds exactly when the tokens are there
//!   and removes exactly that many; after waiting `retry_after_ms` (and nothing else) the take succeeds.
//! - `BudgetCounter`: matches a model in whole nano-dollars (settled and reserved, per UTC period, the
//!   period only moving forward), so `spent` and `remaining` are exact and a reservation succeeds exactly
//!   when it fits.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tiergate_core::clock::{utc_day, utc_month, Clock, ManualClock};
use tiergate_core::limits::{BudgetCounter, BudgetPeriod, TokenBucket};

#[derive(Arbitrary, Debug)]
struct Case {
    start_ms: u32,
    capacity: u16,
    refill_per_sec: u16,
    limit_cents: u32,
    monthly: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Take(u16),
    TakeRaw(f64),
    RetryAfterThenTake(u16),
    Reserve(u32),
    ReserveRaw(f64),
    Settle {
        reserved: u32,
        actual: u32,
    },
    Advance(u32),
    /// Sets the clock to `start_ms + value * 1000` (seconds), possibly before now.
    Set(u32),
}

/// Micro-dollars to USD: amounts the fuzzer picks are whole micro-dollars, well above the counter's nanos.
fn usd(micros: u32) -> f64 {
    f64::from(micros) / 1e6
}

fn nanos(usd: f64) -> u64 {
    (usd * 1e9).round() as u64
}

struct BudgetModel {
    limit: u64,
    period: BudgetPeriod,
    key: i64,
    settled: u64,
    reserved: u64,
}

impl BudgetModel {
    fn roll(&mut self, unix_ms: i64) {
        let key = match self.period {
            BudgetPeriod::Day => utc_day(unix_ms),
            BudgetPeriod::Month => utc_month(unix_ms),
        };
        if key > self.key {
            self.key = key;
            self.settled = 0;
        }
    }

    fn spent(&self) -> f64 {
        self.settled.saturating_add(self.reserved) as f64 / 1e9
    }

    fn remaining(&self) -> f64 {
        self.limit
            .saturating_sub(self.settled.saturating_add(self.reserved)) as f64
            / 1e9
    }
}

fuzz_target!(|case: Case| {
    let clock = ManualClock::new(f64::from(case.start_ms)).expect("a finite start");
    let unix_ms = |clock: &ManualClock| (clock.now_us() / 1000) as i64;

    let capacity = f64::from(case.capacity) / 8.0 + 0.125;
    let bucket = TokenBucket::new(
        capacity,
        f64::from(case.refill_per_sec) / 4.0,
        Clock::Manual(clock.clone()),
    )
    .expect("a valid bucket");

    let period = if case.monthly {
        BudgetPeriod::Month
    } else {
        BudgetPeriod::Day
    };
    let limit = f64::from(case.limit_cents) / 100.0;
    let budget =
        BudgetCounter::new(limit, period, Clock::Manual(clock.clone())).expect("a valid budget");
    let mut model = BudgetModel {
        limit: nanos(limit),
        period,
        key: 0,
        settled: 0,
        reserved: 0,
    };
    model.roll(unix_ms(&clock));

    for op in case.ops.iter().take(256) {
        match *op {
            Op::Take(eighths) => take(&bucket, f64::from(eighths) / 8.0),
            Op::TakeRaw(amount) => {
                if amount.is_finite() && amount >= 0.0 {
                    take(&bucket, amount);
                } else {
                    assert!(bucket.try_take(amount).is_err(), "{amount} was accepted");
                }
            }
            Op::RetryAfterThenTake(eighths) => {
                let amount = f64::from(eighths) / 8.0;
                let wait_ms = bucket.retry_after_ms(amount).expect("a valid amount");
                assert!(wait_ms >= 0.0, "{wait_ms}");
                if wait_ms.is_infinite() {
                    assert!(
                        amount > capacity || bucket.available() < amount,
                        "inf for {amount}"
                    );
                } else if wait_ms < 1e9 {
                    clock.advance(wait_ms).expect("a finite wait");
                    assert!(
                        bucket.try_take(amount).expect("a valid amount"),
                        "{amount} not there after {wait_ms} ms"
                    );
                }
            }
            Op::Reserve(micros) => {
                model.roll(unix_ms(&clock));
                let amount = nanos(usd(micros));
                let fits = model
                    .settled
                    .saturating_add(model.reserved)
                    .saturating_add(amount)
                    <= model.limit;
                assert_eq!(
                    budget.try_reserve(usd(micros)).expect("a valid amount"),
                    fits
                );
                if fits {
                    model.reserved += amount;
                }
            }
            Op::ReserveRaw(amount) => {
                if !(amount.is_finite() && amount >= 0.0) {
                    assert!(budget.try_reserve(amount).is_err(), "{amount} was accepted");
                }
            }
            Op::Settle { reserved, actual } => {
                model.roll(unix_ms(&clock));
                budget
                    .settle(usd(reserved), usd(actual))
                    .expect("valid amounts");
                model.reserved = model.reserved.saturating_sub(nanos(usd(reserved)));
                model.settled = model.settled.saturating_add(nanos(usd(actual)));
            }
            Op::Advance(ms) => clock.advance(f64::from(ms)).expect("a finite advance"),
            Op::Set(seconds) => clock
                .set(f64::from(case.start_ms) + f64::from(seconds) * 1000.0)
                .expect("a finite time"),
        }
        let available = bucket.available();
        assert!(
            (0.0..=capacity).contains(&available),
            "{available} tokens in a bucket of {capacity}"
        );
        model.roll(unix_ms(&clock));
        assert_eq!(budget.spent(), model.spent(), "spent after {op:?}");
        assert_eq!(
            budget.remaining(),
            model.remaining(),
            "remaining after {op:?}"
        );
    }
});

/// A take succeeds exactly when the tokens are there, and removes exactly `amount`.
fn take(bucket: &TokenBucket, amount: f64) {
    let before = bucket.available();
    let taken = bucket.try_take(amount).expect("a valid amount");
    assert_eq!(taken, before >= amount, "take {amount} of {before}");
    let after = bucket.available();
    assert_eq!(
        after,
        if taken { before - amount } else { before },
        "take {amount} of {before}"
    );
}
