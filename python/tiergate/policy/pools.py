"""Pools: equivalent models sharing one step of a chain, chosen by weight, health and latency.

Config: `pools: {NAME: {members: {MODEL: WEIGHT, ...}, slow_start_ms, latency_tolerance}}`; a route's chain
names the pool where it would name a model. The planner keeps the members its filters allow, and
`PoolSelector.order` puts them in the order dispatch tries them: the chosen member first, then the rest of
the pool (chosen the same way among those left) as the step's own fallback, before the chain moves on.

Choosing one member ("power of two choices"):

1. Draw a member at random in proportion to its effective weight, then a second one among the others.
2. The second wins only when both have measured TTFTs and the first one's is more than `latency_tolerance`
   times the second's (a decayed estimate: `ModelStats.ttft_ms`, an exponential moving average). Otherwise
   the first draw wins, so members of similar latency split traffic exactly by weight.

Effective weight: the configured weight, times the slow-start ramp. A member whose circuit breaker is OPEN is
not drawn (it goes to the end of the pool's order, where dispatch skips it while it stays open); a HALF_OPEN
one gets the ramp's floor (it is being probed). When a breaker is seen CLOSED again after being seen open or
half-open, the member's weight ramps linearly from `MIN_RAMP` of its weight back to all of it over
`slow_start_ms`, so a model that just recovered is not handed its whole share at once.

Breaker states are read (never asked for permission, which would move OPEN to HALF_OPEN) each time a pool is
planned; the clock and the random source are injectable, so tests need no sleeping and no seed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from tiergate.config import PoolConfig
from tiergate.model_stats import ModelStats

MIN_RAMP = 0.05  # the share of its weight a member gets right after its breaker closes again


class BreakerView(Protocol):
    @property
    def state(self) -> str: ...


class PoolSelector:
    """Orders pool members; keeps each member's slow-start state (carried over by a config reload)."""

    def __init__(
        self,
        pools: Mapping[str, PoolConfig],
        breakers: Mapping[str, BreakerView],
        stats: Mapping[str, ModelStats],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        previous: PoolSelector | None = None,
    ) -> None:
        self._pools = pools
        self._breakers = breakers
        self._stats = stats
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        # model -> when its breaker was seen closed again (clock seconds); model -> state seen last.
        self._recovered_at: dict[str, float] = dict(previous._recovered_at) if previous else {}
        self._seen: dict[str, str] = dict(previous._seen) if previous else {}

    def is_pool(self, step: str) -> bool:
        return step in self._pools

    @property
    def any(self) -> bool:
        """True when the config has pools at all."""
        return bool(self._pools)

    def members(self, step: str) -> list[str]:
        """A chain step's models, in config order: a pool's members, or the model itself."""
        pool = self._pools.get(step)
        return list(pool.members) if pool is not None else [step]

    def weights(self, pool_name: str, members: list[str]) -> dict[str, float]:
        """Each member's effective weight now (0: its breaker is open). Updates the slow-start state."""
        pool = self._pools[pool_name]
        now = self._clock()
        out = {}
        for name in members:
            state = self._observe(name, now)
            weight = pool.members[name]
            if state == "open":
                out[name] = 0.0
            elif state == "half_open":
                out[name] = weight * MIN_RAMP
            else:
                out[name] = weight * self._ramp(name, now, pool.slow_start_ms)
        return out

    def order(self, pool_name: str, members: list[str]) -> list[str]:
        """The order to try `members` (the ones the filters kept) in: chosen first, the rest after."""
        if len(members) < 2:
            return list(members)
        tolerance = self._pools[pool_name].latency_tolerance
        weights = self.weights(pool_name, members)
        left = [name for name in members if weights[name] > 0]
        ordered: list[str] = []
        while left:
            chosen = self._choose(left, weights, tolerance)
            ordered.append(chosen)
            left.remove(chosen)
        # Open breakers last: dispatch skips them while they stay open, and probes them once they may.
        return ordered + [name for name in members if weights[name] <= 0]

    def _choose(self, names: list[str], weights: Mapping[str, float], tolerance: float) -> str:
        first = self._draw(names, weights)
        if len(names) == 1:
            return first
        second = self._draw([n for n in names if n != first], weights)
        a, b = self._stats.get(first), self._stats.get(second)
        if a is not None and b is not None and a.samples and b.samples and a.ttft_ms > tolerance * b.ttft_ms:
            return second
        return first

    def _draw(self, names: list[str], weights: Mapping[str, float]) -> str:
        total = sum(weights[n] for n in names)
        point = self._rng.random() * total
        for name in names:
            point -= weights[name]
            if point < 0:
                return name
        return names[-1]  # rounding at the very top of the range

    def _observe(self, name: str, now: float) -> str:
        breaker = self._breakers.get(name)
        state = str(breaker.state) if breaker is not None else "closed"
        before = self._seen.get(name, "closed")
        if state == "closed" and before != "closed":
            self._recovered_at[name] = now
        self._seen[name] = state
        return state

    def _ramp(self, name: str, now: float, slow_start_ms: float) -> float:
        since = self._recovered_at.get(name)
        if since is None:
            return 1.0
        if slow_start_ms <= 0 or (now - since) * 1000 >= slow_start_ms:
            del self._recovered_at[name]  # ramped up: nothing left to remember
            return 1.0
        return max(MIN_RAMP, (now - since) * 1000 / slow_start_ms)
