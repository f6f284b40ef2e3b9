"""governance.py: per-tenant budgets and rate limits, in-process, on a manual clock."""

from __future__ import annotations

from typing import Any

import pytest

from tiergate._native import ManualClock
from tiergate.analysis import Analysis
from tiergate.config import BudgetConfig, parse, resolve
from tiergate.errors import LimitExceeded
from tiergate.governance import LocalGovernor, NoLimits, Ticket, build_governor, limits_for
from tiergate.request import Decision, Message, Request, Sensitivity
from tiergate.routing import Plan, Planner

MINUTE_MS = 60_000.0
DAY_MS = 86_400_000.0
MODELS: dict[str, Any] = {
    "local": {"provider": "llama_cpp", "path": "embedded"},
    # 1000 input + 256 expected output tokens: $0.000356 on cheap, $0.00684 on pricey.
    "cheap": {
        "provider": "openai",
        "model": "c",
        "api_key": "k",
        "price": {"input_per_mtok": 0.1, "output_per_mtok": 1.0},
    },
    "pricey": {
        "provider": "anthropic",
        "model": "p",
        "api_key": "k",
        "price": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
    },
}
CHEAP = (1000 * 0.1 + 256 * 1.0) / 1e6
PRICEY = (1000 * 3.0 + 256 * 15.0) / 1e6


def config(budgets: dict[str, Any], chain: list[str] | None = None) -> Any:
    data = {
        "models": MODELS,
        "routes": {"default": {"chain": chain or ["pricey", "cheap"]}},
        "budgets": budgets,
    }
    return resolve(parse(data), {})


class Harness:
    """A governor over a config, on a manual clock, with requests planned by the real Planner."""

    def __init__(self, budgets: dict[str, Any], chain: list[str] | None = None) -> None:
        self.config = config(budgets, chain)
        self.clock = ManualClock(0.0)
        self.governor = LocalGovernor(self.config.budgets, clock=self.clock)
        self.planner = Planner(self.config, {}, lambda _: 0)

    async def admit(self, tenant: str = "", input_tokens: int = 1000) -> tuple[Ticket | None, Plan, Decision]:
        request = Request("", [Message("user", "hi")], tenant=tenant)
        plan = self.planner.plan(request, Analysis(input_tokens, [], Sensitivity.PUBLIC, "", ""))
        decision = Decision(route=plan.route_name, task="")
        ticket = await self.governor.admit(request, plan, decision, input_tokens)
        return ticket, plan, decision

    async def refused(self, tenant: str = "", input_tokens: int = 1000) -> LimitExceeded:
        with pytest.raises(LimitExceeded) as caught:
            await self.admit(tenant, input_tokens)
        return caught.value


def test_no_budgets_means_no_governor_work() -> None:
    assert isinstance(build_governor(config({})), NoLimits)
    assert not build_governor(config({})).active
    # An entry with no limit set limits nothing either.
    assert isinstance(build_governor(config({"default": {}})), NoLimits)
    assert isinstance(build_governor(config({"default": {"requests_per_minute": 1}})), LocalGovernor)


@pytest.mark.parametrize(
    ("budgets", "tenant", "expected"),
    [
        ({"default": {"requests_per_minute": 5}}, "acme", BudgetConfig(requests_per_minute=5)),
        ({"default": {"requests_per_minute": 5}}, "default", BudgetConfig(requests_per_minute=5)),
        (
            {"default": {"requests_per_minute": 5}, "acme": {"usd_per_day": 2}},
            "acme",
            BudgetConfig(usd_per_day=2),
        ),
        ({"acme": {"usd_per_day": 2}}, "other", None),
    ],
)
def test_limits_for_a_tenant(budgets: dict[str, Any], tenant: str, expected: BudgetConfig | None) -> None:
    assert limits_for(config(budgets).budgets, tenant) == expected


