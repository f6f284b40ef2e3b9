"""OpenAI Chat Completions, and any server that speaks it (vLLM, llama.cpp server, Ollama, gateways).

`POST {base_url}/chat/completions` with `Authorization: Bearer <key>`. Translation between tiergate's domain
types and the wire format is pure (`build_body`, `parse_completion`, `StreamParser`) and tested without a
network; `OpenAIProvider` only adds the HTTP exchange (`hosted_http`).

The output limit goes out as `max_completion_tokens` (`MAX_TOKENS_FIELD`), OpenAI's current name, which its
reasoning models require. Older OpenAI-compatible servers only know `max_tokens`: construct the provider with
`max_tokens_field=LEGACY_MAX_TOKENS_FIELD` for them.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import orjson

from tiergate.config import DEFAULT_BASE_URLS, ModelConfig
from tiergate.content import ImagePart, TextPart, ToolCall, ToolCallDelta, ToolMode
from tiergate.providers.base import BadRequest, ChunkStream
from tiergate.providers.hosted_http import HostedEndpoint
from tiergate.providers.http_errors import ErrorMapper
from tiergate.request import Chunk, Completion, Message, Request, Usage

MAX_TOKENS_FIELD = "max_completion_tokens"
LEGACY_MAX_TOKENS_FIELD = "max_tokens"
DONE_SENTINEL = "[DONE]"
# response_format.json_schema.name must match this; a schema's `title` is used when it does.
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_SCHEMA_NAME = "response"


def build_body(
    request: Request,
    *,
    model: str,
    default_max_tokens: int,
    stream: bool,
    max_tokens_field: str = MAX_TOKENS_FIELD,
) -> dict[str, Any]:
    """The JSON body of a chat completion request: every field of the request, passed through as OpenAI
    names it. Raises BadRequest if `json_schema` (or a tool's parameters) is not valid JSON."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [message_json(m) for m in request.messages],
        max_tokens_field: request.max_output_tokens or default_max_tokens,
    }
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if request.json_schema:
        body["response_format"] = response_format(request.json_schema, request.json_schema_strict)
    elif request.json_object:
        body["response_format"] = {"type": "json_object"}
    if request.tools:
        body["tools"] = [
            {"type": "function", "function": _function(t.name, t.description, t.parameters, t.strict)}
            for t in request.tools
        ]
        choice = request.tool_choice
        if choice.mode == ToolMode.TOOL:
            body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        elif choice.mode != ToolMode.AUTO:
            body["tool_choice"] = choice.mode.value
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def message_json(m: Message) -> dict[str, Any]:
    """One message in OpenAI's shape: text or parts (text, image_url), tool calls, tool results."""
    out: dict[str, Any] = {"role": m.role}
    if m.parts:
        out["content"] = [_part_json(p) for p in m.parts]
    elif m.tool_calls and not m.content:
        out["content"] = None
    else:
        out["content"] = m.content
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    if m.name:
        out["name"] = m.name
    return out


def _part_json(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: dict[str, Any] = {"url": part.url or data_url(part)}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def data_url(image: ImagePart) -> str:
    """An inline image as a `data:` URL, the way OpenAI takes inline images."""
    return f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode()}"


