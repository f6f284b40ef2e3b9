"""OpenAI Embeddings (`POST {base_url}/embeddings`), and any server that speaks it.

Translation is pure (`build_body`, `parse_embeddings`), tested without a network; `OpenAIEmbeddingProvider`
adds the HTTP exchange (`hosted_http`). Vectors are asked for as base64 (float32 little-endian), the compact
form, and kept as bytes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import httpx
import orjson

from tiergate.config import DEFAULT_BASE_URLS, ModelConfig
from tiergate.embeddings.types import Embeddings, NotAChatModel
from tiergate.providers.hosted_http import HostedEndpoint
from tiergate.providers.http_errors import ErrorMapper
from tiergate.request import Usage


def build_body(inputs: list[str], *, model: str, dimensions: int) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "base64"}
    if dimensions:
        body["dimensions"] = dimensions
    return body


def parse_embeddings(raw: bytes, count: int, errors: ErrorMapper) -> Embeddings:
    """Embeddings from a response body; `count` vectors of one size, ordered by their `index`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.malformed("body is not JSON") from None
    if not isinstance(data, dict):
        raise errors.malformed("body is not a JSON object")
    if data.get("error"):
        raise errors.from_error_object(data["error"])
    items = data.get("data")
    if not isinstance(items, list) or len(items) != count:
        raise errors.malformed(f"expected {count} embeddings")
    vectors: list[bytes | None] = [None] * count
    for item in items:
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or vectors[index] is not None:
            raise errors.malformed("an embedding without a valid, unique index")
        vectors[index] = _vector(item.get("embedding"), errors)
    sizes = {len(v) for v in vectors if v is not None}
    if len(sizes) != 1 or 0 in sizes:
        raise errors.malformed("embeddings of different or zero sizes")
    usage = data.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    model = data.get("model")
    return Embeddings(
        [v for v in vectors if v is not None],
        sizes.pop() // 4,
        Usage(input_tokens=tokens if isinstance(tokens, int) and tokens >= 0 else 0),
        model if isinstance(model, str) else "",
    )


def _vector(value: Any, errors: ErrorMapper) -> bytes:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise errors.malformed("an embedding is not base64") from None
        if len(raw) % 4:
            raise errors.malformed("an embedding is not float32 values")
        return raw
    if isinstance(value, list) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
        return Embeddings.pack([float(x) for x in value])
    raise errors.malformed("an embedding is neither base64 nor a list of numbers")


class OpenAIEmbeddingProvider(NotAChatModel):
    """A hosted embedding model over the OpenAI Embeddings API (`provider: openai`, `kind: embedding`)."""

    on_device = False

    def __init__(self, name: str, config: ModelConfig, client: httpx.AsyncClient | None = None) -> None:
        if not config.model:
            raise ValueError(f"model {name!r}: an OpenAI model needs `model`")
        self.name = name
        self.on_device = config.is_on_device
        self._model = config.model
        self._price_in = config.price.input_per_mtok / 1e6
        secret = config.api_key.get_secret_value() if config.api_key is not None else ""
        self._errors = ErrorMapper(name, secret)
        headers = {"content-type": "application/json", "accept": "application/json"}
        if secret:
            headers["authorization"] = f"Bearer {secret}"
        headers.update({k.lower(): v for k, v in config.headers.items()})
        base_url = (config.base_url or DEFAULT_BASE_URLS["openai"]).rstrip("/")
        self._endpoint = HostedEndpoint(f"{base_url}/embeddings", headers, config, self._errors, client)

    async def embed(self, inputs: list[str], dimensions: int) -> Embeddings:
        body = orjson.dumps(build_body(inputs, model=self._model, dimensions=dimensions))
        result = parse_embeddings(await self._endpoint.post_json(body), len(inputs), self._errors)
        result.usage.cost_usd = result.usage.input_tokens * self._price_in
        return result

    async def aclose(self) -> None:
        await self._endpoint.aclose()
