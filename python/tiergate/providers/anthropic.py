"""Anthropic Messages API: `POST {base_url}/v1/messages` with `x-api-key` and `anthropic-version`.

Translation is pure (`build_body`, `parse_completion`, `StreamParser`) and tested without a network;
`AnthropicProvider` only adds the HTTP exchange (`hosted_http`).

Differences from OpenAI handled here: system (and `developer`) messages go to the top-level `system` field;
`max_tokens` is required; stop sequences are `stop_sequences`; stop reasons are normalised to OpenAI's
vocabulary (`end_turn` -> `stop`, `tool_use` -> `tool_calls`, ...); usage counts cache reads and cache writes
as input tokens, as OpenAI does. Tools become Anthropic tools (`input_schema`), tool choice `required` is
`any`, and `parallel_tool_calls: false` is `disable_parallel_tool_use`. An assistant's tool calls become
`tool_use` blocks and tool results `tool_result` blocks of the next user turn (consecutive messages of one
role are merged into one turn, as Anthropic needs all results of a turn together). Images become image blocks
(base64 or URL). Streamed `tool_use` blocks become OpenAI-style tool-call deltas: the block's start gives the
call's index (0, 1, ... in order of the calls, whatever text blocks come between), id and name, each
`input_json_delta` a piece of its arguments.

A JSON answer (`json_schema`, or `json_object`) is asked for through a forced tool, Anthropic's documented way
to get JSON of a given shape: a tool named `ANSWER_TOOL` whose input schema is the schema (wrapped in an
object when the schema is not one). Its input is the answer: returned as text, streamed as text, and
validated against the schema at the end (a failure is a MalformedResponse: another attempt may do better).
`seed` has no Anthropic counterpart and is not sent (it is best-effort on OpenAI too); presence and frequency
penalties do not exist either, so the planner does not send a request with them to an Anthropic model.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from tiergate.config import DEFAULT_BASE_URLS, ModelConfig
from tiergate.content import ImagePart, TextPart, ToolCall, ToolCallDelta, ToolMode
from tiergate.errors import InvalidRequest
from tiergate.providers.base import BadRequest, ChunkStream
from tiergate.providers.hosted_http import HostedEndpoint
from tiergate.providers.http_errors import ErrorMapper
from tiergate.request import Chunk, Completion, Message, Request, Usage
from tiergate.validation import AnswerValidator, answer_validator

API_VERSION = "2023-06-01"
SYSTEM_ROLES = frozenset({"system", "developer"})
CHAT_ROLES = frozenset({"user", "assistant", "tool"})
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "pause",
}
ANSWER_TOOL = "json_answer"
_ANSWER_DESCRIPTION = "Give your answer by calling this tool: its input is the answer."
_TOOL_CHOICES = {
    ToolMode.AUTO: "auto",
    ToolMode.NONE: "none",
    ToolMode.REQUIRED: "any",
    ToolMode.TOOL: "tool",
}


@dataclass(frozen=True, slots=True)
class AnswerTool:
    """The forced tool that carries a JSON answer. `wrapped`: the schema is not an object, so the tool's
    input is `{"value": <answer>}`."""

    wrapped: bool
    validator: AnswerValidator

    def unwrap(self, arguments: str) -> str:
        if not self.wrapped:
            return arguments
        try:
            value = orjson.loads(arguments or "{}")
        except orjson.JSONDecodeError:
            return arguments
        return orjson.dumps(value.get("value") if isinstance(value, dict) else value).decode()


def answer_tool(request: Request) -> tuple[AnswerTool | None, dict[str, Any] | None]:
    """The forced answer tool for a JSON request, and its definition; (None, None) for a text request."""
    if not request.json_schema and not request.json_object:
        return None, None
    try:
        schema: Any = orjson.loads(request.json_schema) if request.json_schema else {"type": "object"}
        validator = answer_validator(request.json_schema or '{"type": "object"}')
    except (orjson.JSONDecodeError, InvalidRequest):
        raise BadRequest("json_schema is not a valid JSON schema") from None
    wrapped = not (isinstance(schema, dict) and schema.get("type") == "object")
    if wrapped:
        schema = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
    definition = {"name": ANSWER_TOOL, "description": _ANSWER_DESCRIPTION, "input_schema": schema}
    return AnswerTool(wrapped, validator), definition


def build_body(request: Request, *, model: str, default_max_tokens: int, stream: bool) -> dict[str, Any]:
    """The JSON body of a Messages request. Raises BadRequest for what Anthropic has no place for."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role in SYSTEM_ROLES:
            system.append(m.content)
            continue
        if m.role not in CHAT_ROLES:
            raise BadRequest(f"message role {m.role!r} is not supported by the Anthropic Messages API")
        role = "user" if m.role == "tool" else m.role
        blocks = _blocks(m)
        if turns and turns[-1]["role"] == role:  # one turn per role: tool results and what follows merge
            turns[-1]["content"] = _as_blocks(turns[-1]["content"]) + _as_blocks(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_output_tokens or default_max_tokens,
        "messages": turns,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    tools = [
        {
            "name": t.name,
            "description": t.description,
            "input_schema": orjson.loads(t.parameters) if t.parameters else {"type": "object"},
        }
        for t in request.tools
    ]
    _, answer = answer_tool(request)
    choice: dict[str, Any] = {"type": _TOOL_CHOICES[request.tool_choice.mode]}
    if request.tool_choice.mode == ToolMode.TOOL:
        choice["name"] = request.tool_choice.name
    if answer is not None:
        if not tools or request.tool_choice.mode == ToolMode.NONE:
            tools, choice = [answer], {"type": "tool", "name": ANSWER_TOOL}
        elif request.tool_choice.mode != ToolMode.TOOL:
            tools, choice = [*tools, answer], {"type": "any"}  # a real tool, or the answer
    if tools:
        body["tools"] = tools
        if request.parallel_tool_calls is False and choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
        if choice != {"type": "auto"}:
            body["tool_choice"] = choice
    if stream:
        body["stream"] = True
    return body


def _blocks(m: Message) -> str | list[dict[str, Any]]:
    """A message's content: its text, or content blocks when it has images, tool calls or is a tool result."""
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}]
    if not m.parts and not m.tool_calls:
        return m.content
    blocks: list[dict[str, Any]] = []
    for part in m.parts or [TextPart(m.content)]:
        if isinstance(part, ImagePart):
            blocks.append({"type": "image", "source": _image_source(part)})
        elif part.text:
            blocks.append({"type": "text", "text": part.text})
    for call in m.tool_calls:
        try:
            arguments = orjson.loads(call.arguments)
        except orjson.JSONDecodeError:
            raise BadRequest(f"tool call {call.id!r}: arguments are not JSON") from None
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _image_source(image: ImagePart) -> dict[str, Any]:
    if image.url:
        return {"type": "url", "url": image.url}
    return {"type": "base64", "media_type": image.mime_type, "data": base64.b64encode(image.data).decode()}


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