async def test_requests_per_minute_per_tenant_with_refill() -> None:
    h = Harness({"default": {"requests_per_minute": 2}})
    assert (await h.admit("a"))[0] is not None
    assert (await h.admit("a"))[0] is not None
    refused = await h.refused("a")
    assert refused.limit == "requests_per_minute"
    assert str(refused) == "tenant 'a': the requests_per_minute limit of 2 is reached; retry in 30000 ms"
    assert refused.decision is not None
    # Each tenant has its own bucket; a request without a tenant is the tenant "default".
    assert (await h.admit("b"))[0] is not None
    assert (await h.admit(""))[0] is not None
    assert (await h.admit("default"))[0] is not None
    await h.refused("")
    h.clock.advance(MINUTE_MS / 2)  # one request's worth refilled
    assert (await h.admit("a"))[0] is not None
    await h.refused("a")


async def test_tokens_per_minute_takes_the_prompt_before_and_the_answer_after() -> None:
    h = Harness({"default": {"tokens_per_minute": 3000}})
    ticket, _, _ = await h.admit(input_tokens=1000)
    assert ticket is not None
    h.governor.settle(ticket, 0.0, 1500)  # 2500 of 3000 used
    refused = await h.refused(input_tokens=1000)
    assert refused.limit == "tokens_per_minute"
    assert "retry in 10000 ms" in str(refused)  # 500 missing at 50 tokens/s
    ticket, _, _ = await h.admit(input_tokens=500)
    assert ticket is not None
    # An answer is never refused once it exists: it takes what is left, not more.
    h.governor.settle(ticket, 0.0, 10_000)
    h.clock.advance(MINUTE_MS)
    assert (await h.admit(input_tokens=3000))[0] is not None
    too_big = await h.refused(input_tokens=3001)
    assert (
        str(too_big)
        == "tenant 'default': the prompt's 3001 tokens exceed the tokens_per_minute limit of 3000"
    )


async def test_a_refused_request_takes_nothing() -> None:
    h = Harness({"default": {"requests_per_minute": 3, "tokens_per_minute": 1000}})
    for _ in range(5):
        assert (await h.refused(input_tokens=1001)).limit == "tokens_per_minute"
    for _ in range(3):  # all three requests of the minute are still there
        assert (await h.admit(input_tokens=10))[0] is not None
    assert (await h.refused(input_tokens=10)).limit == "requests_per_minute"


async def test_budget_left_filters_candidates_and_reserves_the_largest_estimate() -> None:
    h = Harness({"acme": {"usd_per_day": 0.005}})
    ticket, plan, decision = await h.admit("acme")
    assert ticket is not None
    assert [c.name for c in plan.candidates] == ["cheap"]
    assert [s.model for s in decision.skipped] == ["pricey"]
    assert decision.skipped[0].reason == (
        "estimated $0.006840 exceeds the $0.005000 left of tenant 'acme''s usd_per_day budget"
    )
    assert ticket.reserved_nanos == round(CHEAP * 1e9)
    assert h.governor.spent_usd("acme", "day") == pytest.approx(CHEAP)
    # Settled with the real cost, which replaces the reservation.
    h.governor.settle(ticket, 0.004, 10)
    assert h.governor.spent_usd("acme", "day") == pytest.approx(0.004)
    # $0.001 left: cheap still fits.
    ticket, plan, _ = await h.admit("acme")
    assert ticket is not None and [c.name for c in plan.candidates] == ["cheap"]
    h.governor.settle(ticket, 0.0012, 10)  # overspent: the money is spent all the same
    assert h.governor.spent_usd("acme", "day") == pytest.approx(0.0052)
    refused = await h.refused("acme")
    assert refused.limit == "usd_per_day"
    assert str(refused) == "tenant 'acme': the usd_per_day budget of $0.005 is spent; it resets at 00:00 UTC"
    assert refused.decision is not None and {s.model for s in refused.decision.skipped} == {"pricey", "cheap"}
    # Tenants without an entry (and no default) are not limited.
    assert (await h.admit("other"))[0] is None
    # A new UTC day starts from zero.
    h.clock.advance(DAY_MS)
    assert (await h.admit("acme"))[0] is not None


