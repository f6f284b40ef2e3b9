"""The semantic index: for each scope, the embedded last user messages of the answers kept, and the exact keys
those answers are stored under (`cache.semantic` in the config).

A scope is the tenant, whether the answer is restricted, and the hash of everything in the request but its
last user message (`key.semantic_parts`): a lookup compares embeddings only within its own scope, so another
tenant's answer, or an answer made with other sampling parameters, tools or history, can never match.

The index holds vectors and keys, never answers: a hit reads the answer from the store that holds it (memory,
or Redis for a fleet), so it expires and is evicted with it. The index is in this process's memory even with
`store: redis`: scanning vectors in Redis would move every vector of a scope over the network per lookup, and
a semantic hit is found among the answers this sidecar kept (an exact hit, among the fleet's).

Bounded: at most `max_per_scope` vectors per scope (the oldest out first) and `max_entries` in all (the
oldest of the least recently used scope out first); each expires with the cache's TTL. The scan is one call
into Rust (`nearest_vector`) over a scope's vectors, stored as one block of float32 bytes.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from tiergate._native import nearest_vector


@dataclass(slots=True)
class _Scope:
    keys: list[str] = field(default_factory=list)  # oldest first
    expires: list[float] = field(default_factory=list)  # non-decreasing: one TTL for every entry
    rows: bytes = b""  # the vectors, in the order of `keys`
    width: int = 0  # bytes per vector


class SemanticIndex:
    def __init__(
        self, max_entries: int, max_per_scope: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_entries
        self._max_per_scope = max_per_scope
        self._clock = clock
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()  # least recently used first
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def nearest(self, scope: str, vector: bytes) -> tuple[str, float] | None:
        """The exact key of the scope's nearest live vector and its similarity; None if the scope is empty."""
        entries = self._scopes.get(scope)
        if entries is None:
            return None
        self._expire(scope, entries)
        if not entries.keys:
            return None
        self._scopes.move_to_end(scope)
        found = nearest_vector(vector, entries.rows)
        if found is None:
            return None
        index, similarity = found
        return entries.keys[index], similarity

    def add(self, scope: str, vector: bytes, key: str, ttl_s: float) -> None:
        """Indexes a kept answer's vector under its exact key (replacing the key's previous vector)."""
        entries = self._scopes.get(scope)
        if entries is None or (entries.keys and entries.width != len(vector)):
            self._drop_scope(scope)  # a vector of another width: the embedding model changed
            entries = self._scopes[scope] = _Scope(width=len(vector))
        self._scopes.move_to_end(scope)
        if key in entries.keys:
            self._remove(entries, entries.keys.index(key))
        entries.keys.append(key)
        entries.expires.append(self._clock() + ttl_s)
        entries.rows += vector
        entries.width = len(vector)
        self._count += 1
        if len(entries.keys) > self._max_per_scope:
            self._remove(entries, 0)
        while self._count > self._max:
            oldest_scope, oldest = next(iter(self._scopes.items()))
            self._remove(oldest, 0)
            if not oldest.keys:
                del self._scopes[oldest_scope]

    def forget(self, scope: str, key: str) -> None:
        """Drops a key whose answer the store no longer has."""
        entries = self._scopes.get(scope)
        if entries is not None and key in entries.keys:
            self._remove(entries, entries.keys.index(key))
            if not entries.keys:
                del self._scopes[scope]

    def clear(self) -> None:
        self._scopes.clear()
        self._count = 0

    def _expire(self, scope: str, entries: _Scope) -> None:
        gone = bisect.bisect_right(entries.expires, self._clock())
        if gone:
            del entries.keys[:gone], entries.expires[:gone]
            entries.rows = entries.rows[gone * entries.width :]
            self._count -= gone
        if not entries.keys:
            del self._scopes[scope]

    def _remove(self, entries: _Scope, index: int) -> None:
        del entries.keys[index], entries.expires[index]
        w = entries.width
        entries.rows = entries.rows[: index * w] + entries.rows[(index + 1) * w :]
        self._count -= 1

    def _drop_scope(self, scope: str) -> None:
        entries = self._scopes.pop(scope, None)
        if entries is not None:
            self._count -= len(entries.keys)
