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
well-formed, policy forbids sending it anywhere, and the SDKs do not retry a 403. The request body is read by
`server/openai_request.py`; answers are shaped here exactly as OpenAI's spec has them (`message.refusal`,
`choices[].logprobs` present as null, `chatcmpl-` ids, `system_fingerprint`, tool calls whole or streamed as
deltas with stable indices).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from tiergate import errors
from tiergate.content import ToolCall, ToolCallDelta
from tiergate.reload import LiveSidecar
from tiergate.request import Chunk, Completion, Decision, Usage
from tiergate.server.feedback_http import FEEDBACK_PATH, feedback_response
from tiergate.server.http import HttpRequest, Response, StreamResponse
from tiergate.server.openai_request import ChatCall, parse_chat
from tiergate.server.sse_relay import SseRelaySink, text_template
from tiergate.sidecar import Sidecar

if TYPE_CHECKING:
    from opentelemetry.context import Context

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
    errors.FeedbackNotFound: (404, "not_found_error"),
    errors.SensitiveDataBlocked: (403, "permission_error"),
    errors.PolicyBlocked: (403, "permission_error"),
    errors.LimitExceeded: (429, "rate_limit_error"),
    errors.DeadlineExceeded: (504, "timeout_error"),
    errors.AllAttemptsFailed: (502, "api_error"),
    errors.StreamInterrupted: (502, "api_error"),
    errors.StateUnavailable: (503, "api_error"),
    errors.ShuttingDown: (503, "api_error"),
}
_FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls"})


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
        "skipped": [{"model": s.model, "reason": s.reason} for s in decision.skipped],
        "cost_usd": decision.cost_usd,
        "overhead_ms": round(decision.overhead_ms, 3),
        "request_id": decision.request_id,
        "arm": decision.arm,
        "cache": decision.cache,
        "cost_saved_usd": decision.cost_saved_usd,
        **(
            {"cache_match": decision.cache_match, "cache_similarity": round(decision.cache_similarity, 4)}
            if decision.cache_match
            else {}
        ),
        "reason": decision.reason,
        **({"trace_id": decision.trace_id, "span_id": decision.span_id} if decision.trace_id else {}),
    }


def decision_header(decision: Decision) -> tuple[str, str]:
    # json.dumps escapes non-ASCII, so the value is safe on the latin-1 header line.
    return DECISION_HEADER, json.dumps(decision_json(decision), separators=(",", ":"))


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


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    }


def _finish_reason(reason: str | None) -> str:
    return reason if reason in _FINISH_REASONS else "stop"


def _tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def _delta_calls(deltas: list[ToolCallDelta]) -> list[dict[str, Any]]:
    """Streamed tool calls as OpenAI sends them: the first delta of a call has id, type and name."""
    out = []
    for d in deltas:
        call: dict[str, Any] = {"index": d.index}
        if d.id:
            call["id"] = d.id
            call["type"] = "function"
        function: dict[str, str] = {"arguments": d.arguments}
        if d.name:
            function["name"] = d.name
        call["function"] = function
        out.append(call)
    return out


def chat_completion(completion: Completion, model: str) -> dict[str, Any]:
    """A whole answer as OpenAI's `chat.completion` object, required nullable fields included."""
    # content is null when the answer is only tool calls or a refusal, as OpenAI sends it.
    only_other = not completion.text and (completion.tool_calls or completion.refusal)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if only_other else completion.text,
        "refusal": completion.refusal or None,
        "annotations": [],
    }
    if completion.tool_calls:
        message["tool_calls"] = _tool_calls(completion.tool_calls)
    return {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": system_fingerprint(),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _finish_reason(completion.finish_reason),
                "logprobs": None,
            }
        ],
        "usage": _usage(completion.usage),
    }


@functools.cache
def system_fingerprint() -> str:
    """tiergate's version: what, of the backend configuration, is known for every answer."""
    return f"fp_tiergate_{importlib.metadata.version('tiergate')}"


