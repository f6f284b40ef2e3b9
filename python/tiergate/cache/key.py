"""The cache key of a chat request: a canonical hash of its route and of every request field that shapes the
answer (messages, sampling parameters, output limit, response format, and any field added later, such as
tools or content parts), scoped by tenant.

Fields that do not change the answer are left out: the task (the route stands for it), metadata, the cost
limit, streaming (a stream is replayed from a whole answer) and the sensitivity (it decides where a request
may go, and a restricted answer never leaves this process's cache).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from typing import Any

import orjson

from tiergate.request import Request

_NOT_IN_KEY = frozenset({"task", "tenant", "metadata", "max_cost_usd", "stream", "sensitivity"})


def cache_key(route: str, request: Request) -> str:
    """A hex sha256 over the canonical JSON of the route and the request's answer-shaping fields."""
    fields = {
        f.name: _canonical(getattr(request, f.name))
        for f in dataclasses.fields(request)
        if f.name not in _NOT_IN_KEY
    }
    body = orjson.dumps({"route": route, "request": fields}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def tenant_scope(tenant: str) -> str:
    """The tenant's part of a stored key: a hash, so any tenant string makes a short, safe key."""
    return hashlib.sha256(tenant.encode("utf-8", errors="surrogatepass")).hexdigest()[:32]
