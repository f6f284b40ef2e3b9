"""Budgets and rate limits shared by a fleet of sidecars through Redis (`state: redis://host:port/db`).

The rules are those of `governance` (read its docstring); here each admission and each settlement is one Lua
script, so it runs atomically in Redis: no lost updates, however many sidecars debit the same tenant at once.
Money is kept in whole nano-dollars (HINCRBY), so the spend is exact. Token buckets refill on Redis's own
clock (`TIME`), so the sidecars' clocks need not agree; budget periods are UTC calendar days and months.

Keys, per tenant (the `{tenant}` hash tag keeps them in one Redis Cluster slot):
    tiergate:{T}:rpm, tiergate:{T}:tpm           hash {tokens, ts}: token buckets, expire after 2 idle minutes
    tiergate:{T}:usd:day:YYYYMMDD                hash {spent, reserved} in nano-dollars, expire after 3 days
    tiergate:{T}:usd:month:YYYYMM                the same per month, expire after 70 days

When Redis is unreachable (or answers with an error) the config decides: `state_failure: open` serves the
request without limits, `closed` refuses it with `StateUnavailable`; either way the hook counts it. A circuit
breaker in front of Redis stops every admission from waiting out the timeout while it is down. Settlements
run after the answer, off the request's path, and are always tried; one that fails is counted as lost spend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tiergate._native import CircuitBreaker
from tiergate.config import BudgetConfig
from tiergate.errors import LimitExceeded, StateUnavailable
from tiergate.governance import (
    NANOS,
    StateFailureHook,
    Ticket,
    apply_budget,
    budget_message,
    limits_for,
    rate_message,
    tenant_of,
    to_nanos,
)
from tiergate.request import Decision, Request
from tiergate.routing import Plan

logger = logging.getLogger(__name__)

DAY_TTL_S = 3 * 86_400
# Connections per sidecar. A burst of requests queues for one (up to POOL_WAIT_S) rather than opening a
# connection each: 2,000 simultaneous connects would time out, and Redis answers each script in microseconds.
POOL_SIZE = 32
POOL_WAIT_S = 5.0
# Connecting happens once per pooled connection; under a burst the event loop can be busy for a while before
# it gets back to a connect in progress, so it gets at least this long.
MIN_CONNECT_TIMEOUT_S = 1.0
MONTH_TTL_S = 70 * 86_400

# KEYS: rpm bucket, tpm bucket, day budget, month budget.
# ARGV: rpm (0: none), tpm (0: none), prompt tokens, day limit nanos (-1: none), month limit nanos (-1: none),
#       day TTL s, month TTL s, then each candidate's estimated cost in nanos.
# Returns {"ok", the tighter budget's name (or ""), its nanos left before, nanos reserved}
#      or {the limit's name, detail}.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function level(key, cap)
  local v = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if not tokens then return cap end
  local elapsed = now - ts
  if elapsed < 0 then elapsed = 0 end
  return math.min(cap, tokens + elapsed * cap / 60000000)
end
local function left(key, limit)
  if limit < 0 then return nil end
  local v = redis.call('HMGET', key, 'spent', 'reserved')
  return limit - (tonumber(v[1]) or 0) - (tonumber(v[2]) or 0)
end
local rpm, tpm, prompt = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local day_left = left(KEYS[3], tonumber(ARGV[4]))
local month_left = left(KEYS[4], tonumber(ARGV[5]))
local budget_left, which = nil, ''
if day_left then budget_left, which = day_left, 'usd_per_day' end
if month_left and (not budget_left or month_left < budget_left) then
  budget_left, which = month_left, 'usd_per_month'
end
local reserve = 0
if budget_left and #ARGV >= 8 then
  local fits = false
  for i = 8, #ARGV do
    local c = tonumber(ARGV[i])
    if c <= budget_left and (c == 0 or budget_left > 0) then
      fits = true
      if c > reserve then reserve = c end
    end
  end
  if not fits then return {which, string.format('%d', budget_left)} end
end
local rpm_level, tpm_level = 0, 0
if rpm > 0 then
  rpm_level = level(KEYS[1], rpm)
  if rpm_level < 1 then
    return {'requests_per_minute', string.format('%.3f', (1 - rpm_level) * 60000 / rpm)}
  end
end
if tpm > 0 and prompt > 0 then
  if prompt > tpm then return {'tokens_per_minute', 'inf'} end
  tpm_level = level(KEYS[2], tpm)
  if tpm_level < prompt then
    return {'tokens_per_minute', string.format('%.3f', (prompt - tpm_level) * 60000 / tpm)}
  end
end
if rpm > 0 then
  redis.call('HSET', KEYS[1], 'tokens', rpm_level - 1, 'ts', now)
  redis.call('PEXPIRE', KEYS[1], 120000)
end
if tpm > 0 and prompt > 0 then
  redis.call('HSET', KEYS[2], 'tokens', tpm_level - prompt, 'ts', now)
  redis.call('PEXPIRE', KEYS[2], 120000)
end
if day_left then
  redis.call('HINCRBY', KEYS[3], 'reserved', reserve)
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
end
if month_left then
  redis.call('HINCRBY', KEYS[4], 'reserved', reserve)
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[7]))
end
return {'ok', which, budget_left and string.format('%d', budget_left) or '0', string.format('%d', reserve)}
"""

