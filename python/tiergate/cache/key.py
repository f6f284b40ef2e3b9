"""The cache key of a chat request: a canonical hash of its route and of every request field that shapes the
answer (messages, sampling parameters, output limit, response format, and any field added later, such as
tools or content parts), scoped by tenant; and, for semantic matching, the same hash without the last user
message's text (the scope within which that text's embedding is compared).

Fields that do not change the answer are left out: the task (the route stands for it), metadata, the cost
limit, streaming (a stream is replayed from a whole answer) and the sensitivity (it decides where a request
may go, and a restricted answer never leaves this process's cache).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from tiergate.request import Request

_NOT_IN_KEY = frozenset({"task", "tenant", "metadata", "max_cost_usd", "stream", "sensitivity"})


def answer_fields(request: Request) -> dict[str, Any]:
    """The request's answer-shaping fields in canonical form, which both keys hash (once per lookup)."""
    return {
        f.name: _canonical(getattr(request, f.name))
        for f in dataclasses.fields(request)
        if f.name not in _NOT_IN_KEY
    }


def cache_key(route: str, request: Request, fields: dict[str, Any] | None = None) -> str:
    """A hex sha256 over the canonical JSON of the route and the request's answer-shaping fields (`fields`,
    when `answer_fields` already made them)."""
    return _digest(route, answer_fields(request) if fields is None else fields)


@dataclass(frozen=True, slots=True)
class SemanticParts:
    scope: str  # a hex sha256 of everything but the text, as `cache_key` hashes it
    text: str  # the last message's text, which a semantic lookup embeds


def semantic_parts(
    route: str, request: Request, fields: dict[str, Any] | None = None
) -> SemanticParts | None:
    """What a semantic lookup compares, or None when the request cannot match semantically.

    The text is the last message, if it is a user's in plain text; everything else (the route, the earlier
    messages, the sampling parameters, tools, response format...) makes the scope, which must be equal. The
    earlier messages stay exact because a short embedding window would not see them all: two conversations
    ending alike would embed alike whatever their history said.
    """
    if not request.messages:
        return None
    last = request.messages[-1]
    if last.role != "user" or last.images or not last.content.strip():
        return None
    shaping = answer_fields(request) if fields is None else fields
    scope = {**shaping, "messages": [*shaping["messages"][:-1], {"role": last.role, "name": last.name}]}
    return SemanticParts(_digest(route, scope), last.content)


def _digest(route: str, fields: dict[str, Any]) -> str:
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
