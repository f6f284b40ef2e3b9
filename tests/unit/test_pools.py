"""policy/pools.py: weighted, health- and latency-aware choice within a pool; slow start; the planner's use.

Statistical bounds: n selections whose first pick is member A with probability p give a binomial count with
mean n*p and standard deviation sigma = sqrt(n*p*(1-p)). Each check allows 5 sigma either side, so an unseeded
run fails by chance with probability below 6e-7 per check: the tests use the real random source and cannot
flake in practice. Time is a `ManualClock` (never sleeping); breakers are the real Rust ones, driven open and
closed again through their own API.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tiergate._native import CircuitBreaker, ManualClock
from tiergate.analysis import Analysis
from tiergate.config import ConfigError, PoolConfig, parse, resolve
from tiergate.model_stats import ModelStats
from tiergate.policy.pools import MIN_RAMP, PoolSelector
from tiergate.request import Message, Request, Sensitivity
from tiergate.routing import Planner

N = 10_000
SLOW_START_MS = 60_000
OPEN_MS = 1_000


def within_5_sigma(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p))


class Fixture:
    def __init__(self, members: dict[str, float] | None = None) -> None:
        self.clock = ManualClock()
        members = members or {"a": 70, "b": 30}
        self.breakers = {
            name: CircuitBreaker(window=4, min_calls=2, open_ms=OPEN_MS, half_open_calls=1, clock=self.clock)
            for name in members
        }
        self.stats = {name: ModelStats() for name in members}
        pools = {"p": PoolConfig(members=members, slow_start_ms=SLOW_START_MS)}
        self.selector = PoolSelector(
            pools, self.breakers, self.stats, clock=lambda: self.clock.now_ms() / 1000
        )

    def firsts(self, n: int = N) -> dict[str, int]:
        counts = dict.fromkeys(self.breakers, 0)
        members = list(self.breakers)
        for _ in range(n):
            counts[self.selector.order("p", members)[0]] += 1
        return counts

    def open(self, name: str) -> None:
        for _ in range(2):
            assert self.breakers[name].try_acquire()
            self.breakers[name].record(False, 1.0)
        assert self.breakers[name].state == "open"

    def close_again(self, name: str) -> None:
        self.clock.advance(OPEN_MS)
        assert self.breakers[name].try_acquire()  # OPEN -> HALF_OPEN: one probe
        assert self.breakers[name].state == "half_open"
        self.selector.order("p", list(self.breakers))  # the pool sees it half-open
        self.breakers[name].record(True, 1.0)
        assert self.breakers[name].state == "closed"


def test_a_70_30_pool_splits_70_30() -> None:
    counts = Fixture().firsts()
    assert within_5_sigma(counts["a"], N, 0.7), counts  # 7000 +- 229


def test_three_members_split_by_weight() -> None:
    counts = Fixture({"a": 5, "b": 3, "c": 2}).firsts()
    for name, p in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert within_5_sigma(counts[name], N, p), counts


def test_the_rest_of_the_pool_follows_the_chosen_member() -> None:
    fixture = Fixture({"a": 5, "b": 3, "c": 2})
    for _ in range(100):
        assert sorted(fixture.selector.order("p", ["a", "b", "c"])) == ["a", "b", "c"]


def test_an_open_breaker_takes_its_member_out_and_slow_start_ramps_it_back() -> None:
    fixture = Fixture()
    fixture.open("a")
    orders = [fixture.selector.order("p", ["a", "b"]) for _ in range(1000)]
    assert all(order == ["b", "a"] for order in orders)  # tried last: dispatch skips it while open
    fixture.close_again("a")
    # Right after closing, a has MIN_RAMP of its weight; halfway, half; after the window, all of it.
    share_at_start = 70 * MIN_RAMP / (70 * MIN_RAMP + 30)
    assert within_5_sigma(fixture.firsts()["a"], N, share_at_start)
    fixture.clock.advance(SLOW_START_MS / 2)
    assert within_5_sigma(fixture.firsts()["a"], N, 35 / 65)
    fixture.clock.advance(SLOW_START_MS / 2)
    assert within_5_sigma(fixture.firsts()["a"], N, 0.7)


def test_a_half_open_member_gets_only_probe_traffic() -> None:
    fixture = Fixture()
    fixture.open("a")
    fixture.clock.advance(OPEN_MS)
    assert fixture.breakers["a"].try_acquire() and fixture.breakers["a"].state == "half_open"
    assert within_5_sigma(fixture.firsts()["a"], N, 70 * MIN_RAMP / (70 * MIN_RAMP + 30))


def test_the_slow_start_state_survives_a_reload() -> None:
    fixture = Fixture()
    fixture.open("a")
    fixture.close_again("a")
    reloaded = PoolSelector(
        {"p": PoolConfig(members={"a": 70, "b": 30}, slow_start_ms=SLOW_START_MS)},
        fixture.breakers,
        fixture.stats,
        clock=lambda: fixture.clock.now_ms() / 1000,
        previous=fixture.selector,
    )
    fixture.selector = reloaded
    assert within_5_sigma(fixture.firsts()["a"], N, 70 * MIN_RAMP / (70 * MIN_RAMP + 30))


@pytest.mark.parametrize(
    ("ttft_a", "ttft_b", "share_a"),
    [
        (100.0, 100.0, 0.7),  # alike: by weight
        (140.0, 100.0, 0.7),  # within the 1.5x tolerance: by weight
        (200.0, 100.0, 0.0),  # a is much slower: the second choice, b, wins every time
        (100.0, 200.0, 1.0),
    ],
)
def test_latency_aware_second_choice(ttft_a: float, ttft_b: float, share_a: float) -> None:
    fixture = Fixture()
    fixture.stats["a"].observe(ttft_a, 1, 0)
    fixture.stats["b"].observe(ttft_b, 1, 0)
    count = fixture.firsts()["a"]
    if share_a in (0.0, 1.0):
        assert count == share_a * N
    else:
        assert within_5_sigma(count, N, share_a)


# -- in the planner ------------------------------------------------------------------------------------------


def hosted(price: float = 1.0, region: str = "eu") -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": "m",
        "api_key": "k",
        "price": {"input_per_mtok": price, "output_per_mtok": price},
        "tags": {"region": region},
    }


MODELS = {"a": hosted(), "b": hosted(region="us"), "cheap": hosted(0.1), "last": hosted(5)}


def planner(route: dict[str, Any], tenants: dict[str, Any] | None = None) -> Planner:
    data = {
        "models": MODELS,
        "pools": {"p": {"members": {"a": 70, "b": 30}}},
        "routes": {"default": route},
        "tenants": tenants or {},
    }
    return Planner(resolve(parse(data), {}), {}, lambda _: 0)


def plan_names(p: Planner, tenant: str = "") -> list[str]:
    request = Request("", [Message("user", "hi")], tenant=tenant)
    return [c.name for c in p.plan(request, Analysis(10, [], Sensitivity.PUBLIC, "", "")).candidates]


def test_a_pool_step_is_its_members_then_the_rest_of_the_chain() -> None:
    p = planner({"chain": ["p", "last"]})
    plan = p.plan(Request("", [Message("user", "hi")]), Analysis(10, [], Sensitivity.PUBLIC, "", ""))
    assert plan.reason == f"chain order; pool p: {plan.candidates[0].name} chosen of 2"
    orders = [plan_names(p) for _ in range(2000)]
    assert {tuple(o) for o in orders} == {("a", "b", "last"), ("b", "a", "last")}
    assert within_5_sigma(sum(o[0] == "a" for o in orders), 2000, 0.7)


def test_the_objective_orders_steps_and_keeps_a_pool_together() -> None:
    p = planner({"chain": ["last", "p", "cheap"], "objective": "cost"})
    orders = {tuple(plan_names(p)) for _ in range(200)}
    assert orders == {("cheap", "a", "b", "last"), ("cheap", "b", "a", "last")}


def test_residency_filters_pool_members() -> None:
    p = planner({"chain": ["p", "last"]}, {"acme": {"regions": ["eu"]}})
    assert {tuple(plan_names(p, "acme")) for _ in range(100)} == {("a", "last")}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"pools": {"p": {"members": {"a": 0}}}}, "weight must be > 0"),
        ({"pools": {"p": {"members": {"zz": 1}}}}, "pools.p.members: unknown model 'zz'"),
        ({"pools": {"a": {"members": {"b": 1}}}}, "pools.a: a model has the same name"),
        ({"pools": {"p": {"members": {"a": 1}}}, "chain": ["p", "a"]}, "'a' appears twice"),
    ],
)
def test_pool_config_errors(data: dict[str, Any], message: str) -> None:
    config: dict[str, Any] = {
        "models": MODELS,
        "pools": data["pools"],
        "routes": {"default": {"chain": data.get("chain", ["cheap"])}},
    }
    with pytest.raises(ConfigError, match=message):
        resolve(parse(config), {})
