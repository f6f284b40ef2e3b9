"""Where cached answers live: `MemoryStore` (this process, bounded, LRU) or `RedisStore` (a fleet)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tiergate.request import Completion, Decision

REDIS_PREFIX = "tiergate:cache:"


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    text: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    cost_usd: float  # what the answer cost when it was made: saved by each hit
    served_by: str

    @classmethod
    def of(cls, completion: Completion, decision: Decision) -> CachedAnswer:
        """What to keep of a served answer: its text and usage, what it cost, who served it."""
        usage = completion.usage
        return cls(
            text=completion.text,
            finish_reason=completion.finish_reason,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=decision.cost_usd,
            served_by=decision.served_by,
        )

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> CachedAnswer:
        data = orjson.loads(raw)
        return cls(
            text=str(data["text"]),
            finish_reason=str(data["finish_reason"]),
            input_tokens=int(data["input_tokens"]),
            output_tokens=int(data["output_tokens"]),
            cost_usd=float(data["cost_usd"]),
            served_by=str(data["served_by"]),
        )


class StoreError(Exception):
    """The store could not be read or written (Redis down): the request goes on uncached."""


class Store(Protocol):
    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None: ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """At most `max_entries` answers, least recently used out first; each expires after its TTL."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CachedAnswer | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, answer = found
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return answer

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        self._entries[key] = (self._clock() + ttl_s, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def aclose(self) -> None:
        self._entries.clear()


class RedisStore:
    """Answers in Redis under `tiergate:cache:<key>`, expiring with Redis's own TTL."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=max(timeout_s, 1.0)
        )

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            raw = await self._redis.get(REDIS_PREFIX + key)
        except (RedisError, OSError) as exc:
            raise StoreError(f"cache read failed: {exc}") from exc
        if raw is None:
            return None
        try:
            return CachedAnswer.from_json(raw)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"cache entry {key[:16]}... is not a cached answer") from exc

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        try:
            await self._redis.set(REDIS_PREFIX + key, answer.to_json(), px=max(int(ttl_s * 1000), 1))
        except (RedisError, OSError) as exc:
            raise StoreError(f"cache write failed: {exc}") from exc

    async def aclose(self) -> None:
        await self._redis.aclose()
