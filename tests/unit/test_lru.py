"""lru.py: at most `capacity` entries, least recently used dropped first."""

from __future__ import annotations

import pytest

from tiergate.lru import LruDict


def test_keeps_the_most_recently_used() -> None:
    lru: LruDict[str, int] = LruDict(3)
    for i, key in enumerate("abcd"):
        lru.put(key, i)
    assert [k for k, _ in lru.items()] == ["b", "c", "d"] and lru.evicted == 1
    assert lru.get("b") == 1  # a use: b is now the most recent
    lru.put("e", 4)
    assert [k for k, _ in lru.items()] == ["d", "b", "e"]
    assert lru.peek("d") == 3  # not a use
    lru.put("f", 5)
    assert "d" not in lru and len(lru) == 3


def test_a_million_keys_stay_within_capacity() -> None:
    lru: LruDict[str, int] = LruDict(1000)
    for i in range(1_000_000):
        lru.put(f"tenant-{i}", i)
    assert len(lru) == 1000 and lru.evicted == 999_000
    assert lru.peek("tenant-999999") == 999_999 and lru.peek("tenant-0") is None


def test_pop_and_capacity_check() -> None:
    lru: LruDict[str, int] = LruDict(2)
    lru.put("a", 1)
    assert lru.pop("a") == 1 and lru.pop("a") is None
    with pytest.raises(ValueError, match="capacity"):
        LruDict(0)
