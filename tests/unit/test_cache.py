"""The response cache: keys, the memory store's TTL and bound, tenant scope, opt-out, and where restricted
answers may be kept (a real redis-server for the fleet store)."""

from __future__ import annotations

import dataclasses

import pytest
import redis

from tiergate.cache.key import cache_key
from tiergate.cache.response_cache import ResponseCache, replay_pieces
from tiergate.cache.store import REDIS_PREFIX, CachedAnswer, MemoryStore
from tiergate.config import CacheConfig
from tiergate.request import Message, Request, Sensitivity

BASE = Request(task="t", messages=[Message("user", "What is 2+2?")], temperature=0.0, max_output_tokens=16)
ANSWER = CachedAnswer("4", "stop", 7, 1, 0.001, "hosted")


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({"task": "other"}, True),  # the route stands for the task
        ({"metadata": {"trace": "x"}}, True),
        ({"stream": True}, True),
        ({"max_cost_usd": 1.0}, True),
        ({"tenant": "b"}, True),  # the tenant scopes the key instead
        ({"temperature": 0.5}, False),
        ({"max_output_tokens": 17}, False),
        ({"json_schema": '{"type": "object"}'}, False),
        ({"messages": [Message("user", "What is 2+3?")]}, False),
        ({"messages": [Message("system", "What is 2+2?")]}, False),
    ],
)
def test_what_the_key_depends_on(change: dict[str, object], same: bool) -> None:
    other = dataclasses.replace(BASE, **change)  # type: ignore[arg-type]
    assert (cache_key("r", other) == cache_key("r", BASE)) is same


def test_the_route_is_in_the_key() -> None:
    assert cache_key("a", BASE) != cache_key("b", BASE)


async def test_memory_entries_expire_and_the_oldest_leave_first() -> None:
    now = [0.0]
    store = MemoryStore(2, clock=lambda: now[0])
    await store.put("a", ANSWER, ttl_s=10)
    await store.put("b", ANSWER, ttl_s=10)
    assert await store.get("a") == ANSWER  # a is now the most recently used
    await store.put("c", ANSWER, ttl_s=10)
    assert (await store.get("b"), len(store)) == (None, 2)
    now[0] = 10.0
    assert await store.get("a") is None and await store.get("c") is None


async def test_tenants_never_share_an_answer_and_a_request_may_opt_out() -> None:
    cache = ResponseCache(CacheConfig(), None, 0.25)
    of_a, of_b = dataclasses.replace(BASE, tenant="a"), dataclasses.replace(BASE, tenant="b")
    first = await cache.lookup("r", of_a, Sensitivity.PUBLIC)
    assert first.answer is None and await cache.keep(first, ANSWER)
    assert (await cache.lookup("r", of_a, Sensitivity.PUBLIC)).answer == ANSWER
    assert (await cache.lookup("r", of_b, Sensitivity.PUBLIC)).answer is None
    opted_out = dataclasses.replace(BASE, tenant="a", metadata={"cache": "no"})
    lookup = await cache.lookup("r", opted_out, Sensitivity.PUBLIC)
    assert lookup.key == "" and lookup.answer is None and not await cache.keep(lookup, ANSWER)


async def test_only_whole_answers_within_the_size_limit_are_kept() -> None:
    cache = ResponseCache(CacheConfig(max_entry_bytes=4), None, 0.25)
    lookup = await cache.lookup("r", BASE, Sensitivity.PUBLIC)
    assert not await cache.keep(lookup, dataclasses.replace(ANSWER, finish_reason="length"))
    assert not await cache.keep(lookup, dataclasses.replace(ANSWER, text="too long"))
    assert await cache.keep(lookup, ANSWER)


async def test_restricted_answers_never_reach_redis(redis_url: str) -> None:
    cache = ResponseCache(CacheConfig(store="redis"), redis_url, 1.0)
    client = redis.Redis.from_url(redis_url)
    try:
        public = await cache.lookup("r", BASE, Sensitivity.PUBLIC)
        assert await cache.keep(public, ANSWER)
        secret = dataclasses.replace(BASE, messages=[Message("user", "card 4111 1111 1111 1111")])
        restricted = await cache.lookup("r", secret, Sensitivity.RESTRICTED)
        assert await cache.keep(restricted, dataclasses.replace(ANSWER, text="restricted answer"))
        stored = [client.get(k) for k in client.scan_iter(f"{REDIS_PREFIX}*")]
        assert len(stored) == 1 and b"restricted answer" not in stored[0]  # type: ignore[operator]
        # ... yet the restricted answer is cached, in this process's memory.
        assert (await cache.lookup("r", secret, Sensitivity.RESTRICTED)).answer is not None
        assert (await cache.lookup("r", BASE, Sensitivity.PUBLIC)).answer == ANSWER  # from Redis
    finally:
        client.close()
        await cache.aclose()


async def test_an_unreachable_redis_is_a_miss_not_a_failure() -> None:
    cache = ResponseCache(CacheConfig(store="redis"), "redis://127.0.0.1:1/0", 0.2)
    lookup = await cache.lookup("r", BASE, Sensitivity.PUBLIC)
    assert lookup.answer is None and not await cache.keep(lookup, ANSWER)
    assert cache.store_failures == 2
    await cache.aclose()


@pytest.mark.parametrize("text", ["Hello, world!", "  two  spaces ", "one", "line\nbreak  end\n"])
def test_a_replay_is_the_answer_cut_into_pieces(text: str) -> None:
    assert "".join(replay_pieces(text)) == text
