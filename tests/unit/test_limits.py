"""ManualClock, TokenBucket and BudgetCounter through the Python binding, as tables of steps."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import pytest

from tiergate._native import BudgetCounter, ManualClock, TokenBucket

INF = math.inf
HOUR = 3_600_000.0
DAY = 24 * HOUR


def unix_ms(year: int, month: int, day: int, hour: int = 0) -> float:
    """A UTC date-time as Unix milliseconds, computed by the standard library (independent of the Rust)."""
    return datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000


# -- ManualClock ---------------------------------------------------------------------------------------------


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(1.5)
    assert clock.now_ms() == 1.5
    clock.advance(2.25)
    assert clock.now_ms() == 3.75
    clock.set(0.5)
    assert clock.now_ms() == 0.5
    assert ManualClock().now_ms() == 0.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf])
def test_manual_clock_rejects_bad_times(bad: float) -> None:
    with pytest.raises(ValueError, match="start_ms must be a finite number >= 0"):
        ManualClock(bad)
    clock = ManualClock(7.0)
    with pytest.raises(ValueError, match=r"^ms must be"):
        clock.advance(bad)
    with pytest.raises(ValueError, match=r"^ms must be"):
        clock.set(bad)
    assert clock.now_ms() == 7.0


# -- TokenBucket ---------------------------------------------------------------------------------------------

# Steps: ("take", amount, granted) | ("holds", tokens) | ("retry", amount, ms) | ("advance", ms) | ("set", ms)
# The clock starts at 1000 ms.
# fmt: off
BUCKETS: list[tuple[str, float, float, list[tuple[object, ...]]]] = [
    ("starts full; a failed take takes nothing", 5.0, 1.0, [
        ("holds", 5.0), ("take", 3.0, True), ("holds", 2.0), ("take", 3.0, False), ("holds", 2.0),
        ("take", 2.0, True), ("holds", 0.0),
    ]),
    ("refills continuously, up to the capacity", 10.0, 2.0, [
        ("take", 10.0, True), ("advance", 250.0), ("holds", 0.5), ("take", 1.0, False), ("advance", 250.0),
        ("take", 1.0, True), ("advance", 1e9), ("holds", 10.0),
    ]),
    ("one token by default; zero always; more than the capacity never", 3.0, 1.0, [
        ("take", None, True), ("holds", 2.0), ("take", 2.0, True), ("take", 0.0, True), ("take", 3.5, False),
        ("advance", 1e9), ("take", 3.5, False), ("holds", 3.0),
    ]),
    ("retry_after: 0 now, the refill time, inf beyond the capacity", 10.0, 2.0, [
        ("retry", 10.0, 0.0), ("retry", 10.5, INF), ("take", 10.0, True), ("retry", None, 500.0),
        ("retry", 10.0, 5_000.0), ("retry", 0.0, 0.0), ("advance", 250.0), ("retry", 1.0, 250.0),
        ("retry", 0.5, 0.0), ("advance", 250.0), ("take", 1.0, True), ("take", 0.1, False),
    ]),
    ("retry_after rounds up to the microsecond, and waiting that long is enough", 1.0, 3.0, [
        ("take", 1.0, True), ("retry", 1.0, 333.334), ("advance", 333.333), ("take", 1.0, False),
        ("advance", 0.001), ("take", 1.0, True),
    ]),
    ("a bucket that never refills", 2.0, 0.0, [
        ("take", 2.0, True), ("retry", 1.0, INF), ("retry", 0.0, 0.0), ("advance", 1e9), ("take", 1.0, False),
    ]),
    ("a clock set backwards credits nothing, and no interval twice", 10.0, 1.0, [
        ("take", 10.0, True), ("set", 0.0), ("holds", 0.0), ("advance", 500.0), ("holds", 0.0),
        ("set", 2_000.0), ("holds", 1.0),
    ]),
]
# fmt: on


@pytest.mark.parametrize(
    ("capacity", "refill", "steps"), [c[1:] for c in BUCKETS], ids=[c[0] for c in BUCKETS]
)
def test_token_bucket(capacity: float, refill: float, steps: list[tuple[object, ...]]) -> None:
    clock = ManualClock(1_000.0)
    bucket = TokenBucket(capacity, refill, clock)
    for i, step in enumerate(steps):
        at = f"step {i}: {step}"
        match step:
            case ("take", None, bool(granted)):
                assert bucket.try_take() is granted, at
            case ("take", float(amount), bool(granted)):
                assert bucket.try_take(amount) is granted, at
            case ("holds", float(tokens)):
                assert bucket.available() == pytest.approx(tokens, abs=1e-9), at
            case ("retry", None, float(ms)):
                assert bucket.retry_after_ms() == ms, at
            case ("retry", float(amount), float(ms)):
                assert bucket.retry_after_ms(amount) == ms, at
            case ("advance", float(ms)):
                clock.advance(ms)
            case ("set", float(ms)):
                clock.set(ms)
            case _:
                raise AssertionError(f"unknown step {step}")


@pytest.mark.parametrize(
    ("capacity", "refill"),
    [(0.0, 1.0), (-1.0, 1.0), (math.nan, 1.0), (INF, 1.0), (1.0, -1.0), (1.0, math.nan), (1.0, INF)],
)
def test_bad_bucket_settings_raise(capacity: float, refill: float) -> None:
    with pytest.raises(ValueError, match=r"capacity|refill_per_sec"):
        TokenBucket(capacity, refill)


@pytest.mark.parametrize("amount", [-1.0, -1e-9, math.nan, INF])
def test_bad_bucket_amounts_raise_and_take_nothing(amount: float) -> None:
    bucket = TokenBucket(5.0, 0.0)
    with pytest.raises(ValueError, match=r"^amount must be a finite number >= 0"):
        bucket.try_take(amount)
    with pytest.raises(ValueError, match=r"^amount"):
        bucket.retry_after_ms(amount)
    assert bucket.available() == 5.0


def test_the_system_clock_refills() -> None:
    bucket = TokenBucket(1.0, 1e6)  # a token per microsecond: refilled by the next call
    assert bucket.try_take(1.0)
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while not bucket.try_take(1.0):
        assert datetime.now(UTC) < deadline, "the system clock never moved"


def test_threads_never_take_more_than_the_bucket_holds() -> None:
    bucket = TokenBucket(1_000.0, 0.0)
    taken = [0] * 8

    def take(n: int) -> None:
        for _ in range(500):
            if bucket.try_take(1.0):
                taken[n] += 1

    threads = [threading.Thread(target=take, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(taken) == 1_000
    assert bucket.available() == 0.0


# -- BudgetCounter -------------------------------------------------------------------------------------------

# One hour before a leap day: 2024-02-28T23:00:00Z.
START = unix_ms(2024, 2, 28, 23)

# Steps: ("reserve", amount, granted) | ("settle", reserved, actual) | ("is", spent, remaining)
#        | ("advance", ms) | ("set", ms)
# fmt: off
BUDGETS: list[tuple[str, float, str, list[tuple[object, ...]]]] = [
    ("reservations up to the limit, not beyond", 10.0, "day", [
        ("is", 0.0, 10.0), ("reserve", 6.0, True), ("reserve", 4.5, False), ("is", 6.0, 4.0),
        ("reserve", 4.0, True), ("is", 10.0, 0.0), ("reserve", 0.0, True), ("reserve", 0.01, False),
    ]),
    ("settle replaces the reservation with the real cost", 10.0, "day", [
        ("reserve", 5.0, True), ("settle", 5.0, 2.0), ("is", 2.0, 8.0), ("reserve", 8.0, True),
        ("reserve", 0.01, False),
    ]),
    ("settling one reservation leaves the others held", 10.0, "day", [
        ("reserve", 3.0, True), ("reserve", 4.0, True), ("settle", 3.0, 2.0), ("is", 6.0, 4.0),
        ("reserve", 4.5, False),
    ]),
    ("a real cost over the limit counts, and blocks until the period ends", 10.0, "day", [
        ("reserve", 5.0, True), ("settle", 5.0, 12.0), ("is", 12.0, 0.0), ("reserve", 0.0, False),
        ("advance", HOUR), ("is", 0.0, 10.0), ("reserve", 10.0, True),
    ]),
    ("many small amounts add up exactly", 1.0, "day", [
        ("reserve", 0.1, True), ("reserve", 0.2, True), ("reserve", 0.7, True), ("reserve", 1e-9, False),
        ("settle", 0.1, 0.0), ("settle", 0.2, 0.0), ("settle", 0.7, 0.0), ("is", 0.0, 1.0),
    ]),
    ("settling more than is reserved frees only what is reserved", 10.0, "day", [
        ("reserve", 1.0, True), ("settle", 5.0, 0.0), ("is", 0.0, 10.0), ("reserve", 10.0, True),
    ]),
    ("the day rolls over at UTC midnight, leap day included", 10.0, "day", [
        ("settle", 0.0, 10.0), ("advance", HOUR - 1), ("is", 10.0, 0.0), ("advance", 1.0), ("is", 0.0, 10.0),
        ("settle", 0.0, 3.0), ("set", unix_ms(2024, 3, 1) - 1), ("is", 3.0, 7.0),
        ("set", unix_ms(2024, 3, 1)), ("is", 0.0, 10.0),
    ]),
    ("reservations outstanding at the rollover carry over; their cost lands when settled", 10.0, "day", [
        ("settle", 0.0, 6.0), ("reserve", 4.0, True), ("advance", HOUR), ("is", 4.0, 6.0),
        ("settle", 4.0, 3.0), ("is", 3.0, 7.0),
    ]),
    ("the month rolls over on the first, not at midnight", 10.0, "month", [
        ("settle", 0.0, 10.0), ("advance", HOUR), ("is", 10.0, 0.0),
        ("set", unix_ms(2024, 3, 1) - 1), ("is", 10.0, 0.0), ("set", unix_ms(2024, 3, 1)), ("is", 0.0, 10.0),
        ("settle", 0.0, 1.0), ("set", unix_ms(2024, 4, 1) - 1), ("is", 1.0, 9.0),
        ("set", unix_ms(2024, 4, 1)), ("is", 0.0, 10.0), ("set", unix_ms(2024, 12, 15)), ("settle", 0.0, 2.0),
        ("set", unix_ms(2025, 1, 1) - 1), ("is", 2.0, 8.0), ("set", unix_ms(2025, 1, 1)), ("is", 0.0, 10.0),
    ]),
    ("a wall clock stepping back never resets the budget", 10.0, "day", [
        ("settle", 0.0, 4.0), ("advance", HOUR), ("settle", 0.0, 5.0), ("set", START), ("is", 5.0, 5.0),
        ("set", START + HOUR + DAY), ("is", 0.0, 10.0),
    ]),
    ("a zero limit admits only zero", 0.0, "day", [
        ("reserve", 0.0, True), ("reserve", 1e-9, False), ("is", 0.0, 0.0),
    ]),
]
# fmt: on


@pytest.mark.parametrize(("limit", "period", "steps"), [c[1:] for c in BUDGETS], ids=[c[0] for c in BUDGETS])
def test_budget_counter(limit: float, period: str, steps: list[tuple[object, ...]]) -> None:
    clock = ManualClock(START)
    budget = BudgetCounter(limit, period, clock)  # type: ignore[arg-type]
    for i, step in enumerate(steps):
        at = f"step {i}: {step}"
        match step:
            case ("reserve", float(amount), bool(granted)):
                assert budget.try_reserve(amount) is granted, at
            case ("settle", float(reserved), float(actual)):
                budget.settle(reserved, actual)
            case ("is", float(spent), float(remaining)):
                assert (budget.spent(), budget.remaining()) == (spent, remaining), at
            case ("advance", float(ms)):
                clock.advance(ms)
            case ("set", float(ms)):
                clock.set(ms)
            case _:
                raise AssertionError(f"unknown step {step}")


def test_the_default_period_is_a_day() -> None:
    clock = ManualClock(START)
    budget = BudgetCounter(1.0, clock=clock)
    budget.settle(0.0, 1.0)
    clock.advance(HOUR)
    assert budget.remaining() == 1.0


def test_the_system_clock_is_the_default() -> None:
    budget = BudgetCounter(5.0, "month")
    assert budget.try_reserve(2.0)
    assert budget.spent() == 2.0


@pytest.mark.parametrize(
    ("limit", "period", "message"),
    [
        (-1.0, "day", "limit must be a finite number >= 0"),
        (math.nan, "day", "limit"),
        (INF, "month", "limit"),
        (1.0, "week", 'period must be "day" or "month", got "week"'),
        (1.0, "Day", "period"),
    ],
)
def test_bad_budget_settings_raise(limit: float, period: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^" + message):
        BudgetCounter(limit, period)  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [-1.0, math.nan, INF])
def test_bad_budget_amounts_raise_and_change_nothing(amount: float) -> None:
    budget = BudgetCounter(10.0)
    with pytest.raises(ValueError, match=r"^amount must be"):
        budget.try_reserve(amount)
    with pytest.raises(ValueError, match=r"^reserved must be"):
        budget.settle(amount, 1.0)
    with pytest.raises(ValueError, match=r"^actual must be"):
        budget.settle(1.0, amount)
    assert budget.spent() == 0.0


def test_threads_never_reserve_more_than_the_limit() -> None:
    budget = BudgetCounter(100.0)
    granted = [0] * 8

    def reserve(n: int) -> None:
        for _ in range(50):
            if budget.try_reserve(0.5):
                granted[n] += 1

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 200
    assert (budget.spent(), budget.remaining()) == (100.0, 0.0)