class OpenAIFacade:
    """The `App` mounted on the HTTP listener (see `server/http.py`)."""

    paths = frozenset({CHAT_PATH, MODELS_PATH, FEEDBACK_PATH})

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
        if request.path == FEEDBACK_PATH:
            try:
                return feedback_response(sidecar, request.body)
            except errors.TiergateError as exc:
                return _error(exc)
        try:
            deadline = parse_deadline(request.headers.get(TIMEOUT_HEADER))
            call = parse_chat(request.body, sidecar.config.routes)
            parent = sidecar.telemetry.parent_from(request.headers)  # the caller's trace (traceparent)
            if call.request.stream:
                return await self._stream(sidecar, call, deadline, parent)
            answer = await sidecar.complete(call.request, deadline, parent=parent)
        except errors.TiergateError as exc:
            return _error(exc)
        decision = answer.decision
        body = chat_completion(answer.completion, decision.served_by or call.model)
        return Response(200, orjson.dumps(body), JSON, (decision_header(decision),))

    def _models(self, sidecar: Sidecar) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "tiergate"}
            for name in sidecar.config.routes
        ]
        return Response(200, orjson.dumps({"object": "list", "data": data}), JSON)

    async def _stream(
        self, sidecar: Sidecar, call: ChatCall, deadline: float | None, parent: Context | None
    ) -> StreamResponse:
        """Waits for the first chunk, so that errors before any text get their own status code.

        Text deltas after it may be relayed (`relay.py`): their events are built natively from the template of
        a text event, which is what `_sse` would write for them.
        """
        events = _Events(call)
        # A relayed text delta's event is built natively around its text: the event `_sse` writes for it.
        sink = SseRelaySink(*text_template(events.event([_delta(Chunk(text=SseRelaySink.MARK))])))
        chunks = aiter(sidecar.stream(call.request, deadline, parent=parent, sink=sink))
        try:
            first = await anext(chunks)
        except BaseException:
            await _aclose(chunks)
            raise
        return StreamResponse(200, _sse(call, events, first, chunks), SSE, relay=sink)


class _Events:
    """The SSE events of one streamed answer: the same id, creation time and fingerprint on each."""

    __slots__ = ("_call", "_head")

    def __init__(self, call: ChatCall) -> None:
        self._call = call
        self._head = {
            "id": _completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "system_fingerprint": system_fingerprint(),
        }

    def event(self, choices: list[dict[str, Any]], decision: Decision | None = None, **extra: Any) -> bytes:
        call = self._call
        model = decision.served_by if decision is not None and decision.served_by else call.model
        data: dict[str, Any] = {**self._head, "model": model, "choices": choices}
        if call.include_usage:
            data["usage"] = None  # on every chunk but the last, as OpenAI sends it
        data.update(extra)
        if decision is not None:
            data["tiergate_decision"] = decision_json(decision)
        return b"data: " + orjson.dumps(data) + b"\n\n"


def _delta(chunk: Chunk | None, finish: str | None = None) -> dict[str, Any]:
    """A chunk as the stream's choice; None: the opening chunk."""
    content: dict[str, Any] = {}
    if chunk is None:
        content = {"role": "assistant", "content": "", "refusal": None}
    else:
        if chunk.text:
            content["content"] = chunk.text
        if chunk.refusal:
            content["refusal"] = chunk.refusal
        if chunk.tool_calls:
            content["tool_calls"] = _delta_calls(chunk.tool_calls)
    return {"index": 0, "delta": content, "finish_reason": finish, "logprobs": None}


async def _sse(
    call: ChatCall,
    events: _Events,
    first: tuple[Chunk, Decision | None],
    rest: AsyncIterator[tuple[Chunk, Decision | None]],
) -> AsyncGenerator[bytes, None]:
    """The stream's events; chunks marked `relayed` were written by the relay sink already."""
    event, delta = events.event, _delta
    try:
        yield event([delta(None)])
        item: tuple[Chunk, Decision | None] | None = first
        while item is not None:
            chunk, decision = item
            if decision is None:
                if not chunk.relayed and (chunk.text or chunk.refusal or chunk.tool_calls):
                    yield event([delta(chunk)])
                item = await anext(rest, None)
                continue
            if chunk.text or chunk.refusal or chunk.tool_calls:
                yield event([delta(chunk)])
            finish = delta(Chunk(), _finish_reason(chunk.finish_reason))
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
