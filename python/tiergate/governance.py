"""Per-tenant budgets and rate limits: checked before dispatch, settled with the real cost after.

Config: `budgets: {TENANT: {usd_per_day, usd_per_month, requests_per_minute, tokens_per_minute}}`. A tenant
without an entry of its own gets the limits of the `default` entry, counted separately for each tenant; a
request without a tenant counts as the tenant `default`. Without any entry that applies, nothing is limited.

Admission, for a request whose plan is known (`Governor.admit`):

1. **Budget left** (`usd_per_day`, `usd_per_month`): candidates whose estimated cost exceeds what is left of
   the tighter budget are skipped (recorded in the Decision); none left fails with `LimitExceeded` naming the
   budget. The largest estimate among the candidates kept is reserved, so concurrent requests cannot all
   spend the same last dollar.
2. **requests_per_minute**: one token of a bucket that refills continuously (burst = the per-minute rate).
3. **tokens_per_minute**: the prompt's tokens are taken now; the answer's tokens after it, as far as the
   bucket holds them (an answer is never refused once it exists).

All checks pass before anything is taken, so a refused request consumes nothing. `Governor.settle` replaces
the reservation with the real cost and debits the output tokens. Two backends share these rules: in-process
(`LocalGovernor`, on the Rust `TokenBucket` and `BudgetCounter`) and Redis (`governance_redis`), whose state
is shared by every sidecar of a fleet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from tiergate._native import BudgetCounter, ManualClock, TokenBucket
from tiergate.config import BudgetConfig, Config
from tiergate.errors import LimitExceeded
from tiergate.lru import LruDict
from tiergate.request import Decision, Request, Skip
from tiergate.routing import Plan

DEFAULT_TENANT = "default"
DEFAULT_MAX_TENANTS = 100_000  # tenants counted under `budgets.default` held in memory at once
NANOS = 1_000_000_000  # money is counted in whole nano-dollars, like the Rust BudgetCounter

# Called when the state store fails: (operation, what was done: "allowed", "refused" or "lost").
StateFailureHook = Callable[[str, str], None]


@dataclass(slots=True)
class Ticket:
    """What an admitted request holds until it is settled."""

    tenant: str
    reserved_nanos: int
    state: object  # the backend's handle on the tenant's counters


class Governor(Protocol):
    """Admits requests against their tenant's limits and settles them afterwards."""

    @property
    def active(self) -> bool:
        """False when no limits are configured: `admit` is then never called."""

    async def admit(
        self, request: Request, plan: Plan, decision: Decision, input_tokens: int
    ) -> Ticket | None:
        """Filters `plan.candidates` by budget left and takes the rate limits; None: nothing to settle.

        Raises:
            LimitExceeded: a budget or rate limit does not allow the request (the message names it).
            StateUnavailable: the state store is unreachable and the config says to refuse.
        """

    def settle(self, ticket: Ticket, cost_usd: float, output_tokens: int) -> None:
        """Replaces the reservation with the real cost and debits the output tokens (never raises)."""

    async def aclose(self) -> None: ...


def tenant_of(request: Request) -> str:
    return request.tenant or DEFAULT_TENANT


def limits_for(budgets: Mapping[str, BudgetConfig], tenant: str) -> BudgetConfig | None:
    limits = budgets.get(tenant) or budgets.get(DEFAULT_TENANT)
    if limits is None or not any(
        (limits.usd_per_day, limits.usd_per_month, limits.requests_per_minute, limits.tokens_per_minute)
    ):
        return None
    return limits


def to_nanos(usd: float) -> int:
    return round(usd * NANOS)


def apply_budget(
    tenant: str, plan: Plan, decision: Decision, left_nanos: int, which: str, limit_usd: float
) -> int:
    """Skips the candidates that do not fit the budget left; returns the reservation (in nano-dollars).

    A candidate fits when its estimate is at most what is left; a free one (an on-device model) fits while
    the budget is not overspent.
    """
    kept = []
    reserve = 0
    for candidate in plan.candidates:
        cost = to_nanos(candidate.est_cost_usd)
        if cost <= left_nanos and (cost == 0 or left_nanos > 0):
            kept.append(candidate)
            reserve = max(reserve, cost)
        else:
            decision.skipped.append(
                Skip(
                    candidate.name,
                    f"estimated ${candidate.est_cost_usd:.6f} exceeds the ${max(left_nanos, 0) / NANOS:.6f} "
                    f"left of tenant {tenant!r}'s {which} budget",
                )
            )
    if plan.candidates and not kept:
        raise LimitExceeded(budget_message(tenant, which, limit_usd, left_nanos), decision, limit=which)
    plan.candidates[:] = kept
    return reserve


