"""What may be cached, and where. One `ResponseCache` per config (kept across a reload if `cache:` is the
same).

- Keys are scoped by tenant (`key.tenant_scope`): one tenant's answer is never served to another.
- A restricted request's answer is kept in this process's memory only, never in Redis (it may not leave the
  device); with `store: redis`, non-restricted answers go to Redis, shared by the fleet.
- A request whose metadata says `cache: no` (or `off`, `false`) is neither looked up nor stored.
- Only complete answers are stored (finish reason `stop`), no larger than `max_entry_bytes`.
- A store that fails (Redis down) is a miss, counted and logged: the request goes on to the models.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from tiergate.cache.key import cache_key, tenant_scope
from tiergate.cache.store import CachedAnswer, MemoryStore, RedisStore, Store, StoreError
from tiergate.config import CacheConfig
from tiergate.request import Completion, Decision, Request, Sensitivity, Usage

logger = logging.getLogger(__name__)

OPT_OUT = frozenset({"no", "off", "false"})


@dataclass(frozen=True, slots=True)
class Lookup:
    key: str  # "" when the request may not use the cache
    answer: CachedAnswer | None
    restricted: bool


class ResponseCache:
    def __init__(self, config: CacheConfig, redis_url: str | None, timeout_s: float) -> None:
        self.config = config
        self._memory = MemoryStore(config.max_entries)
        self._shared: Store | None = (
            RedisStore(redis_url, timeout_s) if config.store == "redis" and redis_url else None
        )
        self.store_failures = 0

    def _where(self, restricted: bool) -> Store:
        return self._memory if restricted or self._shared is None else self._shared

    async def lookup(self, route: str, request: Request, sensitivity: Sensitivity) -> Lookup:
        restricted = sensitivity >= Sensitivity.RESTRICTED
        if request.metadata.get("cache", "").lower() in OPT_OUT:
            return Lookup("", None, restricted)
        key = f"{tenant_scope(request.tenant)}:{cache_key(route, request)}"
        try:
            return Lookup(key, await self._where(restricted).get(key), restricted)
        except StoreError as exc:
            self.store_failures += 1
            logger.warning("response cache: %s (answered without the cache)", exc)
            return Lookup(key, None, restricted)

    async def keep(self, lookup: Lookup, answer: CachedAnswer) -> bool:
        """Stores a fresh answer under the lookup's key; whether it was stored."""
        if not lookup.key or answer.finish_reason != "stop":
            return False
        if len(answer.text.encode("utf-8", errors="surrogatepass")) > self.config.max_entry_bytes:
            return False
        try:
            await self._where(lookup.restricted).put(lookup.key, answer, self.config.ttl_s)
        except StoreError as exc:
            self.store_failures += 1
            logger.warning("response cache: %s", exc)
            return False
        return True

    async def aclose(self) -> None:
        await self._memory.aclose()
        if self._shared is not None:
            await self._shared.aclose()


def replay_pieces(text: str) -> list[str]:
    """A cached answer cut into word-sized pieces, replayed as a stream."""
    return re.findall(r"\s*\S+|\s+$", text) or [text]


def served_from_cache(decision: Decision, answer: CachedAnswer, started: float) -> Completion:
    """A cached answer as this request's: nothing was paid for it, and the Decision says so."""
    decision.served_by = answer.served_by
    decision.cost_saved_usd = answer.cost_usd
    decision.reason = f"{decision.reason}; response cache hit" if decision.reason else "response cache hit"
    decision.overhead_ms = (time.monotonic() - started) * 1000
    usage = Usage(input_tokens=answer.input_tokens, output_tokens=answer.output_tokens)
    return Completion(answer.text, usage, answer.finish_reason)