def _function(name: str, description: str, parameters: str, strict: bool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if description:
        function["description"] = description
    if parameters:
        schema = _schema(parameters, f"tool {name!r} parameters")
        function["parameters"] = schema
    if strict:
        function["strict"] = True
    return function


def _schema(text: str, what: str) -> dict[str, Any]:
    try:
        schema = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadRequest(f"{what} is not valid JSON") from None
    if not isinstance(schema, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return schema


def response_format(json_schema: str, strict: bool | None = None) -> dict[str, Any]:
    """`response_format` for a JSON schema given as a JSON string.

    With `strict` None, strict mode is used only when the schema already meets OpenAI's strict-mode rules
    (every object closed with `additionalProperties: false` and all its properties required): a strict
    request with any other schema is rejected with a 400, while a non-strict one is followed on a
    best-effort basis. The caller's explicit `strict` passes through as given.
    """
    schema = _schema(json_schema, "json_schema")
    title = schema.get("title")
    name = title if isinstance(title, str) and _SCHEMA_NAME.match(title) else DEFAULT_SCHEMA_NAME
    return {
        "type": "json_schema",
        "json_schema": {
            "name": name,
            "schema": schema,
            "strict": is_strict_compatible(schema) if strict is None else strict,
        },
    }


def is_strict_compatible(schema: Any) -> bool:
    """True when every object in the schema is closed and requires all of its properties."""
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return False
        required = schema.get("required", [])
        if not isinstance(properties, dict) or not isinstance(required, list):
            return False
        if set(required) != set(properties):
            return False
    return all(is_strict_compatible(sub) for sub in _subschemas(schema))


def _subschemas(schema: dict[str, Any]) -> list[Any]:
    subs: list[Any] = []
    for key in ("properties", "$defs", "definitions"):
        value = schema.get(key)
        if isinstance(value, dict):
            subs.extend(value.values())
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        value = schema.get(key)
        if isinstance(value, list):
            subs.extend(value)
    for key in ("items", "additionalProperties", "not"):
        value = schema.get(key)
        if isinstance(value, dict):
            subs.append(value)
    return subs


def parse_usage(data: Any) -> Usage:
    """Usage from an OpenAI `usage` object (absent or null: zeros)."""
    if not isinstance(data, dict):
        return Usage()
    details = data.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=_int(data.get("prompt_tokens")),
        output_tokens=_int(data.get("completion_tokens")),
        cached_input_tokens=_int(cached),
    )


def parse_completion(raw: bytes, errors: ErrorMapper) -> Completion:
    """A Completion from a non-streamed response body."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.malformed("body is not JSON") from None
    if not isinstance(data, dict):
        raise errors.malformed("body is not a JSON object")
    if data.get("error"):
        raise errors.from_error_object(data["error"])
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise errors.malformed("no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise errors.malformed("choice without a message")
    content = message.get("content") or ""
    refusal = message.get("refusal") or ""  # a refusal comes as `refusal` text with null content
    if not isinstance(content, str) or not isinstance(refusal, str):
        raise errors.malformed("message content or refusal is not a string")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise errors.malformed("tool_calls is not a list")
    finish = choices[0].get("finish_reason")
    return Completion(
        text=content,
        usage=parse_usage(data.get("usage")),
        finish_reason=finish if isinstance(finish, str) else "stop",
        tool_calls=[_tool_call(c, errors) for c in calls] if calls else [],
        refusal=refusal,
    )


def _tool_call(raw: Any, errors: ErrorMapper) -> ToolCall:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict):
        raise errors.malformed("tool call without a function")
    call_id, name, arguments = raw.get("id"), function.get("name"), function.get("arguments")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
        raise errors.malformed("tool call without id, name or arguments")
    return ToolCall(call_id, name, arguments)


def _tool_call_delta(raw: Any, errors: ErrorMapper) -> ToolCallDelta:
    if not isinstance(raw, dict) or not isinstance(raw.get("index"), int):
        raise errors.malformed("tool call delta without an index")
    function = raw.get("function")
    if not isinstance(function, dict):
        function = {}
    call_id, name, arguments = (
        raw.get("id") or "",
        function.get("name") or "",
        function.get("arguments") or "",
    )
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
        raise errors.malformed("tool call delta with a non-string id, name or arguments")
    return ToolCallDelta(raw["index"], call_id, name, arguments)


class StreamParser:
    """Turns the data of each SSE event of a streamed completion into Chunks.

    `feed` returns a Chunk (text, refusal, tool-call deltas with OpenAI's stable indices) or None (nothing to
    pass on: a role-only delta, the usage event, the `[DONE]` sentinel, after which `done` is True). `final`
    is the last Chunk, with usage and finish_reason: usage arrives in its own event after the one carrying
    finish_reason, so both are held until the end.
    """

    __slots__ = ("_errors", "_finish_reason", "_usage", "done")

    # Its plain text deltas may be relayed natively (`relay.py`, rust/core/src/relay/openai.rs).
    relays: str | None = "openai"

    def __init__(self, errors: ErrorMapper) -> None:
        self._errors = errors
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self.done = False

    def feed(self, data: str) -> Chunk | None:
        if data == DONE_SENTINEL:
            self.done = True
            return None
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self._errors.malformed("stream event is not JSON") from None
        if not isinstance(event, dict):
            raise self._errors.malformed("stream event is not a JSON object")
        if event.get("error"):
            raise self._errors.from_error_object(event["error"])
        usage = event.get("usage")
        if usage:
            self._usage = parse_usage(usage)
        choices = event.get("choices")
        if not choices:
            return None
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise self._errors.malformed("stream event choices are not a list of objects")
        choice = choices[0]
        finish = choice.get("finish_reason")
        if isinstance(finish, str):
            self._finish_reason = finish
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return None
        text, refusal, calls = delta.get("content") or "", delta.get("refusal") or "", delta.get("tool_calls")
        if not isinstance(text, str) or not isinstance(refusal, str):
            raise self._errors.malformed("delta content or refusal is not a string")
        deltas = [_tool_call_delta(c, self._errors) for c in calls] if isinstance(calls, list) else []
        if text or refusal or deltas:
            return Chunk(text=text, tool_calls=deltas, refusal=refusal)
        return None

    def final(self) -> Chunk:
        """The closing Chunk: usage (zeros if the server sent none) and finish_reason."""
        return Chunk(text="", usage=self._usage or Usage(), finish_reason=self._finish_reason or "stop")


class OpenAIProvider:
    """A model served over the OpenAI Chat Completions API.

    Args:
        name: the model's name in the config.
        config: its resolved config (model id, base_url, api_key, headers, timeouts, max_output_tokens).
        client: an httpx client to share; by default the provider owns a pooled HTTP/1.1 client.
        max_tokens_field: `MAX_TOKENS_FIELD` or, for older compatible servers, `LEGACY_MAX_TOKENS_FIELD`.
    """

    on_device = False

    def __init__(
        self,
        name: str,
        config: ModelConfig,
        client: httpx.AsyncClient | None = None,
        *,
        max_tokens_field: str = MAX_TOKENS_FIELD,
    ) -> None:
        if not config.model:
            raise ValueError(f"model {name!r}: an OpenAI model needs `model`")
        self.name = name
        self._model = config.model
        self._default_max_tokens = config.max_output_tokens
        self._max_tokens_field = max_tokens_field
        secret = config.api_key.get_secret_value() if config.api_key is not None else ""
        self._errors = ErrorMapper(name, secret)
        headers = {"content-type": "application/json", "accept": "application/json"}
        if secret:
            headers["authorization"] = f"Bearer {secret}"
        headers.update({k.lower(): v for k, v in config.headers.items()})
        base_url = (config.base_url or DEFAULT_BASE_URLS["openai"]).rstrip("/")
        self._endpoint = HostedEndpoint(f"{base_url}/chat/completions", headers, config, self._errors, client)

    def _body(self, request: Request, *, stream: bool) -> bytes:
        return orjson.dumps(
            build_body(
                request,
                model=self._model,
                default_max_tokens=self._default_max_tokens,
                stream=stream,
                max_tokens_field=self._max_tokens_field,
            )
        )

    async def complete(self, request: Request) -> Completion:
        raw = await self._endpoint.post_json(self._body(request, stream=False))
        return parse_completion(raw, self._errors)

    def stream(self, request: Request) -> ChunkStream:
        """Text chunks as they arrive; the last one carries usage and finish_reason (see `stream_chunks`)."""
        return self._endpoint.stream_chunks(self._body(request, stream=True), StreamParser(self._errors))

    async def aclose(self) -> None:
        await self._endpoint.aclose()


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