def parse_completion(raw: bytes, errors: ErrorMapper, answer: AnswerTool | None = None) -> Completion:
    """A Completion from a non-streamed Messages response body; with `answer`, the forced answer tool's
    input is the (validated) text."""
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
    calls: list[ToolCall] = []
    answered = False
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise errors.malformed("text block without text")
            parts.append(text)
        elif kind == "tool_use":
            call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise errors.malformed("tool_use block without id or name")
            if answer is not None and name == ANSWER_TOOL:
                parts, answered = [answer.unwrap(orjson.dumps(arguments).decode())], True
                break
            calls.append(ToolCall(call_id, name, orjson.dumps(arguments).decode()))
    finish = finish_reason(data.get("stop_reason"))
    if answered:
        _check_answer(answer, parts[0], errors)
        finish = "stop"
    return Completion(
        text="".join(parts),
        usage=parse_usage(data.get("usage")),
        finish_reason=finish,
        tool_calls=calls,
    )


def _check_answer(answer: AnswerTool | None, text: str, errors: ErrorMapper) -> None:
    if answer is not None:
        reason = answer.validator.check(text)
        if reason is not None:
            raise errors.malformed(f"the JSON answer does not validate: {reason}")


class StreamParser:
    """Turns each event of a streamed Messages response into Chunks.

    `feed` returns a Chunk for a `text_delta` (text), a `tool_use` block's start (a tool-call delta with its
    index, id and name) or an `input_json_delta` (a piece of its arguments), else None; with `answer`, the
    forced answer tool's input streams as text instead. `message_stop` sets `done`, after which `final` is the
    last Chunk with usage (input from `message_start`, output from `message_delta`) and finish_reason. An
    `error` event raises the mapped error (e.g. `overloaded_error` -> Overloaded). Event types this parser
    does not know are ignored, as Anthropic's versioning policy asks.
    """

    __slots__ = ("_answer", "_answer_text", "_blocks", "_errors", "_stop_reason", "_usage", "done", "relays")

    def __init__(self, errors: ErrorMapper, answer: AnswerTool | None = None) -> None:
        self._errors = errors
        self._answer = answer
        # Text deltas may be relayed natively (`relay.py`, rust/core/src/relay/anthropic.rs) unless a forced
        # answer tool makes text around it not the answer.
        self.relays = "anthropic" if answer is None else None
        self._answer_text: list[str] | None = None  # the answer tool's input so far, once it started
        self._blocks: dict[int, list[Any]] = {}  # tool_use block index -> [call index, arguments sent?]
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
            return self._delta(event.get("index"), event.get("delta"))
        if kind == "content_block_start":
            return self._block_start(event.get("index"), event.get("content_block"))
        if kind == "content_block_stop":
            block = self._blocks.get(event.get("index"))  # type: ignore[arg-type]
            if block is not None and block[0] >= 0 and not block[1]:
                return Chunk(tool_calls=[ToolCallDelta(block[0], arguments="{}")])  # a call with no input
        elif kind == "message_start":
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

    def _block_start(self, index: Any, block: Any) -> Chunk | None:
        if not isinstance(block, dict) or block.get("type") != "tool_use":
            return None
        call_id, name = block.get("id"), block.get("name")
        if not isinstance(index, int) or not isinstance(call_id, str) or not isinstance(name, str):
            raise self._errors.malformed("tool_use block without index, id or name")
        if self._answer is not None and name == ANSWER_TOOL:
            self._blocks[index] = [-1, True]
            self._answer_text = []
            return None
        call_index = sum(1 for b in self._blocks.values() if b[0] >= 0)
        self._blocks[index] = [call_index, False]
        return Chunk(tool_calls=[ToolCallDelta(call_index, call_id, name, "")])

    def _delta(self, index: Any, delta: Any) -> Chunk | None:
        if not isinstance(delta, dict):
            return None
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if not isinstance(text, str):
                raise self._errors.malformed("text_delta without text")
            # Text around a forced JSON answer is not the answer.
            return Chunk(text=text) if text and self._answer is None else None
        if kind != "input_json_delta":
            return None  # thinking and signature deltas are not answer text
        piece = delta.get("partial_json")
        block = self._blocks.get(index)
        if not isinstance(piece, str) or not piece or block is None:
            return None  # input of a block this parser was not told about: nothing to attach it to
        if block[0] < 0:
            assert self._answer_text is not None and self._answer is not None
            self._answer_text.append(piece)
            # A wrapped answer ({"value": ...}) can only be unwrapped whole: it comes at the end.
            return None if self._answer.wrapped else Chunk(text=piece)
        block[1] = True
        return Chunk(tool_calls=[ToolCallDelta(block[0], arguments=piece)])

    def final(self) -> Chunk:
        """The closing Chunk: usage and finish_reason (and a wrapped JSON answer, validated)."""
        finish = finish_reason(self._stop_reason)
        text = ""
        if self._answer is not None and self._answer_text is not None:
            whole = self._answer.unwrap("".join(self._answer_text))
            _check_answer(self._answer, whole, self._errors)
            text = whole if self._answer.wrapped else ""
            finish = "stop"
        return Chunk(text=text, usage=self._usage, finish_reason=finish)


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
        return parse_completion(raw, self._errors, answer_tool(request)[0])

    def stream(self, request: Request) -> ChunkStream:
        """Chunks as they arrive; the last one carries usage and finish_reason (see `stream_chunks`)."""
        parser = StreamParser(self._errors, answer_tool(request)[0])
        return self._endpoint.stream_chunks(self._body(request, stream=True), parser)

    async def aclose(self) -> None:
        await self._endpoint.aclose()


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