# KEYS: tpm bucket, day key reserved in, month key reserved in, day key now, month key now.
# ARGV: tpm (0: none), output tokens, reserved nanos, actual nanos, day (1/0), month (1/0),
#       day TTL, month TTL.
SETTLE = """
local tpm, out, reserved, actual = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function settle(reserved_key, now_key, ttl)
  local held = tonumber(redis.call('HGET', reserved_key, 'reserved') or '0')
  local give_back = math.min(held, reserved)
  if give_back > 0 then redis.call('HINCRBY', reserved_key, 'reserved', -give_back) end
  if actual > 0 then redis.call('HINCRBY', now_key, 'spent', actual) end
  redis.call('EXPIRE', now_key, ttl)
end
if ARGV[5] == '1' then settle(KEYS[2], KEYS[4], tonumber(ARGV[7])) end
if ARGV[6] == '1' then settle(KEYS[3], KEYS[5], tonumber(ARGV[8])) end
if tpm > 0 and out > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if not tokens then tokens, ts = tpm, now end
  local elapsed = now - ts
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(tpm, tokens + elapsed * tpm / 60000000) - out
  if tokens < 0 then tokens = 0 end
  redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
  redis.call('PEXPIRE', KEYS[1], 120000)
end
return 1
"""


@dataclass(slots=True)
class _Held:
    """Where a reservation was made (the period may turn before it is settled)."""

    limits: BudgetConfig
    day_key: str
    month_key: str


def _keys(tenant: str, now: float) -> tuple[str, str, str, str]:
    day = datetime.fromtimestamp(now, UTC)
    base = f"tiergate:{{{tenant}}}"
    return (
        f"{base}:rpm",
        f"{base}:tpm",
        f"{base}:usd:day:{day:%Y%m%d}",
        f"{base}:usd:month:{day:%Y%m}",
    )