async def test_reservations_count_until_settled() -> None:
    h = Harness({"default": {"usd_per_day": 0.0005}}, chain=["cheap"])  # room for one cheap estimate
    first, _, _ = await h.admit()
    assert first is not None
    refused = await h.refused()
    assert "less than any candidate's estimated cost" in str(refused)
    h.governor.settle(first, 0.0001, 5)
    assert (await h.admit())[0] is not None


async def test_free_models_serve_until_the_budget_is_overspent() -> None:
    h = Harness({"default": {"usd_per_day": 0.001}}, chain=["pricey", "local"])
    ticket, plan, _ = await h.admit()
    assert ticket is not None and [c.name for c in plan.candidates] == ["local"]
    h.governor.settle(ticket, 0.001, 1)  # exactly spent: free still fits
    assert [c.name for c in (await h.admit())[1].candidates] == ["local"]
    ticket = (await h.admit())[0]
    assert ticket is not None
    h.governor.settle(ticket, 0.0001, 1)
    assert (await h.refused()).limit == "usd_per_day"


async def test_the_tighter_budget_is_named() -> None:
    h = Harness({"default": {"usd_per_day": 1.0, "usd_per_month": 0.005}}, chain=["pricey"])
    refused = await h.refused()
    assert refused.limit == "usd_per_month"
    assert "resets on the 1st of the month" in str(refused)


async def test_a_reload_keeps_the_counters_of_tenants_whose_limits_did_not_change() -> None:
    h = Harness({"a": {"requests_per_minute": 1}, "b": {"requests_per_minute": 1}})
    await h.admit("a")
    await h.admit("b")
    after = config({"a": {"requests_per_minute": 1}, "b": {"requests_per_minute": 5}})
    h.governor = LocalGovernor(after.budgets, previous=h.governor, clock=h.clock)
    assert (await h.refused("a")).limit == "requests_per_minute"  # unchanged: still spent
    assert (await h.admit("b"))[0] is not None  # changed: a fresh bucket


# -- bounded state: tenants named by clients ---------------------------------------------------------------


async def test_tenants_under_default_are_bounded_and_named_ones_kept() -> None:
    cfg = config({"default": {"requests_per_minute": 1}, "acme": {"requests_per_minute": 1}})
    governor = LocalGovernor(cfg.budgets, clock=ManualClock(0.0), max_tenants=100)
    harness = Harness({"default": {"requests_per_minute": 1}, "acme": {"requests_per_minute": 1}})
    harness.governor = governor
    await harness.admit("acme")  # acme's one request of the minute is taken
    for i in range(5_000):
        await harness.admit(f"tenant-{i}")
    assert governor.tenants_held == 1 + 100
    # acme's counters were never dropped: its minute is still spent.
    assert (await harness.refused("acme")).limit == "requests_per_minute"
    # The most recent default tenant is still held (refused); the oldest was dropped (starts afresh).
    assert (await harness.refused("tenant-4999")).limit == "requests_per_minute"
    ticket, _, _ = await harness.admit("tenant-0")
    assert ticket is not None


async def test_a_reload_keeps_the_bound_and_the_recent_tenants() -> None:
    harness = Harness({"default": {"requests_per_minute": 1}})
    harness.governor = LocalGovernor(harness.config.budgets, clock=harness.clock, max_tenants=10)
    for i in range(30):
        await harness.admit(f"t{i}")
    reloaded = LocalGovernor(
        harness.config.budgets, previous=harness.governor, clock=harness.clock, max_tenants=10
    )
    assert reloaded.tenants_held == 10
    harness.governor = reloaded
    assert (await harness.refused("t29")).limit == "requests_per_minute"
