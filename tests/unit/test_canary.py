"""policy/canary.py: sticky arm assignment, measures, rollback (and not on noise), reloads, the planner.

The split check uses the same 5-sigma binomial bound as test_pools.py (keys are distinct strings, their
hashes independent of the test run: the outcome is fixed, not random).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tiergate.analysis import Analysis
from tiergate.config import ConfigError, RouteConfig, parse, resolve
from tiergate.errors import InvalidRequest, UnknownTask
from tiergate.policy.canary import BASELINE, CANARY, CanaryController
from tiergate.request import Attempt, Decision, Message, Outcome, Request, Sensitivity
from tiergate.routing import Planner


def route(percent: float = 20, **canary: Any) -> dict[str, RouteConfig]:
    return {
        "chat": RouteConfig(
            chain=["base"], canary={"model": "cand", "percent": percent, "min_samples": 20, **canary}
        )
    }


def req(tenant: str = "", **metadata: str) -> Request:
    return Request("chat", [Message("user", "hi")], tenant=tenant, metadata=metadata)


def finished(arm: str, outcome: Outcome = Outcome.OK, ttft_ms: float = 100.0) -> Decision:
    model = "cand" if arm == CANARY else "base"
    return Decision(
        route="chat", task="chat", arm=arm, served_by=model, attempts=[Attempt(model, outcome, ttft_ms)]
    )


def test_the_split_follows_the_percentage() -> None:
    controller = CanaryController(route(20))
    n = 10_000
    canary = sum(controller.arm("chat", req(f"tenant-{i}")) == CANARY for i in range(n))
    assert abs(canary - 0.2 * n) <= 5 * math.sqrt(n * 0.2 * 0.8)


def test_the_same_key_gets_the_same_arm_across_requests_and_reloads() -> None:
    controller = CanaryController(route(30))
    keys = [f"conversation-{i}" for i in range(500)]
    first = {k: controller.arm("chat", req(k)) for k in keys}  # sticky per tenant (the default)
    assert set(first.values()) == {CANARY, BASELINE}
    for _ in range(3):
        assert {k: controller.arm("chat", req(k, conversation="c")) for k in keys} == first
    # Stickiness by metadata key: the tenant does not matter.
    by_conversation = CanaryController(route(30, sticky="metadata:conversation"))
    arms = {k: by_conversation.arm("chat", req("acme", conversation=k)) for k in keys}
    assert all(by_conversation.arm("chat", req("other", conversation=k)) == arms[k] for k in keys)
    # A reload of the same config, and a new controller in another process (same hash), agree.
    by_conversation.reconfigure(route(30, sticky="metadata:conversation"))
    again = CanaryController(route(30, sticky="metadata:conversation"))
    assert {k: again.arm("chat", req("x", conversation=k)) for k in keys} == arms
    assert {k: by_conversation.arm("chat", req("x", conversation=k)) for k in keys} == arms
    # Raising the percentage only moves keys from baseline to canary.
    by_conversation.reconfigure(route(60, sticky="metadata:conversation"))
    raised = {k: by_conversation.arm("chat", req("x", conversation=k)) for k in keys}
    assert all(raised[k] == CANARY for k in keys if arms[k] == CANARY)
    assert sum(a == CANARY for a in raised.values()) > sum(a == CANARY for a in arms.values())


def test_requests_without_a_key_are_assigned_at_random() -> None:
    draws = iter([0.1, 0.5])
    controller = CanaryController(route(20), rng=lambda: next(draws))
    assert [controller.arm("chat", req("")), controller.arm("chat", req(""))] == [CANARY, BASELINE]


def test_routes_without_a_canary_have_no_arm() -> None:
    assert CanaryController({"chat": RouteConfig(chain=["base"])}).arm("chat", req("a")) == ""


def feed(controller: CanaryController, arm: str, n: int, failures: int = 0, ttft_ms: float = 100.0) -> None:
    for i in range(n):
        controller.observe(finished(arm, Outcome.ERROR if i < failures else Outcome.OK, ttft_ms))


def test_rollback_on_errors_after_the_minimum_sample() -> None:
    rolled: list[str] = []
    controller = CanaryController(route(50), on_rollback=lambda s: rolled.append(s.rolled_back))
    feed(controller, BASELINE, 20)
    feed(controller, CANARY, 19, failures=19)  # every canary attempt failed, but 19 < min_samples
    assert controller.state("chat").percent == 50 and not rolled
    feed(controller, CANARY, 1, failures=1)
    state = controller.state("chat")
    assert state.percent == 0 and state.rolled_back.startswith("error rate 100.0% vs baseline 0.0%")
    assert rolled == [state.rolled_back]
    assert {controller.arm("chat", req(f"t{i}")) for i in range(200)} == {BASELINE}


@pytest.mark.parametrize(
    ("canary_failures", "base_failures", "rolled_back"),
    [
        (3, 2, False),  # 15% vs 10%: within the 5-point margin... 5 points exactly is not "more than"
        (2, 0, True),  # 10% vs 0%
        (1, 0, False),  # 5% vs 0%
    ],
)
def test_error_margin(canary_failures: int, base_failures: int, rolled_back: bool) -> None:
    controller = CanaryController(route(50))
    feed(controller, BASELINE, 20, failures=base_failures)
    feed(controller, CANARY, 20, failures=canary_failures)
    assert bool(controller.state("chat").rolled_back) is rolled_back


def test_no_rollback_on_noise_below_the_minimum_sample() -> None:
    controller = CanaryController(route(50))
    feed(controller, BASELINE, 1000)
    for _ in range(19):  # failures, slow answers and bad scores, but never min_samples of any
        controller.observe(finished(CANARY, Outcome.ERROR))
        controller.feedback("chat", "cand", CANARY, 0.0)
        controller.feedback("chat", "base", BASELINE, 1.0)
    assert controller.state("chat").rolled_back == ""
    # Outcomes that say nothing of the model are not counted at all.
    for outcome in (Outcome.CANCELLED, Outcome.DEADLINE, Outcome.HEDGE_LOST):
        controller.observe(finished(CANARY, outcome))
    assert controller.state("chat").arms[CANARY].requests == 19


def test_rollback_on_ttft() -> None:
    controller = CanaryController(route(50))
    feed(controller, BASELINE, 20, ttft_ms=100)
    feed(controller, CANARY, 20, ttft_ms=140)  # +40%: within max_ttft_increase 0.5
    assert controller.state("chat").rolled_back == ""
    feed(controller, CANARY, 20, ttft_ms=300)  # rolled back as soon as the mean crosses +50%
    assert controller.state("chat").rolled_back == "mean TTFT 155 ms vs baseline 100 ms"


def test_rollback_on_bad_feedback() -> None:
    controller = CanaryController(route(50))
    for _ in range(20):
        controller.feedback("chat", "base", BASELINE, 0.9)
        controller.feedback("chat", "cand", CANARY, 0.85)
    assert controller.state("chat").rolled_back == ""
    for _ in range(20):
        controller.feedback("chat", "cand", CANARY, 0.5)
    assert controller.state("chat").rolled_back == "mean feedback score 0.79 vs baseline 0.90"


async def test_set_percent_rearms_and_a_reload_keeps_it_unless_the_config_changes() -> None:
    controller = CanaryController(route(50))
    feed(controller, BASELINE, 20)
    feed(controller, CANARY, 20, failures=20)
    assert controller.state("chat").percent == 0
    state = await controller.set_percent("chat", 5)
    assert (state.percent, state.rolled_back, state.arms[CANARY].requests) == (5, "", 0)
    controller.reconfigure(route(50))  # the same config: the operator's 5% stays
    assert controller.state("chat").percent == 5
    controller.reconfigure(route(25))  # a new configured percentage applies
    assert controller.state("chat").percent == 25
    controller.reconfigure(route(25, model="other"))  # a new candidate starts afresh
    assert controller.state("chat").model == "other"
    with pytest.raises(InvalidRequest):
        await controller.set_percent("chat", 101)
    with pytest.raises(UnknownTask):
        await controller.set_percent("nope", 5)


# -- in the planner ------------------------------------------------------------------------------------------


def hosted(price: float, region: str = "eu") -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": "m",
        "api_key": "k",
        "price": {"input_per_mtok": price, "output_per_mtok": price},
        "tags": {"region": region},
    }


def planner(route_: dict[str, Any], tenants: dict[str, Any] | None = None) -> Planner:
    data = {
        "models": {"base": hosted(1), "cheap": hosted(0.1), "cand": hosted(5, "us")},
        "routes": {"chat": route_},
        "tenants": tenants or {},
    }
    config = resolve(parse(data), {})
    return Planner(config, {}, lambda _: 0, canaries=CanaryController(config.routes))


def test_the_canary_arm_tries_the_candidate_first_whatever_the_objective() -> None:
    p = planner({"chain": ["base", "cheap"], "objective": "cost", "canary": {"model": "cand", "percent": 50}})
    analysis = Analysis(10, [], Sensitivity.PUBLIC, "", "")
    plans = [p.plan(req(f"t{i}"), analysis) for i in range(200)]
    canary = [[c.name for c in plan.candidates] for plan in plans if plan.arm == CANARY]
    baseline = [[c.name for c in plan.candidates] for plan in plans if plan.arm == BASELINE]
    assert canary and baseline and len(canary) + len(baseline) == 200
    assert all(names == ["cand", "cheap", "base"] for names in canary)
    assert all(names == ["cheap", "base"] for names in baseline)


def test_a_candidate_the_policy_leaves_out_makes_a_baseline_request() -> None:
    p = planner(
        {"chain": ["base"], "canary": {"model": "cand", "percent": 100}}, {"acme": {"regions": ["eu"]}}
    )
    plan = p.plan(req("acme"), Analysis(10, [], Sensitivity.PUBLIC, "", ""))
    assert plan.arm == BASELINE and [c.name for c in plan.candidates] == ["base"]
    assert "cand was left out" in plan.reason


@pytest.mark.parametrize(
    ("canary", "message"),
    [
        ({"model": "nope", "percent": 5}, "canary.model: unknown model 'nope'"),
        ({"model": "base", "percent": 5}, "already in the chain"),
        ({"model": "cand", "percent": 101}, "percent"),
        ({"model": "cand", "percent": 5, "sticky": "conversation"}, "metadata:KEY"),
    ],
)
def test_config_errors(canary: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        planner({"chain": ["base"], "canary": canary})
