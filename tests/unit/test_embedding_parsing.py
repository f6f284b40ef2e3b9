"""Embedding config, the OpenAI embeddings translation, the door's parsing: pure functions, table-driven."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from tiergate import errors
from tiergate.config import ConfigError, parse, resolve
from tiergate.embeddings.types import Embeddings
from tiergate.providers.base import MalformedResponse
from tiergate.providers.http_errors import ErrorMapper
from tiergate.providers.openai_embeddings import build_body, parse_embeddings
from tiergate.request import Usage
from tiergate.server.openai_embeddings import parse_embeddings as parse_door

LOCAL = {"provider": "onnx", "path": "embedded"}
HOSTED = {"provider": "openai", "kind": "embedding", "model": "text-embedding-3-small", "api_key": "k"}
CHAT = {"provider": "openai", "model": "m", "api_key": "k"}


def config(models: dict[str, Any], routes: dict[str, Any], embedding_routes: dict[str, Any]) -> Any:
    data = {"models": models, "routes": routes, "embedding_routes": embedding_routes}
    return resolve(parse(data), {})


def test_an_embedding_route_of_embedding_models_loads() -> None:
    loaded = config(
        {"chat": CHAT, "local": LOCAL, "hosted": HOSTED},
        {"default": {"chain": ["chat"]}},
        {"default": {"chain": ["hosted", "local"]}},
    )
    assert loaded.models["local"].is_embedding and loaded.models["local"].is_on_device
    assert loaded.models["local"].window == 256
    assert loaded.models["hosted"].is_embedding and not loaded.models["hosted"].is_on_device
    assert not loaded.models["chat"].is_embedding


@pytest.mark.parametrize(
    ("models", "routes", "embedding_routes", "message"),
    [
        ({"c": CHAT, "e": LOCAL}, {"default": {"chain": ["e"]}}, {}, "is an embedding model"),
        ({"c": CHAT}, {"default": {"chain": ["c"]}}, {"default": {"chain": ["c"]}}, "is a chat model"),
        (
            {"c": CHAT, "e": LOCAL},
            {"default": {"chain": ["c"]}},
            {"default": {"chain": ["e"], "ttft_ms": 100}},
            "ttft_ms: does not apply to an embedding route",
        ),
        (
            {"c": CHAT, "e": LOCAL},
            {"default": {"chain": ["c"], "classify_with": "e"}},
            {},
            "is an embedding model",
        ),
        (
            {"c": CHAT, "e": {**HOSTED, "provider": "anthropic"}},
            {"default": {"chain": ["c"]}},
            {},
            "anthropic models do not embed",
        ),
        ({"c": {**CHAT, "dimensions": 8}}, {"default": {"chain": ["c"]}}, {}, "apply only to embedding"),
        ({"c": CHAT, "e": {"provider": "onnx"}}, {"default": {"chain": ["c"]}}, {}, "needs `path`"),
    ],
)
def test_bad_embedding_configs_are_named(
    models: dict[str, Any], routes: dict[str, Any], embedding_routes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config(models, routes, embedding_routes)


def test_the_body_asks_for_base64_and_passes_dimensions() -> None:
    assert build_body(["a"], model="m", dimensions=0) == {
        "model": "m",
        "input": ["a"],
        "encoding_format": "base64",
    }
    assert build_body(["a"], model="m", dimensions=4)["dimensions"] == 4


def packed(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def test_parse_orders_by_index_and_reads_both_encodings() -> None:
    body = {
        "data": [
            {"index": 1, "embedding": [0.5, 0.25]},
            {"index": 0, "embedding": packed([1.0, -1.0])},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    result = parse_embeddings(orjson.dumps(body), 2, ErrorMapper("m", ""))
    assert result.floats(0) == [1.0, -1.0] and result.floats(1) == [0.5, 0.25]
    assert (result.dimensions, result.usage.input_tokens, result.model) == (2, 7, "text-embedding-3-small")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        orjson.dumps({"data": []}),
        orjson.dumps({"data": [{"index": 0, "embedding": "!!"}]}),
        orjson.dumps({"data": [{"index": 3, "embedding": [1.0]}]}),
        orjson.dumps({"data": [{"index": 0, "embedding": ["x"]}]}),
    ],
)
def test_malformed_answers_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponse):
        parse_embeddings(body, 1, ErrorMapper("m", ""))


def test_vectors_round_trip_as_float32_bytes() -> None:
    assert Embeddings([Embeddings.pack([0.5, 2.0])], 2, Usage()).floats(0) == [0.5, 2.0]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"model": "default", "input": "a"}, (["a"], "float", 0)),
        ({"model": "default", "input": ["a", "b"], "encoding_format": "base64"}, (["a", "b"], "base64", 0)),
        ({"model": "r", "input": "a", "dimensions": 4, "encoding_format": None}, (["a"], "float", 4)),
    ],
)
def test_the_door_parses(body: dict[str, Any], expected: tuple[list[str], str, int]) -> None:
    request, encoding = parse_door(orjson.dumps(body), {"r": object()})
    assert (request.inputs, encoding, request.dimensions) == expected


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"model": "x", "input": "a"}, errors.UnknownTask),
        ({"input": "a"}, errors.InvalidRequest),
        ({"model": "default", "input": {"a": 1}}, errors.InvalidRequest),
        ({"model": "default", "input": "a", "dimensions": 0}, errors.InvalidRequest),
        ({"model": "default", "input": "a", "sensitivity": "secret"}, errors.InvalidRequest),
        ({"model": "default", "input": "a", "user": 3}, errors.InvalidRequest),
    ],
)
def test_the_door_refuses(body: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_door(orjson.dumps(body), {})
