"""The OpenAI-compatible HTTP facade: `POST /v1/chat/completions` (JSON or SSE) and `GET /v1/models`.

Converts OpenAI's wire format <-> domain types and calls the Sidecar, like `server/grpc.py` does for gRPC; no
routing logic lives here. The request's `model` names a task: `"default"` or any configured route name (as
listed by `/v1/models`); any other name is a 404, never a silent fallback to the default route.

The Decision travels in the `x-tiergate-decision` response header (compact JSON) and, for streams, whose
headers leave before it exists, in an extra `tiergate_decision` field of the last chunk before `[DONE]`.

A request deadline, the counterpart of a gRPC deadline, comes in the `x-tiergate-timeout-ms` header (the
SDKs' own `timeout` only bounds how long the client waits): past it the answer is a 504.

Errors take OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with status codes from
`ERRORS`. Restricted data that no on-device model can serve is a 403 (`permission_error`): the request is
well-formed, policy forbids sending it anywhere, and the SDKs do not retry a 403. Non-standard request fields:
`sensitivity` ("public", "internal", "restricted"; `extra_body` in the SDK) and `max_cost_usd`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tiergate import errors
from tiergate.reload import LiveSidecar
from tiergate.request import Chunk, Decision, Message, Request, Sensitivity, Usage
from tiergate.server.http import HttpRequest, Response, StreamResponse
from tiergate.sidecar import Sidecar

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
DECISION_HEADER = "x-tiergate-decision"
TIMEOUT_HEADER = "x-tiergate-timeout-ms"
JSON = "application/json"
SSE = "text/event-stream"

# (status, OpenAI error type); looked up along the exception's MRO, so subclasses inherit their parent's row.
ERRORS: dict[type[errors.TiergateError], tuple[int, str]] = {
    errors.InvalidRequest: (400, "invalid_request_error"),
    errors.UnknownTask: (404, "invalid_request_error"),
    errors.SensitiveDataBlocked: (403, "permission_error"),
    errors.LimitExceeded: (429, "rate_limit_error"),
    errors.DeadlineExceeded: (504, "timeout_error"),
    errors.AllAttemptsFailed: (502, "api_error"),
    errors.StreamInterrupted: (502, "api_error"),
    errors.StateUnavailable: (503, "api_error"),
    errors.ShuttingDown: (503, "api_error"),
}
_FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls"})
_SENSITIVITIES = {s.name.lower(): s for s in Sensitivity if s is not Sensitivity.UNSPECIFIED}
# Rejected when set: tiergate cannot honour them, and ignoring them would answer a different question.
_UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call", "logprobs", "audio", "modalities")


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A parsed `/v1/chat/completions` body."""

    request: Request
    model: str
    include_usage: bool