class RedisGovernor:
    """Budgets and rate limits in Redis. One connection pool per governor (reused across reloads)."""

    active = True
    _url: str
    _timeout_s: float
    _client: aioredis.Redis
    _breaker: CircuitBreaker
    _owns_client: bool

    def __init__(
        self,
        url: str,
        budgets: Mapping[str, BudgetConfig],
        *,
        timeout_s: float = 0.25,
        on_failure: Literal["open", "closed"] = "open",
        on_state_failure: StateFailureHook | None = None,
        previous: RedisGovernor | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._budgets = dict(budgets)
        self._on_failure = on_failure
        self._hook = on_state_failure
        self._now = now
        self._pending: set[asyncio.Task[None]] = set()
        if previous is not None and previous._url == url and previous._timeout_s == timeout_s:
            self._client = previous._client
            self._breaker = previous._breaker
            previous._owns_client = False
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=POOL_SIZE,
                timeout=POOL_WAIT_S,
                socket_timeout=timeout_s,
                socket_connect_timeout=max(timeout_s, MIN_CONNECT_TIMEOUT_S),
            )
            self._client = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
            # Redis down: fail fast for a second instead of waiting out the timeout on every request.
            self._breaker = CircuitBreaker(
                failure_rate=50, window=10, min_calls=3, open_ms=1000, half_open_calls=1
            )
        self._url = url
        self._timeout_s = timeout_s
        self._owns_client = True
        self._admit = self._client.register_script(ADMIT)
        self._settle = self._client.register_script(SETTLE)

    async def admit(
        self, request: Request, plan: Plan, decision: Decision, input_tokens: int
    ) -> Ticket | None:
        tenant = tenant_of(request)
        limits = limits_for(self._budgets, tenant)
        if limits is None:
            return None
        rpm_key, tpm_key, day_key, month_key = _keys(tenant, self._now())
        args: list[Any] = [
            limits.requests_per_minute or 0,
            limits.tokens_per_minute or 0,
            input_tokens,
            to_nanos(limits.usd_per_day) if limits.usd_per_day else -1,
            to_nanos(limits.usd_per_month) if limits.usd_per_month else -1,
            DAY_TTL_S,
            MONTH_TTL_S,
        ]
        if limits.usd_per_day or limits.usd_per_month:
            args += [to_nanos(c.est_cost_usd) for c in plan.candidates]
        reply = await self._call(self._admit, [rpm_key, tpm_key, day_key, month_key], args, "admit", decision)
        if reply is None:
            return None
        status = reply[0].decode()
        if status == "ok":
            which = reply[1].decode()
            if which:
                apply_budget(tenant, plan, decision, int(reply[2]), which, _limit(limits, which))
            return Ticket(tenant, int(reply[3]), _Held(limits, day_key, month_key))
        detail = reply[1].decode()
        if status in ("usd_per_day", "usd_per_month"):
            limit = _limit(limits, status)
            apply_budget(tenant, plan, decision, int(detail), status, limit)  # records the skips, raises
            raise LimitExceeded(budget_message(tenant, status, limit, int(detail)), decision, limit=status)
        rate = (
            limits.requests_per_minute if status == "requests_per_minute" else limits.tokens_per_minute
        ) or 0
        raise LimitExceeded(
            rate_message(tenant, status, rate, float(detail), input_tokens), decision, limit=status
        )

    def settle(self, ticket: Ticket, cost_usd: float, output_tokens: int) -> None:
        held = ticket.state
        assert isinstance(held, _Held)
        _, tpm_key, day_now, month_now = _keys(ticket.tenant, self._now())
        limits = held.limits
        args = [
            limits.tokens_per_minute or 0,
            output_tokens,
            ticket.reserved_nanos,
            to_nanos(cost_usd),
            "1" if limits.usd_per_day else "0",
            "1" if limits.usd_per_month else "0",
            DAY_TTL_S,
            MONTH_TTL_S,
        ]
        if not limits.tokens_per_minute and not limits.usd_per_day and not limits.usd_per_month:
            return
        # Off the request's path: the answer does not wait for Redis.
        task = asyncio.create_task(
            self._settle_now([tpm_key, held.day_key, held.month_key, day_now, month_now], args)
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle_now(self, keys: list[str], args: list[Any]) -> None:
        # Always tried, even while the breaker fails admissions fast: a settlement skipped is spend lost.
        await self._call(self._settle, keys, args, "settle", None, use_breaker=False)

    async def _call(
        self,
        script: Any,
        keys: list[str],
        args: list[Any],
        operation: str,
        decision: Decision | None,
        *,
        use_breaker: bool = True,
    ) -> Any:
        """Runs a script; on failure applies `state_failure` (None: go on without limits)."""
        if not use_breaker:
            try:
                return await script(keys=keys, args=args)
            except (RedisError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
        elif self._breaker.try_acquire():
            started = time.monotonic()
            try:
                reply = await script(keys=keys, args=args)
            except (RedisError, OSError) as exc:
                self._breaker.record(False, (time.monotonic() - started) * 1000)
                problem = f"{type(exc).__name__}: {exc}"
            else:
                self._breaker.record(True, (time.monotonic() - started) * 1000)
                return reply
        else:
            problem = "Redis failed repeatedly; not retried for a moment"
        refuse = self._on_failure == "closed" and operation == "admit"
        if self._hook is not None:
            self._hook(operation, "lost" if operation == "settle" else "refused" if refuse else "allowed")
        logger.warning("state store (Redis) %s failed: %s", operation, problem)
        if refuse:
            raise StateUnavailable(
                "the budget and rate-limit state (Redis) is unreachable and state_failure is closed: "
                + problem,
                decision,
            )
        return None

    async def spent_usd(self, tenant: str, period: str) -> float:
        """Settled cost plus outstanding reservations of the current UTC period, fleet-wide."""
        _, _, day_key, month_key = _keys(tenant, self._now())
        values = await self._client.hmget(day_key if period == "day" else month_key, ["spent", "reserved"])
        return sum(int(v) for v in values if v is not None) / NANOS

    async def drain(self) -> None:
        """Waits for the settlements still being written."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        if self._owns_client:
            await self._client.aclose()


def _limit(limits: BudgetConfig, which: str) -> float:
    return (limits.usd_per_day if which == "usd_per_day" else limits.usd_per_month) or 0.0
