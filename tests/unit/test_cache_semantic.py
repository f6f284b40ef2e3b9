"""Semantic matching's parts without a model: what the scope hashes (`key.semantic_parts`), the index's
nearest match within a scope, its bounds and TTL (`cache/semantic.py`), and the `cache.semantic` config.
Matching real paraphrases with the on-device model: tests/integration/test_semantic_cache.py."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest

from tiergate.cache.key import semantic_parts
from tiergate.cache.semantic import SemanticIndex
from tiergate.config import ConfigError, parse, resolve
from tiergate.content import ImagePart, Tool
from tiergate.request import Message, Request

BASE = Request(
    task="t",
    messages=[Message("system", "Be brief."), Message("user", "How do I reset my password?")],
    temperature=0.0,
)


def scope(request: Request, route: str = "r") -> str:
    parts = semantic_parts(route, request)
    assert parts is not None
    return parts.scope


@pytest.mark.parametrize(
    ("change", "same_scope"),
    [
        ({"messages": [Message("system", "Be brief."), Message("user", "Password reset?")]}, True),
        ({"metadata": {"x": "y"}}, True),
        ({"stream": True}, True),
        ({"temperature": 0.7}, False),
        ({"top_p": 0.5}, False),
        ({"seed": 7}, False),
        ({"max_output_tokens": 9}, False),
        ({"json_object": True}, False),
        ({"stop": ["\n"]}, False),
        ({"tools": [Tool("lookup", "finds a user", "{}")]}, False),
        (
            {"messages": [Message("system", "Be verbose."), Message("user", "How do I reset my password?")]},
            False,
        ),
        ({"messages": [Message("user", "How do I reset my password?")]}, False),
    ],
)
def test_the_scope_is_everything_but_the_last_user_message(change: dict[str, Any], same_scope: bool) -> None:
    other = dataclasses.replace(BASE, **change)
    assert (scope(other) == scope(BASE)) is same_scope


def test_the_route_is_in_the_scope_and_the_text_is_the_last_user_message() -> None:
    assert scope(BASE, "a") != scope(BASE, "b")
    parts = semantic_parts("r", BASE)
    assert parts is not None and parts.text == "How do I reset my password?"


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [Message("user", "hi"), Message("assistant", "Hello!")],  # the last message is not a user's
        [Message("user", "   ")],
        [Message("user", "what is this?", parts=[ImagePart(url="https://example.com/a.png")])],
        [Message("tool", "42", tool_call_id="c1")],
    ],
)
def test_requests_that_cannot_match_semantically(messages: list[Message]) -> None:
    assert semantic_parts("r", dataclasses.replace(BASE, messages=messages)) is None


def unit(*values: float) -> bytes:
    norm = sum(v * v for v in values) ** 0.5
    return struct.pack(f"<{len(values)}f", *(v / norm for v in values))


def test_the_nearest_key_in_the_scope_only() -> None:
    index = SemanticIndex(max_entries=10, max_per_scope=10)
    index.add("s", unit(1, 0, 0), "k1", ttl_s=60)
    index.add("s", unit(0, 1, 0), "k2", ttl_s=60)
    index.add("other", unit(1, 0.01, 0), "k3", ttl_s=60)
    key, similarity = index.nearest("s", unit(0.9, 0.1, 0)) or ("", 0.0)
    assert key == "k1" and similarity == pytest.approx(0.9939, abs=1e-4)
    assert index.nearest("nowhere", unit(1, 0, 0)) is None


def test_re_adding_a_key_replaces_its_vector() -> None:
    index = SemanticIndex(max_entries=10, max_per_scope=10)
    index.add("s", unit(1, 0), "k", ttl_s=60)
    index.add("s", unit(0, 1), "k", ttl_s=60)
    assert len(index) == 1
    assert index.nearest("s", unit(0, 1)) == ("k", pytest.approx(1.0))  # type: ignore[comparison-overlap]


def test_bounds_per_scope_and_in_all() -> None:
    index = SemanticIndex(max_entries=3, max_per_scope=2)
    index.add("a", unit(1, 0), "a1", ttl_s=60)
    index.add("a", unit(0, 1), "a2", ttl_s=60)
    index.add("a", unit(1, 1), "a3", ttl_s=60)  # a1 leaves: two per scope
    assert len(index) == 2
    assert index.nearest("a", unit(1, 0))[0] == "a3"  # type: ignore[index]
    index.add("b", unit(1, 0), "b1", ttl_s=60)
    index.add("c", unit(1, 0), "c1", ttl_s=60)  # over 3 in all: the least recently used scope's oldest
    assert len(index) == 3
    assert index.nearest("a", unit(0, 1))[0] == "a3"  # type: ignore[index]
    index.add("d", unit(1, 0), "d1", ttl_s=60)  # "b" is now the least recently used scope
    assert index.nearest("b", unit(1, 0)) is None and len(index) == 3


def test_entries_expire_and_forgotten_keys_leave() -> None:
    now = [0.0]
    index = SemanticIndex(max_entries=10, max_per_scope=10, clock=lambda: now[0])
    index.add("s", unit(1, 0), "old", ttl_s=10)
    now[0] = 5.0
    index.add("s", unit(0, 1), "new", ttl_s=10)
    now[0] = 10.0
    assert index.nearest("s", unit(1, 0))[0] == "new"  # type: ignore[index]
    assert len(index) == 1
    index.forget("s", "new")
    assert index.nearest("s", unit(0, 1)) is None and len(index) == 0


def test_a_vector_of_another_width_starts_the_scope_again() -> None:
    index = SemanticIndex(max_entries=10, max_per_scope=10)
    index.add("s", unit(1, 0), "two", ttl_s=60)
    index.add("s", unit(1, 0, 0), "three", ttl_s=60)
    assert len(index) == 1 and index.nearest("s", unit(1, 0, 0)) == ("three", pytest.approx(1.0))  # type: ignore[comparison-overlap]


HOSTED = {"provider": "openai", "model": "m", "api_key": "k"}
ONNX = {"provider": "onnx", "path": "embedded"}


def config_with(semantic: dict[str, Any], **models: dict[str, Any]) -> dict[str, Any]:
    return {
        "models": {"hosted": HOSTED, **models},
        "routes": {"default": {"chain": ["hosted"]}},
        "cache": {"semantic": semantic},
    }


@pytest.mark.parametrize(
    ("semantic", "models", "error"),
    [
        ({"model": "embed", "threshold": 0}, {"embed": ONNX}, r"cache\.semantic\.threshold"),
        ({"model": "embed", "threshold": 1.5}, {"embed": ONNX}, r"cache\.semantic\.threshold"),
        ({"model": "embed", "max_entries": 0}, {"embed": ONNX}, r"cache\.semantic\.max_entries"),
        ({"model": "embed", "timeout_ms": 0}, {"embed": ONNX}, r"cache\.semantic\.timeout_ms"),
        ({"model": "embed", "max_entries": 5, "max_per_scope": 6}, {"embed": ONNX}, "cannot exceed"),
        ({"threshold": 0.9}, {"embed": ONNX}, r"cache\.semantic\.model"),
        ({"model": "embed", "limit": 3}, {"embed": ONNX}, r"cache\.semantic\.limit"),
    ],
)
def test_bad_semantic_settings_are_config_errors(
    semantic: dict[str, Any], models: dict[str, Any], error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        parse(config_with(semantic, **models))


@pytest.mark.parametrize(
    ("model", "models"),
    [
        ("nowhere", {}),
        ("hosted", {}),  # a chat model
        ("hosted-embed", {"hosted-embed": {**HOSTED, "kind": "embedding"}}),  # would send prompts out
        ("marked-hosted", {"marked-hosted": {**ONNX, "on_device": False}}),
    ],
)
def test_only_an_on_device_embedding_model_may_embed_lookups(model: str, models: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"cache\.semantic\.model: .* is not an on-device embedding model"):
        resolve(parse(config_with({"model": model}, **models)), {})


def test_semantic_matching_is_off_unless_configured_and_then_defaults_to_0_95() -> None:
    assert resolve(parse({**config_with({"model": "e"}, e=ONNX), "cache": {}}), {}).cache.semantic is None  # type: ignore[union-attr]
    loaded = resolve(parse(config_with({"model": "e"}, e=ONNX)), {})
    assert loaded.cache is not None and loaded.cache.semantic is not None
    assert loaded.cache.semantic.threshold == 0.95