def budget_message(tenant: str, which: str, limit_usd: float, left_nanos: int) -> str:
    resets = "at 00:00 UTC" if which == "usd_per_day" else "on the 1st of the month, 00:00 UTC"
    if left_nanos <= 0:
        return f"tenant {tenant!r}: the {which} budget of ${limit_usd:g} is spent; it resets {resets}"
    return (
        f"tenant {tenant!r}: ${left_nanos / NANOS:.6f} is left of the {which} budget of ${limit_usd:g}, less "
        f"than any candidate's estimated cost; it resets {resets}"
    )


def rate_message(tenant: str, which: str, rate: float, retry_ms: float, need: int = 1) -> str:
    if math.isinf(retry_ms):
        return f"tenant {tenant!r}: the prompt's {need} tokens exceed the {which} limit of {rate:g}"
    return f"tenant {tenant!r}: the {which} limit of {rate:g} is reached; retry in {math.ceil(retry_ms)} ms"


class NoLimits:
    """No budgets configured."""

    active = False

    async def admit(
        self, request: Request, plan: Plan, decision: Decision, input_tokens: int
    ) -> Ticket | None:
        return None

    def settle(self, ticket: Ticket, cost_usd: float, output_tokens: int) -> None:
        return None

    async def aclose(self) -> None:
        return None


class _TenantState:
    __slots__ = ("day", "limits", "month", "rpm", "tpm")

    def __init__(self, limits: BudgetConfig, clock: ManualClock | None) -> None:
        self.limits = limits
        self.rpm = self.tpm = None
        self.day = self.month = None
        if limits.requests_per_minute:
            self.rpm = TokenBucket(limits.requests_per_minute, limits.requests_per_minute / 60, clock)
        if limits.tokens_per_minute:
            self.tpm = TokenBucket(limits.tokens_per_minute, limits.tokens_per_minute / 60, clock)
        if limits.usd_per_day:
            self.day = BudgetCounter(limits.usd_per_day, "day", clock)
        if limits.usd_per_month:
            self.month = BudgetCounter(limits.usd_per_month, "month", clock)