def error_status(exc: errors.TiergateError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        row = ERRORS.get(cls)
        if row is not None:
            return row
    return 500, "api_error"


def error_body(message: str, kind: str, *, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def decision_json(decision: Decision) -> dict[str, Any]:
    """The compact Decision of the header and the last stream chunk."""
    return {
        "served_by": decision.served_by,
        "route": decision.route,
        "task": decision.task,
        "attempts": [
            {"model": a.model, "outcome": a.outcome.value, "latency_ms": round(a.latency_ms, 1)}
            for a in decision.attempts
        ],
        "cost_usd": decision.cost_usd,
        "overhead_ms": round(decision.overhead_ms, 3),
        "cache": decision.cache,
        "cost_saved_usd": decision.cost_saved_usd,
        "reason": decision.reason,
    }


def decision_header(decision: Decision) -> tuple[str, str]:
    # json.dumps escapes non-ASCII, so the value is safe on the latin-1 header line.
    return DECISION_HEADER, json.dumps(decision_json(decision), separators=(",", ":"))


def parse_chat(body: bytes, routes: Mapping[str, object]) -> ChatCall:
    """The request in a chat-completions body. Raises InvalidRequest (400) or UnknownTask (404)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise errors.InvalidRequest("the request body must be a JSON object")
    model = _field(data, "model", str, required=True)
    if model != "default" and model not in routes:
        raise errors.UnknownTask(
            f"The model {model!r} does not exist: models are tiergate routes ({', '.join(routes)})"
        )
    raw_messages = _field(data, "messages", list, required=True)
    if not raw_messages:
        raise errors.InvalidRequest("messages: must not be empty")
    messages = [_message(i, m) for i, m in enumerate(raw_messages)]
    for name in _UNSUPPORTED:
        if data.get(name):
            raise errors.InvalidRequest(f"{name}: not supported by tiergate")
    n = _field(data, "n", int)
    if n not in (None, 1):
        raise errors.InvalidRequest("n: only 1 is supported")
    stream = _field(data, "stream", bool) or False
    options = _field(data, "stream_options", dict) or {}
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise errors.InvalidRequest("stream_options.include_usage: must be a boolean")
    max_tokens = _field(data, "max_completion_tokens", int)
    if max_tokens is None:
        max_tokens = _field(data, "max_tokens", int)
    if max_tokens is not None and max_tokens < 0:
        raise errors.InvalidRequest("max_tokens: must not be negative")
    temperature = _field(data, "temperature", (int, float))
    sensitivity_name = _field(data, "sensitivity", str)
    sensitivity = Sensitivity.UNSPECIFIED
    if sensitivity_name is not None:
        if sensitivity_name not in _SENSITIVITIES:
            raise errors.InvalidRequest(f"sensitivity: one of {', '.join(_SENSITIVITIES)}")
        sensitivity = _SENSITIVITIES[sensitivity_name]
    metadata = _field(data, "metadata", dict) or {}
    if not all(isinstance(v, str) for v in metadata.values()):
        raise errors.InvalidRequest("metadata: values must be strings")
    max_cost = _field(data, "max_cost_usd", (int, float))
    request = Request(
        task=model,
        messages=messages,
        sensitivity=sensitivity,
        max_output_tokens=max_tokens or 0,
        temperature=float(temperature) if temperature is not None else None,
        tenant=_field(data, "user", str) or "",
        metadata=dict(metadata),
        json_schema=_json_schema(data.get("response_format")),
        max_cost_usd=float(max_cost or 0.0),
        stream=stream,
    )
    return ChatCall(request, model, include_usage)


def parse_deadline(header: str | None) -> float | None:
    """The monotonic deadline an `x-tiergate-timeout-ms` header sets (None without one)."""
    if header is None:
        return None
    try:
        ms = float(header)
    except ValueError:
        ms = -1.0
    if not 0 < ms < float("inf"):
        raise errors.InvalidRequest(f"{TIMEOUT_HEADER}: positive milliseconds expected, got {header[:40]!r}")
    return time.monotonic() + ms / 1000


def _field(data: dict[str, Any], name: str, kind: Any, *, required: bool = False) -> Any:
    value = data.get(name)
    if value is None:
        if required:
            raise errors.InvalidRequest(f"{name}: required")
        return None
    # bool is an int in Python; a JSON true is no token count.
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise errors.InvalidRequest(f"{name}: wrong type ({type(value).__name__})")
    return value


def _message(index: int, raw: Any) -> Message:
    if not isinstance(raw, dict):
        raise errors.InvalidRequest(f"messages[{index}]: must be an object")
    role, content = raw.get("role"), raw.get("content")
    if not isinstance(role, str) or not role:
        raise errors.InvalidRequest(f"messages[{index}].role: required string")
    if role == "developer":  # OpenAI's newer name for the system role
        role = "system"
    if isinstance(content, list):
        parts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise errors.InvalidRequest(f"messages[{index}].content: only text parts are supported")
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str):
        raise errors.InvalidRequest(f"messages[{index}].content: required string or list of text parts")
    return Message(role, content)


def _json_schema(response_format: Any) -> str:
    if response_format is None:
        return ""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return ""
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            return orjson.dumps(spec["schema"]).decode()
    raise errors.InvalidRequest("response_format: {type: text} or {type: json_schema, json_schema: {schema}}")


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    }


def _finish_reason(reason: str | None) -> str:
    return reason if reason in _FINISH_REASONS else "stop"


class OpenAIFacade:
    """The `App` mounted on the HTTP listener (see `server/http.py`)."""

    paths = frozenset({CHAT_PATH, MODELS_PATH})

    def __init__(self, sidecar: Sidecar | LiveSidecar) -> None:
        self._live = sidecar if isinstance(sidecar, LiveSidecar) else LiveSidecar(sidecar)

    async def __call__(self, request: HttpRequest) -> Response | StreamResponse:
        sidecar = self._live.current  # once per request: a reload swaps it
        if request.path == MODELS_PATH:
            if request.method not in ("GET", "HEAD"):
                return _method_not_allowed("GET, HEAD")
            return self._models(sidecar)
        if request.method != "POST":
            return _method_not_allowed("POST")
        try:
            deadline = parse_deadline(request.headers.get(TIMEOUT_HEADER))
            call = parse_chat(request.body, sidecar.config.routes)
            if call.request.stream:
                return await self._stream(sidecar, call, deadline)
            answer = await sidecar.complete(call.request, deadline)
        except errors.TiergateError as exc:
            return _error(exc)
        c, decision = answer.completion, answer.decision
        body = {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": decision.served_by or call.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": c.text},
                    "finish_reason": _finish_reason(c.finish_reason),
                    "logprobs": None,
                }
            ],
            "usage": _usage(c.usage),
        }
        return Response(200, orjson.dumps(body), JSON, (decision_header(decision),))

    def _models(self, sidecar: Sidecar) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "tiergate"}
            for name in sidecar.config.routes
        ]
        return Response(200, orjson.dumps({"object": "list", "data": data}), JSON)

    async def _stream(self, sidecar: Sidecar, call: ChatCall, deadline: float | None) -> StreamResponse:
        """Waits for the first chunk, so that errors before any text get their own status code."""
        chunks = aiter(sidecar.stream(call.request, deadline))
        try:
            first = await anext(chunks)
        except BaseException:
            await _aclose(chunks)
            raise
        return StreamResponse(200, _sse(call, first, chunks), SSE)


async def _sse(
    call: ChatCall, first: tuple[Chunk, Decision | None], rest: AsyncIterator[tuple[Chunk, Decision | None]]
) -> AsyncGenerator[bytes, None]:
    head = {"id": _completion_id(), "object": "chat.completion.chunk", "created": int(time.time())}

    def event(choices: list[dict[str, Any]], decision: Decision | None = None, **extra: Any) -> bytes:
        model = decision.served_by if decision is not None and decision.served_by else call.model
        data: dict[str, Any] = {**head, "model": model, "choices": choices, **extra}
        if decision is not None:
            data["tiergate_decision"] = decision_json(decision)
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def delta(text: str, finish: str | None = None, role: bool = False) -> dict[str, Any]:
        content: dict[str, Any] = {"role": "assistant", "content": text} if role else {"content": text}
        return {"index": 0, "delta": content, "finish_reason": finish, "logprobs": None}

    try:
        yield event([delta("", role=True)])
        item: tuple[Chunk, Decision | None] | None = first
        while item is not None:
            chunk, decision = item
            if decision is None:
                if chunk.text:
                    yield event([delta(chunk.text)])
                item = await anext(rest, None)
                continue
            finish = delta(chunk.text, _finish_reason(chunk.finish_reason))
            if call.include_usage:
                yield event([finish])
                yield event([], decision, usage=_usage(chunk.usage or Usage()))
            else:
                yield event([finish], decision)
            break
    except errors.TiergateError as exc:
        # Headers (200) are gone: the SDKs raise on an `error` event instead.
        _, kind = error_status(exc)
        yield b"data: " + error_body(str(exc), kind, code=exc.kind) + b"\n\n"
    finally:
        await _aclose(rest)
    yield b"data: [DONE]\n\n"


async def _aclose(chunks: AsyncIterator[Any]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def _error(exc: errors.TiergateError) -> Response:
    status, kind = error_status(exc)
    param = "model" if isinstance(exc, errors.UnknownTask) else None
    code = "model_not_found" if isinstance(exc, errors.UnknownTask) else exc.kind
    headers = (decision_header(exc.decision),) if exc.decision is not None else ()
    return Response(status, error_body(str(exc), kind, param=param, code=code), JSON, headers)


def _method_not_allowed(allow: str) -> Response:
    body = error_body(f"use {allow}", "invalid_request_error", code="method_not_allowed")
    return Response(405, body, JSON, (("Allow", allow),))


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"
