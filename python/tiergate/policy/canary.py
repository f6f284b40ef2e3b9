"""Canary rollouts: a sticky share of a route's traffic tries a candidate model first; automatic rollback.

Config: `routes.NAME.canary: {model, percent, sticky, min_samples, max_error_rate_increase,
max_ttft_increase, max_score_drop}`. A request is in the **canary** arm when the hash of its sticky key
(the tenant, or a metadata value such as a conversation id) falls below `percent`; its plan then tries the
candidate first and the route's chain after it. Every other request is in the **baseline** arm: the chain as
configured. The hash (BLAKE2b of route, candidate and key) is the same in every process and after every
reload, so a key keeps its arm while the percentage stays, and raising the percentage only moves keys from
baseline to canary. A request without a key is assigned at random.

Each arm's first choice (the candidate; the chain's first model) is measured: error rate (errors, TTFT
timeouts, interrupted or rejected answers, over every attempt that ended otherwise ok or failed), mean TTFT,
and the mean feedback score (`feedback.py`). Once both arms have `min_samples` of a measure, the canary is
**rolled back** (its percentage set to 0; the Decision's reason says why) when its error rate exceeds the
baseline's by more than `max_error_rate_increase`, its mean TTFT the baseline's by more than
`max_ttft_increase` (relative) and `min_ttft_increase_ms` (absolute), or its mean score falls below the
baseline's by more than `max_score_drop`.

The state (current percentage, rollback, measures) outlives reloads: a reload that changes the configured
percentage applies it and re-arms a rolled-back canary; one that leaves it alone keeps a percentage set with
`tiergate canary` (`set_percent`). A new candidate model starts afresh. With `state: redis://` the state is
shared by a fleet (`canary_redis.py`): observations go to Redis after the answer, and this sidecar's copy
(from which it assigns arms and judges) is the fleet's as of its last call.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tiergate.errors import InvalidRequest, UnknownTask
from tiergate.request import Decision, Outcome, Request

if TYPE_CHECKING:  # the clients read CanaryState without loading the config machinery (pydantic)
    from tiergate.config import CanaryConfig, RouteConfig

CANARY = "canary"
BASELINE = "baseline"
ARMS = (BASELINE, CANARY)
BUCKETS = 10_000  # assignment resolution: 0.01 %
_FAILED = frozenset({Outcome.ERROR, Outcome.TTFT_TIMEOUT, Outcome.PARTIAL, Outcome.REJECTED})


@dataclass(slots=True)
class ArmStats:
    requests: int = 0  # first attempts that ended ok or failed
    failures: int = 0
    ttft_n: int = 0
    ttft_sum_ms: float = 0.0
    scored: int = 0
    score_sum: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def mean_ttft_ms(self) -> float:
        return self.ttft_sum_ms / self.ttft_n if self.ttft_n else 0.0

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.scored if self.scored else 0.0


@dataclass(slots=True)
class CanaryState:
    """One route's rollout: what `tiergate canary` shows."""

    route: str
    model: str
    configured_percent: float  # the config's percentage when this state was last (re)armed
    percent: float  # in force now: 0 after a rollback
    rolled_back: str = ""  # why, once rolled back
    arms: dict[str, ArmStats] = field(default_factory=lambda: {arm: ArmStats() for arm in ARMS})


class SharedStore(Protocol):
    """Where a fleet's canary state lives (`canary_redis.RedisCanaryStore`); None from a call: unreachable."""

    url: str

    async def sync(
        self, route: str, model: str, configured: float, deltas: Mapping[str, float]
    ) -> dict[str, str] | None: ...
    async def configure(self, route: str, model: str, configured: float) -> dict[str, str] | None: ...
    async def set_percent(
        self, route: str, model: str, configured: float, percent: float
    ) -> dict[str, str] | None: ...
    async def rollback(
        self, route: str, model: str, configured: float, reason: str
    ) -> dict[str, str] | None: ...
    async def aclose(self) -> None: ...


