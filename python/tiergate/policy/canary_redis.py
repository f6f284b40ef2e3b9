"""Canary state shared by a fleet through Redis (`state: redis://...`): percentages, rollbacks, measures.

One hash per route and candidate, `tiergate:canary:{ROUTE}:{MODEL}` (bounded by the config; expires 30 days
after its last write)::

    configured     the configured percentage the state was (re)armed with
    percent        in force now (0 after a rollback)
    rolled_back    why, or ""
    ARM:FIELD      per arm (baseline, canary): requests, failures, ttft_n, ttft_sum_ms, scored, score_sum

Each sidecar adds its observations with one script call (HINCRBYFLOAT) whose reply is the whole hash: its
local copy, from which it assigns arms and judges, is the fleet's. A rollback is written once (the first
sidecar to see the verdict); a percentage set with `tiergate canary` reaches every sidecar with its next
observation. Redis failures are counted (`tiergate_state_failures_total{operation="canary"}`) and logged; the
sidecar then goes on with its own measures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tiergate.config import Config

logger = logging.getLogger(__name__)
TTL_S = 30 * 86_400
POOL_SIZE = 8

# ARGV[1] configured, ARGV[2] ttl; ARGV[3..] field, delta pairs. Creates the state when there is none.
SYNC = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'configured', ARGV[1], 'percent', ARGV[1], 'rolled_back', '')
end
for i = 3, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""
# ARGV[1] configured, ARGV[2] ttl: (re)arms the state when its configured percentage differs.
CONFIGURE = """
if redis.call('HGET', KEYS[1], 'configured') ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'configured', ARGV[1], 'percent', ARGV[1], 'rolled_back', '')
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""
# ARGV[1] configured, ARGV[2] ttl, ARGV[3] percent: set by an operator; a rolled-back canary starts afresh.
SET_PERCENT = """
local configured = redis.call('HGET', KEYS[1], 'configured') or ARGV[1]
if redis.call('HGET', KEYS[1], 'rolled_back') ~= '' then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'configured', configured, 'percent', ARGV[3], 'rolled_back', '')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""
# ARGV[1] configured, ARGV[2] ttl, ARGV[3] reason: the first verdict wins.
ROLLBACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'configured', ARGV[1], 'percent', ARGV[1], 'rolled_back', '')
end
if redis.call('HGET', KEYS[1], 'rolled_back') == '' then
  redis.call('HSET', KEYS[1], 'percent', '0', 'rolled_back', ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""

Reply = dict[str, str]
StateFailureHook = Callable[[str, str], None]


def canary_store_url(config: Config) -> str | None:
    """The fleet's store for canary state: only when some route has a canary."""
    if config.state is None or not any(r.canary is not None for r in config.routes.values()):
        return None
    return config.state


def canary_store_for(config: Config, on_state_failure: StateFailureHook | None) -> RedisCanaryStore | None:
    """The Redis store a config's canaries share with the fleet, or None (no `state:`, or no canary)."""
    url = canary_store_url(config)
    if url is None:
        return None
    return RedisCanaryStore(url, timeout_s=config.state_timeout_ms / 1000, on_state_failure=on_state_failure)


class RedisCanaryStore:
    def __init__(
        self, url: str, *, timeout_s: float = 0.25, on_state_failure: StateFailureHook | None = None
    ) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=max(timeout_s, 0.05),
            socket_timeout=timeout_s,
            socket_connect_timeout=max(timeout_s, 0.5),
        )
        self.url = url
        self._client = aioredis.Redis.from_pool(pool)
        self._hook = on_state_failure
        self._sync = self._client.register_script(SYNC)
        self._configure = self._client.register_script(CONFIGURE)
        self._set_percent = self._client.register_script(SET_PERCENT)
        self._rollback = self._client.register_script(ROLLBACK)

    async def sync(
        self, route: str, model: str, configured: float, deltas: Mapping[str, float]
    ) -> Reply | None:
        args: list[str | float] = [_num(configured), TTL_S]
        for name, delta in deltas.items():
            args += [name, _num(delta)]
        return await self._call(self._sync, route, model, args)

    async def configure(self, route: str, model: str, configured: float) -> Reply | None:
        return await self._call(self._configure, route, model, [_num(configured), TTL_S])

    async def set_percent(self, route: str, model: str, configured: float, percent: float) -> Reply | None:
        return await self._call(self._set_percent, route, model, [_num(configured), TTL_S, _num(percent)])

    async def rollback(self, route: str, model: str, configured: float, reason: str) -> Reply | None:
        return await self._call(self._rollback, route, model, [_num(configured), TTL_S, reason])

    async def _call(self, script: object, route: str, model: str, args: list[str | float]) -> Reply | None:
        started = time.monotonic()
        try:
            flat = await script(keys=[f"tiergate:canary:{route}:{model}"], args=args)  # type: ignore[operator]
        except (RedisError, OSError) as exc:
            if self._hook is not None:
                self._hook("canary", "allowed")
            logger.warning(
                "canary state (Redis) failed after %.0f ms: %s: %s",
                (time.monotonic() - started) * 1000,
                type(exc).__name__,
                exc,
            )
            return None
        items = [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
        return dict(zip(items[::2], items[1::2], strict=True))

    async def aclose(self) -> None:
        await self._client.aclose()


def _num(value: float) -> str:
    return repr(float(value))
