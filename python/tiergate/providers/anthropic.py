"""Anthropic Messages API: `POST {base_url}/v1/messages` with `x-api-key` and `anthropic-version`.

Translation is pure (`build_body`, `parse_completion`, `StreamParser`) and tested without a network;
`AnthropicProvider` only adds the HTTP exchange (`hosted_http`).

Differences from OpenAI handled here: system (and `developer`) messages go to the top-level `system` field;
`max_tokens` is required; a JSON schema becomes an instruction appended to the system prompt (the cascade
validates the answer); stop reasons are normalised to OpenAI's vocabulary (`end_turn` -> `stop`,
`max_tokens` -> `length`, ...); usage counts cache reads and cache writes as input tokens, as OpenAI does.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx
import orjson

from tiergate.config import DEFAULT_BASE_URLS, ModelConfig
from tiergate.providers.base import BadRequest
from tiergate.providers.hosted_http import HostedEndpoint
from tiergate.providers.http_errors import ErrorMapper
from tiergate.request import Chunk, Completion, Request, Usage

API_VERSION = "2023-06-01"
SYSTEM_ROLES = frozenset({"system", "developer"})
CHAT_ROLES = frozenset({"user", "assistant"})
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "pause",
}
SCHEMA_INSTRUCTION = "Reply with one JSON value, and nothing else, that validates against this JSON schema:"


def build_body(request: Request, *, model: str, default_max_tokens: int, stream: bool) -> dict[str, Any]:
    """The JSON body of a Messages request. Raises BadRequest for a role Anthropic has no place for."""
    system: list[str] = []
    messages: list[dict[str, str]] = []
    for m in request.messages:
        if m.role in SYSTEM_ROLES:
            system.append(m.content)
        elif m.role in CHAT_ROLES:
            messages.append({"role": m.role, "content": m.content})
        else:
            raise BadRequest(f"message role {m.role!r} is not supported by the Anthropic Messages API")
    if request.json_schema:
        system.append(f"{SCHEMA_INSTRUCTION}\n{request.json_schema}")
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_output_tokens or default_max_tokens,
        "messages": messages,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if stream:
        body["stream"] = True
    return body


def parse_usage(data: Any, into: Usage | None = None) -> Usage:
    """Usage from an Anthropic `usage` object. Fields present in `data` overwrite those of `into`.

    Anthropic's `input_tokens` excludes cache reads and writes; tiergate's counts every prompt token.
    """
    usage = into if into is not None else Usage()
    if not isinstance(data, dict):
        return usage
    # message_delta may repeat the counts, or leave them out (older API versions): only numbers overwrite.
    if isinstance(data.get("input_tokens"), int):
        cached = _int(data.get("cache_read_input_tokens"))
        usage.input_tokens = (
            _int(data.get("input_tokens")) + cached + _int(data.get("cache_creation_input_tokens"))
        )
        usage.cached_input_tokens = cached
    if "output_tokens" in data:
        usage.output_tokens = _int(data.get("output_tokens"))
    return usage


def finish_reason(stop_reason: Any) -> str:
    """OpenAI's name for an Anthropic stop reason; unknown reasons pass through unchanged."""
    if not isinstance(stop_reason, str):
        return "stop"
    return STOP_REASONS.get(stop_reason, stop_reason)


def parse_completion(raw: bytes, errors: ErrorMapper) -> Completion:
    """A Completion from a non-streamed Messages response body."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.malformed("body is not JSON") from None
    if not isinstance(data, dict):
        raise errors.malformed("body is not a JSON object")
    if data.get("type") == "error":
        raise errors.from_error_object(data.get("error"))
    content = data.get("content")
    if not isinstance(content, list):
        raise errors.malformed("no content list")
    parts: list[str] = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise errors.malformed("text block without text")
            parts.append(text)
    return Completion(
        text="".join(parts),
        usage=parse_usage(data.get("usage")),
        finish_reason=finish_reason(data.get("stop_reason")),
    )


class StreamParser:
    """Turns each event of a streamed Messages response into Chunks.

    `feed` returns a text Chunk for a `text_delta`, else None; `message_stop` sets `done`, after which
    `final` is the last Chunk with usage (input from `message_start`, output from `message_delta`) and
    finish_reason. An `error` event raises the mapped error (e.g. `overloaded_error` -> Overloaded).
    Event types this parser does not know are ignored, as Anthropic's versioning policy asks.
    """

    __slots__ = ("_errors", "_stop_reason", "_usage", "done")

    def __init__(self, errors: ErrorMapper) -> None:
        self._errors = errors
        self._usage = Usage()
        self._stop_reason: Any = None
        self.done = False

    def feed(self, data: str) -> Chunk | None:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self._errors.malformed("stream event is not JSON") from None
        if not isinstance(event, dict):
            raise self._errors.malformed("stream event is not a JSON object")
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if not isinstance(text, str):
                    raise self._errors.malformed("text_delta without text")
                return Chunk(text=text) if text else None
            return None  # thinking, tool input and signature deltas are not answer text
        if kind == "message_start":
            message = event.get("message")
            if not isinstance(message, dict):
                raise self._errors.malformed("message_start without a message")
            parse_usage(message.get("usage"), into=self._usage)
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and "stop_reason" in delta:
                self._stop_reason = delta["stop_reason"]
            parse_usage(event.get("usage"), into=self._usage)
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise self._errors.from_error_object(event.get("error"))
        return None

    def final(self) -> Chunk:
        """The closing Chunk: usage and finish_reason."""
        return Chunk(text="", usage=self._usage, finish_reason=finish_reason(self._stop_reason))


class AnthropicProvider:
    """A model served over the Anthropic Messages API.

    Args:
        name: the model's name in the config.
        config: its resolved config (model id, base_url, api_key, headers, timeouts, max_output_tokens).
        client: an httpx client to share; by default the provider owns a pooled HTTP/1.1 client.
    """

    on_device = False

    def __init__(self, name: str, config: ModelConfig, client: httpx.AsyncClient | None = None) -> None:
        if not config.model:
            raise ValueError(f"model {name!r}: an Anthropic model needs `model`")
        self.name = name
        self._model = config.model
        self._default_max_tokens = config.max_output_tokens
        secret = config.api_key.get_secret_value() if config.api_key is not None else ""
        self._errors = ErrorMapper(name, secret)
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": API_VERSION,
        }
        if secret:
            headers["x-api-key"] = secret
        headers.update({k.lower(): v for k, v in config.headers.items()})
        base_url = (config.base_url or DEFAULT_BASE_URLS["anthropic"]).rstrip("/")
        self._endpoint = HostedEndpoint(f"{base_url}/v1/messages", headers, config, self._errors, client)

    def _body(self, request: Request, *, stream: bool) -> bytes:
        return orjson.dumps(
            build_body(request, model=self._model, default_max_tokens=self._default_max_tokens, stream=stream)
        )

    async def complete(self, request: Request) -> Completion:
        raw = await self._endpoint.post_json(self._body(request, stream=False))
        return parse_completion(raw, self._errors)

    def stream(self, request: Request) -> AsyncGenerator[Chunk, None]:
        """Text chunks as they arrive; the last one carries usage and finish_reason (see `stream_chunks`)."""
        return self._endpoint.stream_chunks(self._body(request, stream=True), StreamParser(self._errors))

    async def aclose(self) -> None:
        await self._endpoint.aclose()


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
