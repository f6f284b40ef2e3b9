"""CircuitBreaker through the Python binding on a ManualClock: every transition as a table of steps."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from tiergate._native import CircuitBreaker, ManualClock

# -- a tiny step language: each scenario is a list of calls and what they must return or leave behind --------


@dataclass(frozen=True)
class Acquire:
    """try_acquire() must return `granted`."""

    granted: bool


@dataclass(frozen=True)
class Ok:
    ms: float = 1.0


@dataclass(frozen=True)
class Fail:
    ms: float = 1.0


@dataclass(frozen=True)
class Release:
    pass


@dataclass(frozen=True)
class Advance:
    ms: float


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class Is:
    """`state` must be this."""

    state: str


@dataclass(frozen=True)
class Shows:
    """metrics() must be exactly this."""

    calls: int
    failed: int
    slow: int
    failure_rate: float
    slow_call_rate: float


Step = Acquire | Ok | Fail | Release | Advance | Reset | Is | Shows


def run(breaker: CircuitBreaker, clock: ManualClock, steps: list[Step]) -> None:
    for i, step in enumerate(steps):
        at = f"step {i}: {step}"
        match step:
            case Acquire(granted):
                assert breaker.try_acquire() is granted, at
            case Ok(ms):
                breaker.record(True, ms)
            case Fail(ms):
                breaker.record(False, ms)
            case Release():
                breaker.release()
            case Advance(ms):
                clock.advance(ms)
            case Reset():
                breaker.reset()
            case Is(state):
                assert breaker.state == state, at
            case Shows(calls, failed, slow, failure_rate, slow_call_rate):
                expected = {
                    "failure_rate": failure_rate,
                    "slow_call_rate": slow_call_rate,
                    "calls": calls,
                    "failed": failed,
                    "slow": slow,
                }
                assert breaker.metrics() == expected, at


# Every scenario below uses failure_rate 50%, slow_call_ms 1000 and open_ms 10000 unless it says otherwise.
BASE: dict[str, Any] = {"failure_rate": 50.0, "slow_call_ms": 1_000.0, "open_ms": 10_000.0}
W4 = {"window": 4, "min_calls": 4}
ONE = {"window": 1, "min_calls": 1}
OPEN_IT: list[Step] = [Fail(), Fail(), Fail(), Fail(), Is("open"), Acquire(False)]

# fmt: off
SCENARIOS: list[tuple[str, dict[str, Any], list[Step]]] = [
    ("below min_calls no rate is computed and nothing opens", {"window": 10, "min_calls": 5}, [
        Fail(), Fail(), Fail(), Fail(), Is("closed"), Shows(4, 4, 0, -1.0, -1.0), Acquire(True),
    ]),
    ("the failure rate reaching the threshold opens", W4, [
        Acquire(True), Ok(), Ok(), Fail(), Is("closed"), Fail(), Is("open"), Shows(4, 2, 0, 50.0, 0.0),
        Acquire(False),
    ]),
    ("a failure rate below the threshold stays closed", W4, [
        Ok(), Ok(), Ok(), Fail(), Is("closed"), Shows(4, 1, 0, 25.0, 0.0), Acquire(True),
    ]),
    ("only calls slower than slow_call_ms are slow; the slow rate opens", {**W4, "slow_call_rate": 50.0}, [
        Ok(1_000.0), Ok(999.0), Ok(1_000.5), Ok(1_000.0), Is("closed"), Shows(4, 0, 1, 0.0, 25.0),
        Ok(5_000.0), Is("open"), Shows(4, 0, 2, 0.0, 50.0),
    ]),
    ("a slow failure counts as failed and as slow", {"window": 2, "min_calls": 2, "failure_rate": 100.0}, [
        Fail(2_000.0), Ok(), Is("closed"), Shows(2, 1, 1, 50.0, 50.0),
    ]),
    ("the window slides: the oldest outcome drops out", W4, [
        Fail(), Ok(), Ok(), Ok(), Shows(4, 1, 0, 25.0, 0.0),
        Ok(), Shows(4, 0, 0, 0.0, 0.0),
        Fail(), Fail(), Is("open"), Shows(4, 2, 0, 50.0, 0.0),
    ]),
    ("min_calls above the window is clamped to it (as resilience4j does)", {"window": 3, "min_calls": 10}, [
        Fail(), Fail(), Is("closed"), Fail(), Is("open"),
    ]),
    ("OPEN refuses until open_ms passed; reading state never moves it; the next request does", W4, [
        *OPEN_IT, Advance(9_999.999), Acquire(False), Is("open"),
        Advance(0.001), Is("open"), Is("open"), Shows(4, 4, 0, 100.0, 0.0),
        Acquire(True), Is("half_open"), Shows(0, 0, 0, -1.0, -1.0),
    ]),
    ("HALF_OPEN hands out at most half_open_calls probe permits", {**W4, "half_open_calls": 3}, [
        *OPEN_IT, Advance(10_000.0), Acquire(True), Acquire(True), Ok(), Acquire(True), Acquire(False),
        Is("half_open"),
    ]),
    ("all probes fine: CLOSED with an empty window", W4, [
        *OPEN_IT, Advance(10_000.0), Acquire(True), Acquire(True), Ok(), Is("half_open"), Ok(), Is("closed"),
        Shows(0, 0, 0, -1.0, -1.0), Fail(), Fail(), Fail(), Is("closed"), Acquire(True),
    ]),
    ("the decision waits for every probe; a probe failure rate at the threshold reopens", W4, [
        *OPEN_IT, Advance(10_000.0), Acquire(True), Acquire(True), Fail(), Is("half_open"), Acquire(False),
        Ok(), Is("open"), Shows(2, 1, 0, 50.0, 0.0), Acquire(False),
    ]),
    ("reopening restarts the open wait from that moment", {**W4, "half_open_calls": 1}, [
        *OPEN_IT, Advance(10_000.0), Acquire(True), Advance(500.0), Fail(), Is("open"),
        Advance(9_999.0), Acquire(False), Advance(1.0), Acquire(True), Is("half_open"),
    ]),
    ("slow probes reopen", {**W4, "slow_call_rate": 50.0}, [
        *OPEN_IT, Advance(10_000.0), Acquire(True), Acquire(True), Ok(), Ok(1_500.0), Is("open"),
        Shows(2, 0, 1, 0.0, 50.0),
    ]),
    ("a released probe permit can be taken again; releases never mint extra permits", W4, [
        *OPEN_IT, Advance(10_000.0), Acquire(True), Acquire(True), Acquire(False),
        Release(), Acquire(True), Acquire(False),
        Release(), Release(), Release(), Acquire(True), Acquire(True), Acquire(False),
        Ok(), Ok(), Is("closed"),
    ]),
    ("release outside HALF_OPEN changes nothing", {**W4, "half_open_calls": 1}, [
        Acquire(True), Release(), Shows(0, 0, 0, -1.0, -1.0), *OPEN_IT, Release(), Acquire(False), Is("open"),
    ]),
    ("an outcome recorded while OPEN (permitted before it opened) is ignored", W4, [
        *OPEN_IT, Ok(), Ok(), Ok(), Ok(), Fail(), Is("open"), Shows(4, 4, 0, 100.0, 0.0),
        Advance(9_999.0), Acquire(False),
    ]),
    ("open_ms 0: the very next request probes", {**ONE, "open_ms": 0.0, "half_open_calls": 1}, [
        Fail(), Is("open"), Acquire(True), Is("half_open"), Acquire(False),
    ]),
    ("reset closes from OPEN and from HALF_OPEN, with an empty window", {**W4, "half_open_calls": 1}, [
        *OPEN_IT, Reset(), Is("closed"), Shows(0, 0, 0, -1.0, -1.0), Acquire(True),
        *OPEN_IT, Advance(10_000.0), Acquire(True), Is("half_open"), Reset(), Is("closed"),
        Fail(), Fail(), Fail(), Is("closed"),
    ]),
]
# fmt: on


@pytest.mark.parametrize(
    ("settings", "steps"), [(s, st) for _, s, st in SCENARIOS], ids=[n for n, _, _ in SCENARIOS]
)
def test_transitions(settings: dict[str, Any], steps: list[Step]) -> None:
    clock = ManualClock()
    run(CircuitBreaker(**{**BASE, **settings}, clock=clock), clock, steps)


def test_defaults_are_the_documented_ones() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(clock=clock)
    # min_calls 5, failure_rate 50%: 2 of 5 failed stays closed, 3 of 6 opens.
    run(breaker, clock, [Fail(), Fail(), Ok(), Ok(), Ok(), Is("closed"), Shows(5, 2, 0, 40.0, 0.0), Fail()])
    run(breaker, clock, [Is("open"), Shows(6, 3, 0, 50.0, 0.0)])
    # open_ms 30 s, half_open_calls 2.
    run(breaker, clock, [Advance(29_999.0), Acquire(False), Advance(1.0), Acquire(True), Acquire(True)])
    run(breaker, clock, [Acquire(False), Ok(), Ok(), Is("closed")])
    # slow_call_ms 10 s, slow_call_rate 100%, window 20: one fast call keeps it closed until it slides out.
    run(breaker, clock, [Ok(10_000.0), Ok(10_000.001), Shows(2, 0, 1, -1.0, -1.0)])
    run(breaker, clock, [*[Ok(20_000.0)] * 18, Is("closed"), Shows(20, 0, 19, 0.0, 95.0), Ok(20_000.0)])
    run(breaker, clock, [Is("open"), Shows(20, 0, 20, 0.0, 100.0)])


def test_one_manual_clock_drives_several_breakers() -> None:
    clock = ManualClock()
    breakers = [CircuitBreaker(window=1, min_calls=1, open_ms=100.0 * (i + 1), clock=clock) for i in range(3)]
    for breaker in breakers:
        breaker.record(False, 1.0)
    clock.advance(200.0)
    assert [b.try_acquire() for b in breakers] == [True, True, False]


def test_the_system_clock_is_the_default() -> None:
    breaker = CircuitBreaker(window=1, min_calls=1, open_ms=0.0)
    breaker.record(False, 1.0)
    # One expression, so that mypy does not narrow `state` to "open" and call the last check unreachable.
    assert [breaker.state, breaker.try_acquire(), breaker.state] == ["open", True, "half_open"]

    waiting = CircuitBreaker(window=1, min_calls=1, open_ms=60_000.0)
    waiting.record(False, 1.0)
    assert waiting.try_acquire() is False


def test_constructor_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        CircuitBreaker(50.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"failure_rate": 0.0}, "failure_rate must be a percentage in (0, 100]"),
        ({"failure_rate": 101.0}, "failure_rate"),
        ({"failure_rate": math.nan}, "failure_rate"),
        ({"slow_call_rate": -5.0}, "slow_call_rate"),
        ({"slow_call_ms": -1.0}, "slow_call_ms"),
        ({"slow_call_ms": math.nan}, "slow_call_ms"),
        ({"open_ms": math.inf}, "open_ms"),
        ({"open_ms": -1.0}, "open_ms"),
        ({"window": 0}, "window must be between 1 and 1000000, got 0"),
        ({"window": -3}, "window must be between 1 and 1000000, got -3"),
        ({"window": 1_000_001}, "window"),
        ({"window": 2**40}, "window"),
        ({"min_calls": 0}, "min_calls"),
        ({"half_open_calls": -1}, "half_open_calls"),
    ],
)
def test_bad_settings_raise_value_error(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^" + message.replace("(", r"\(").replace("]", r"\]")):
        CircuitBreaker(**settings)


@pytest.mark.parametrize("duration_ms", [-1.0, math.nan, -math.inf])
def test_bad_durations_raise_and_change_nothing(duration_ms: float) -> None:
    breaker = CircuitBreaker(window=1, min_calls=1)
    with pytest.raises(ValueError, match="duration_ms"):
        breaker.record(False, duration_ms)
    assert breaker.state == "closed"
    assert breaker.metrics()["calls"] == 0


def test_an_infinitely_slow_call_is_slow() -> None:
    breaker = CircuitBreaker(window=1, min_calls=1)
    breaker.record(True, math.inf)
    assert breaker.metrics()["slow"] == 1
    assert breaker.state == "open"


def test_slow_detection_can_be_switched_off() -> None:
    breaker = CircuitBreaker(window=1, min_calls=1, slow_call_ms=math.inf)
    breaker.record(True, 1e12)
    assert breaker.state == "closed"


# -- threads -------------------------------------------------------------------------------------------------


def _open_then_wait(half_open_calls: int) -> CircuitBreaker:
    clock = ManualClock()
    breaker = CircuitBreaker(
        window=1, min_calls=1, open_ms=10.0, half_open_calls=half_open_calls, clock=clock
    )
    breaker.record(False, 1.0)
    clock.advance(10.0)
    return breaker


def test_threads_never_get_more_probe_permits_than_half_open_calls() -> None:
    breaker = _open_then_wait(half_open_calls=3)
    granted = 0
    lock = threading.Lock()
    start = threading.Barrier(8)

    def ask() -> None:
        nonlocal granted
        start.wait()
        for _ in range(2_000):
            if breaker.try_acquire():
                with lock:
                    granted += 1

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted == 3
    assert breaker.state == "half_open"


def test_threads_acquiring_and_releasing_probes_never_exceed_the_bound() -> None:
    breaker = _open_then_wait(half_open_calls=2)
    holding = 0
    most = 0
    total = 0
    lock = threading.Lock()
    start = threading.Barrier(6)

    def probe() -> None:
        nonlocal holding, most, total
        start.wait()
        for _ in range(2_000):
            if breaker.try_acquire():
                # Counted strictly inside the time the permit is held, so `holding` can only under-count.
                with lock:
                    holding += 1
                    most = max(most, holding)
                    total += 1
                with lock:
                    holding -= 1
                breaker.release()

    threads = [threading.Thread(target=probe) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= most <= 2
    assert total > 2, "released permits were handed out again"
    assert breaker.state == "half_open"
    assert breaker.try_acquire() and breaker.try_acquire() and not breaker.try_acquire()


def test_threads_recording_keep_the_window_consistent() -> None:
    breaker = CircuitBreaker(window=50, min_calls=50, failure_rate=100.0)

    def record(fail_every: int) -> None:
        for i in range(5_000):
            breaker.record(i % fail_every != 0, 1.0)

    threads = [threading.Thread(target=record, args=(n,)) for n in (2, 3, 5, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    metrics = breaker.metrics()
    assert breaker.state == "closed"
    assert metrics["calls"] == 50
    assert 0 < metrics["failed"] < 50
    assert metrics["failure_rate"] == metrics["failed"] * 2.0