def bucket(route: str, model: str, key: str) -> int:
    """The key's place in 0..BUCKETS-1: stable across processes, restarts and reloads."""
    digest = hashlib.blake2b(f"{route}\0{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def sticky_key(canary: CanaryConfig, request: Request) -> str:
    if canary.sticky == "tenant":
        return request.tenant
    return request.metadata.get(canary.sticky.removeprefix("metadata:"), "")


class CanaryController:
    """Assigns arms, measures them, rolls back. One per sidecar; a reload hands it on (`reconfigure`)."""

    def __init__(
        self,
        routes: Mapping[str, RouteConfig],
        *,
        rng: Callable[[], float] = random.random,
        on_rollback: Callable[[CanaryState], None] | None = None,
        store: SharedStore | None = None,
    ) -> None:
        self._rng = rng
        self._on_rollback = on_rollback
        self.store = store
        self._pending: set[asyncio.Task[None]] = set()
        self.states: dict[str, CanaryState] = {}
        self._configs: dict[str, CanaryConfig] = {}
        self.reconfigure(routes)

    def reconfigure(self, routes: Mapping[str, RouteConfig]) -> None:
        """A (re)loaded config: routes keep their state unless their candidate or configured share changed."""
        configs = {name: route.canary for name, route in routes.items() if route.canary is not None}
        states = {}
        for name, canary in configs.items():
            state = self.states.get(name)
            if state is None or state.model != canary.model or state.configured_percent != canary.percent:
                state = CanaryState(name, canary.model, canary.percent, canary.percent)
                if self.store is not None:  # the fleet's state, re-armed if its configured share changed
                    self._spawn(self._configure(state))
            states[name] = state
        self._configs, self.states = configs, states

    def set_store(self, store: SharedStore | None) -> None:
        """A reload named another state store: the old one is closed once its calls are done."""
        old, self.store = self.store, store
        if old is not None:
            self._spawn(old.aclose())
        if store is not None:
            for state in self.states.values():
                self._spawn(self._configure(state))

    # -- the request path ------------------------------------------------------------------------------------

    def arm(self, route_name: str, request: Request) -> str:
        """ "canary", "baseline", or "" when the route has no rollout."""
        canary = self._configs.get(route_name)
        if canary is None:
            return ""
        state = self.states[route_name]
        key = sticky_key(canary, request)
        place = bucket(route_name, canary.model, key) if key else int(self._rng() * BUCKETS)
        return CANARY if place < state.percent * BUCKETS / 100 else BASELINE

    def candidate(self, route_name: str) -> str:
        return self._configs[route_name].model

    def observe(self, decision: Decision) -> None:
        """Folds a finished request's first attempt into its arm's measures; may roll back."""
        state = self.states.get(decision.route)
        if state is None or decision.arm not in ARMS or not decision.attempts:
            return
        first = decision.attempts[0]
        if (decision.arm == CANARY) != (first.model == state.model):
            return  # e.g. the candidate was filtered out: the baseline served a canary-arm request
        if first.outcome is not Outcome.OK and first.outcome not in _FAILED:
            return  # cancelled, deadline, lost a hedge: says nothing about the model
        deltas = {"requests": 1.0}
        if first.outcome is not Outcome.OK:
            deltas["failures"] = 1.0
        elif first.ttft_ms > 0:
            deltas.update(ttft_n=1.0, ttft_sum_ms=first.ttft_ms)
        self._record(state, decision.arm, deltas)

    def feedback(self, route: str, model: str, arm: str, score: float | None) -> None:
        state = self.states.get(route)
        if state is None or score is None or arm not in ARMS:
            return
        if (arm == CANARY) != (model == state.model):
            return
        self._record(state, arm, {"scored": 1.0, "score_sum": score})

    def _record(self, state: CanaryState, arm: str, deltas: dict[str, float]) -> None:
        if self.store is None:
            _add(state.arms[arm], deltas)
            self._judge(state)
        else:
            self._spawn(self._push(state, arm, deltas))

    # -- operators -------------------------------------------------------------------------------------------

    async def set_percent(self, route: str, percent: float) -> CanaryState:
        """`tiergate canary ROUTE --percent N`: applies now, re-arms a rolled-back canary.

        Raises:
            UnknownTask: the route has no canary.
            InvalidRequest: the percentage is outside 0..100.
        """
        state = self.state(route)
        if not 0 <= percent <= 100:
            raise InvalidRequest(f"percent {percent} is outside 0..100")
        if state.rolled_back:
            state.arms = {arm: ArmStats() for arm in ARMS}
        state.percent, state.rolled_back = percent, ""
        if self.store is not None:
            _apply(state, await self.store.set_percent(route, state.model, state.configured_percent, percent))
        return state

    async def refresh(self, route: str) -> CanaryState:
        """The route's state, read again from the fleet's store when there is one."""
        state = self.state(route)
        if self.store is not None:
            _apply(state, await self.store.sync(route, state.model, state.configured_percent, {}))
        return state

    def state(self, route: str) -> CanaryState:
        state = self.states.get(route)
        if state is None:
            routes = ", ".join(sorted(self.states)) or "none"
            raise UnknownTask(f"route {route!r} has no canary rollout (routes with one: {routes})")
        return state

    def _judge(self, state: CanaryState) -> str:
        """Rolls back (here) when the measures say so; returns the verdict."""
        config = self._configs.get(state.route)
        if state.rolled_back or config is None or config.model != state.model:
            return ""
        why = verdict(config, state.arms[BASELINE], state.arms[CANARY])
        if why:
            state.percent, state.rolled_back = 0.0, why
            if self._on_rollback is not None:
                self._on_rollback(state)
        return why

    # -- the fleet's store ---------------------------------------------------------------------------------

    async def _push(self, state: CanaryState, arm: str, deltas: dict[str, float]) -> None:
        assert self.store is not None
        fields = {f"{arm}:{name}": value for name, value in deltas.items()}
        reply = await self.store.sync(state.route, state.model, state.configured_percent, fields)
        if reply is None:
            _add(state.arms[arm], deltas)  # unreachable: judge on what this sidecar saw
        else:
            _apply(state, reply)
        if state.rolled_back:
            return
        why = self._judge(state)
        if why and reply is not None and self.store is not None:
            _apply(state, await self.store.rollback(state.route, state.model, state.configured_percent, why))

    async def _configure(self, state: CanaryState) -> None:
        if self.store is not None:
            _apply(state, await self.store.configure(state.route, state.model, state.configured_percent))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Waits for the store calls in flight."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        if self.store is not None:
            await self.store.aclose()
            self.store = None


def _add(stats: ArmStats, deltas: Mapping[str, float]) -> None:
    stats.requests += int(deltas.get("requests", 0))
    stats.failures += int(deltas.get("failures", 0))
    stats.ttft_n += int(deltas.get("ttft_n", 0))
    stats.ttft_sum_ms += deltas.get("ttft_sum_ms", 0.0)
    stats.scored += int(deltas.get("scored", 0))
    stats.score_sum += deltas.get("score_sum", 0.0)


def _apply(state: CanaryState, reply: Mapping[str, str] | None) -> None:
    """The fleet's state (a store's reply) as this sidecar's copy; None (unreachable) changes nothing."""
    if reply is None:
        return
    state.percent = float(reply.get("percent", state.percent))
    state.rolled_back = reply.get("rolled_back", state.rolled_back)
    for arm in ARMS:
        stats = ArmStats()
        _add(stats, {k.split(":", 1)[1]: float(v) for k, v in reply.items() if k.startswith(f"{arm}:")})
        state.arms[arm] = stats


def verdict(canary: CanaryConfig, base: ArmStats, cand: ArmStats) -> str:
    """Why the canary must be rolled back, or "" while it holds (or too little is known)."""
    n = canary.min_samples
    if base.requests >= n and cand.requests >= n:
        if cand.error_rate - base.error_rate > canary.max_error_rate_increase:
            return (
                f"error rate {cand.error_rate:.1%} vs baseline {base.error_rate:.1%} "
                f"(over {cand.requests} and {base.requests} requests)"
            )
    if base.ttft_n >= n and cand.ttft_n >= n and base.mean_ttft_ms > 0:
        slower = cand.mean_ttft_ms - base.mean_ttft_ms
        if slower / base.mean_ttft_ms > canary.max_ttft_increase and slower > canary.min_ttft_increase_ms:
            return f"mean TTFT {cand.mean_ttft_ms:.0f} ms vs baseline {base.mean_ttft_ms:.0f} ms"
    if base.scored >= n and cand.scored >= n:
        if base.mean_score - cand.mean_score > canary.max_score_drop:
            return f"mean feedback score {cand.mean_score:.2f} vs baseline {base.mean_score:.2f}"
    return ""