class LocalGovernor:
    """Limits held in this process. Counters of tenants whose limits a reload left unchanged carry over.

    Tenants with a `budgets` entry of their own keep their counters for good (the config bounds them). Those
    counted under `budgets.default` are any name a client sends, so at most `max_tenants` of them are held,
    the least recently seen dropped first: a dropped tenant starts afresh when it comes back, which grants it
    nothing a new name would not.
    """

    active = True

    def __init__(
        self,
        budgets: Mapping[str, BudgetConfig],
        *,
        previous: LocalGovernor | None = None,
        clock: ManualClock | None = None,
        max_tenants: int = DEFAULT_MAX_TENANTS,
    ) -> None:
        self._budgets = dict(budgets)
        self._clock = clock
        self._tenants: dict[str, _TenantState] = {}  # tenants with their own entry
        self._others: LruDict[str, _TenantState] = LruDict(max_tenants)  # under `budgets.default`
        if previous is not None:
            for tenant, state in [*previous._tenants.items(), *previous._others.items()]:
                if limits_for(self._budgets, tenant) == state.limits:
                    self._keep(tenant, state)

    def _keep(self, tenant: str, state: _TenantState) -> None:
        if tenant in self._budgets:
            self._tenants[tenant] = state
        else:
            self._others.put(tenant, state)

    def _state(self, tenant: str) -> _TenantState | None:
        state = self._tenants.get(tenant) or self._others.get(tenant)
        if state is None:
            limits = limits_for(self._budgets, tenant)
            if limits is None:
                return None
            state = _TenantState(limits, self._clock)
            self._keep(tenant, state)
        return state

    @property
    def tenants_held(self) -> int:
        """Tenants whose counters are in memory (bounded: configured ones plus at most `max_tenants`)."""
        return len(self._tenants) + len(self._others)

    async def admit(
        self, request: Request, plan: Plan, decision: Decision, input_tokens: int
    ) -> Ticket | None:
        tenant = tenant_of(request)
        state = self._state(tenant)
        if state is None:
            return None
        limits = state.limits
        # Check everything first: a refused request must take nothing.
        reserve = 0
        if state.day is not None or state.month is not None:
            which, left, limit = _tighter(state)
            reserve = apply_budget(tenant, plan, decision, left, which, limit)
        if state.rpm is not None and state.rpm.available() < 1:
            rate = limits.requests_per_minute or 0.0
            raise LimitExceeded(
                rate_message(tenant, "requests_per_minute", rate, state.rpm.retry_after_ms(1)),
                decision,
                limit="requests_per_minute",
            )
        if state.tpm is not None and input_tokens and state.tpm.available() < input_tokens:
            rate = limits.tokens_per_minute or 0.0
            raise LimitExceeded(
                rate_message(
                    tenant, "tokens_per_minute", rate, state.tpm.retry_after_ms(input_tokens), input_tokens
                ),
                decision,
                limit="tokens_per_minute",
            )
        # Nothing can run between the checks and these on the event loop: they succeed.
        if state.rpm is not None:
            state.rpm.try_take(1)
        if state.tpm is not None and input_tokens:
            state.tpm.try_take(input_tokens)
        usd = reserve / NANOS
        if state.day is not None:
            state.day.try_reserve(usd)
        if state.month is not None:
            state.month.try_reserve(usd)
        return Ticket(tenant, reserve, state)

    def settle(self, ticket: Ticket, cost_usd: float, output_tokens: int) -> None:
        state = ticket.state
        assert isinstance(state, _TenantState)
        reserved = ticket.reserved_nanos / NANOS
        actual = to_nanos(cost_usd) / NANOS
        if state.day is not None:
            state.day.settle(reserved, actual)
        if state.month is not None:
            state.month.settle(reserved, actual)
        if state.tpm is not None and output_tokens:
            state.tpm.try_take(min(float(output_tokens), state.tpm.available()))

    def spent_usd(self, tenant: str, period: str) -> float:
        """Settled cost plus outstanding reservations of this UTC period (0 for a tenant never seen)."""
        state = self._tenants.get(tenant) or self._others.peek(tenant)
        counter = None if state is None else (state.day if period == "day" else state.month)
        return 0.0 if counter is None else counter.spent()

    async def aclose(self) -> None:
        return None


def _tighter(state: _TenantState) -> tuple[str, int, float]:
    """(name, nano-dollars left, limit) of the budget with less left."""
    best: tuple[str, int, float] | None = None
    for which, counter, limit in (
        ("usd_per_day", state.day, state.limits.usd_per_day),
        ("usd_per_month", state.month, state.limits.usd_per_month),
    ):
        if counter is None or limit is None:
            continue
        left = to_nanos(limit) - to_nanos(counter.spent())
        if best is None or left < best[1]:
            best = (which, left, limit)
    assert best is not None
    return best


def build_governor(
    config: Config, previous: Governor | None = None, on_state_failure: StateFailureHook | None = None
) -> Governor:
    """The governor a config asks for, carrying over what `previous` (the one before a reload) holds."""
    if not any(limits_for(config.budgets, t) for t in config.budgets):
        return NoLimits()
    if config.state is not None:
        from tiergate.governance_redis import RedisGovernor

        return RedisGovernor(
            config.state,
            config.budgets,
            timeout_s=config.state_timeout_ms / 1000,
            on_failure=config.state_failure,
            on_state_failure=on_state_failure,
            previous=previous if isinstance(previous, RedisGovernor) else None,
        )
    return LocalGovernor(
        config.budgets,
        previous=previous if isinstance(previous, LocalGovernor) else None,
        max_tenants=config.limits.max_tenants,
    )
