"""What may be cached, and where. One `ResponseCache` per config (kept across a reload if `cache:` is the
same).

- Keys are scoped by tenant (`key.tenant_scope`): one tenant's answer is never served to another.
- A restricted request's answer is kept in this process's memory only, never in Redis (it may not leave the
  device); with `store: redis`, non-restricted answers go to Redis, shared by the fleet.
- A request whose metadata says `cache: no` (or `off`, `false`) is neither looked up nor stored.
- Only complete answers are stored (finish reason `stop`), no larger than `max_entry_bytes`.
- A store that fails (Redis down) is a miss, counted and logged: the request goes on to the models.
- With `semantic:`, an exact miss looks for a paraphrase (`semantic.py`): the last user message is embedded
  by the on-device embedding model and compared within its scope. An embedding model that is down or slower
  than `timeout_ms` makes the lookup a miss, counted (`on_semantic`): the request goes on to the models.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from tiergate.cache.key import answer_fields, cache_key, semantic_parts, tenant_scope
from tiergate.cache.semantic import SemanticIndex
from tiergate.cache.store import CachedAnswer, MemoryStore, RedisStore, Store, StoreError
from tiergate.config import CacheConfig, Config
from tiergate.embeddings.types import EmbeddingProvider
from tiergate.providers.base import ProviderError
from tiergate.request import Completion, Decision, Request, Sensitivity, Usage

logger = logging.getLogger(__name__)

OPT_OUT = frozenset({"no", "off", "false"})


@dataclass(frozen=True, slots=True)
class Lookup:
    key: str  # "" when the request may not use the cache
    answer: CachedAnswer | None
    restricted: bool
    match: str = ""  # a hit: "exact" or "semantic"
    similarity: float = 0.0  # a semantic hit: the cosine similarity of the two last user messages
    scope: str = ""  # semantic matching: where a fresh answer's vector is indexed ("": it is not)
    vector: bytes = b""  # ... and that vector: the embedded last user message


# What became of a semantic lookup, as `on_semantic` and `tiergate_cache_semantic_lookups_total` say.
SEMANTIC_RESULTS = ("hit", "miss", "timeout", "unavailable", "not_applicable")


class ResponseCache:
    def __init__(
        self,
        config: CacheConfig,
        redis_url: str | None,
        timeout_s: float,
        *,
        on_semantic: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_semantic(route, result)`: told what became of each semantic lookup (a result of
        `SEMANTIC_RESULTS`); `clock` is the memory store's and the semantic index's."""
        self.config = config
        self._memory = MemoryStore(config.max_entries, clock)
        self._shared: Store | None = (
            RedisStore(redis_url, timeout_s) if config.store == "redis" and redis_url else None
        )
        semantic = config.semantic
        self._index: SemanticIndex | None = None
        if semantic is not None:
            self._index = SemanticIndex(semantic.max_entries, semantic.max_per_scope, clock)
        self._on_semantic = on_semantic
        self.store_failures = 0
        self.semantic_results: Counter[str] = Counter()

    def _where(self, restricted: bool) -> Store:
        return self._memory if restricted or self._shared is None else self._shared

    async def lookup(
        self,
        route: str,
        request: Request,
        sensitivity: Sensitivity,
        embedder: EmbeddingProvider | None = None,
    ) -> Lookup:
        """The exact match, else (with semantic matching and its `embedder`) the nearest paraphrase's."""
        restricted = sensitivity >= Sensitivity.RESTRICTED
        if request.metadata.get("cache", "").lower() in OPT_OUT:
            return Lookup("", None, restricted)
        tenant = tenant_scope(request.tenant)
        fields = answer_fields(request)
        key = f"{tenant}:{cache_key(route, request, fields)}"
        _, answer = await self._get(restricted, key)
        if answer is not None:
            return Lookup(key, answer, restricted, "exact")
        semantic = self.config.semantic
        if self._index is None or semantic is None or embedder is None:
            return Lookup(key, None, restricted)
        parts = semantic_parts(route, request, fields)
        if parts is None:
            self._semantic_result(route, "not_applicable")
            return Lookup(key, None, restricted)
        scope = f"{tenant}:{'restricted' if restricted else 'shared'}:{parts.scope}"
        vector = await self._embed(route, embedder, parts.text, semantic.timeout_ms / 1000)
        if vector is None:
            return Lookup(key, None, restricted)
        miss = Lookup(key, None, restricted, scope=scope, vector=vector)
        return await self._nearest(route, miss, self._index, semantic.threshold)

    async def _get(self, restricted: bool, key: str) -> tuple[bool, CachedAnswer | None]:
        """(whether the store answered, the answer it has): a store that fails is a miss, counted."""
        try:
            return True, await self._where(restricted).get(key)
        except StoreError as exc:
            self.store_failures += 1
            logger.warning("response cache: %s (answered without the cache)", exc)
            return False, None

    async def _embed(
        self, route: str, embedder: EmbeddingProvider, text: str, timeout_s: float
    ) -> bytes | None:
        try:
            async with asyncio.timeout(timeout_s):
                embedded = await embedder.embed([text], 0)
        except TimeoutError:
            self._semantic_result(route, "timeout")
            return None
        except ProviderError as exc:
            self._semantic_result(route, "unavailable")
            logger.warning(
                "response cache: no semantic lookup: %r cannot embed (%s)", embedder.name, exc.kind
            )
            return None
        return embedded.vectors[0]

    async def _nearest(self, route: str, miss: Lookup, index: SemanticIndex, threshold: float) -> Lookup:
        nearest = index.nearest(miss.scope, miss.vector)
        if nearest is None or nearest[1] < threshold:
            self._semantic_result(route, "miss")
            return miss
        key, similarity = nearest
        answered, answer = await self._get(miss.restricted, key)
        if answer is None:
            if answered:  # the store expired or evicted it meanwhile (not when the store is down)
                index.forget(miss.scope, key)
            self._semantic_result(route, "miss")
            return miss
        self._semantic_result(route, "hit")
        return Lookup(miss.key, answer, miss.restricted, "semantic", similarity)

    def _semantic_result(self, route: str, result: str) -> None:
        self.semantic_results[result] += 1
        if self._on_semantic is not None:
            self._on_semantic(route, result)

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
        if self._index is not None and lookup.vector:
            self._index.add(lookup.scope, lookup.vector, lookup.key, self.config.ttl_s)
        return True

    async def aclose(self) -> None:
        await self._memory.aclose()
        if self._index is not None:
            self._index.clear()
        if self._shared is not None:
            await self._shared.aclose()


def cache_setup(config: Config) -> tuple[object, ...]:
    """What a response cache's entries depend on: its config, the Redis URL, the semantic embedding model."""
    semantic = config.cache.semantic if config.cache is not None else None
    return config.cache, config.state, config.models.get(semantic.model) if semantic is not None else None


def replay_pieces(text: str) -> list[str]:
    """A cached answer cut into word-sized pieces, replayed as a stream."""
    return re.findall(r"\s*\S+|\s+$", text) or [text]


def served_from_cache(decision: Decision, lookup: Lookup, started: float) -> Completion:
    """A hit's cached answer as this request's: nothing was paid for it, and the Decision says so."""
    answer = lookup.answer
    assert answer is not None
    decision.served_by = answer.served_by
    decision.cost_saved_usd = answer.cost_usd
    hit = "response cache hit"
    if lookup.match == "semantic":
        hit = f"semantic response cache hit (similarity {lookup.similarity:.3f})"
    decision.reason = f"{decision.reason}; {hit}" if decision.reason else hit
    decision.overhead_ms = (time.monotonic() - started) * 1000
    usage = Usage(input_tokens=answer.input_tokens, output_tokens=answer.output_tokens)
    return Completion(answer.text, usage, answer.finish_reason)
