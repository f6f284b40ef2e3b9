"""Protobuf <-> domain types, both directions: the one translation of tiergate's gRPC contract.

The server (`server/grpc.py`) reads requests and writes answers with these; the client (`tiergate.Client`)
writes requests and reads answers with the same functions, so both ends agree by construction. Errors travel
as a gRPC status (`server/status.py`) plus trailers built here: the Decision so far, the error's `kind` (which
tells apart the errors that share a status code) and, for a limit, which one.

Pure functions over `tiergate.v1` messages and `tiergate.request` types: no grpc, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from tiergate.content import (
    ImagePart,
    Part,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolMode,
)
from tiergate.errors import InvalidRequest, LimitExceeded, TiergateError
from tiergate.policy.canary import ArmStats, CanaryState
from tiergate.request import (
    Attempt,
    Chunk,
    Completion,
    Decision,
    Message,
    ModelState,
    Outcome,
    Request,
    Response,
    Sensitivity,
    SidecarStatus,
    Skip,
    Usage,
)
from tiergate.v1 import tiergate_pb2 as pb

DECISION_TRAILER = "tiergate-decision-bin"
KIND_TRAILER = "tiergate-error-kind"
LIMIT_TRAILER = "tiergate-limit"

_SENSITIVITY_OF = {int(s): s for s in Sensitivity}  # a dict lookup, not an enum call, per request
# Proto enums accept their value names; ours match the proto's numbers, not its spelling of UNSPECIFIED.
_SENSITIVITY_NAMES = {s: pb.Sensitivity.Name(int(s)) for s in Sensitivity}
_OUTCOMES = {o.value: o for o in Outcome}

# -- requests -----------------------------------------------------------------------------------------------


def request_from_proto(msg: pb.CompleteRequest, *, stream: bool) -> Request:
    """Raises InvalidRequest for a value this version does not know (sensitivity, tool choice, format)."""
    # Runs once per request: each field is read once, and fields left empty (most of them) cost a truth test.
    sensitivity = _SENSITIVITY_OF.get(msg.sensitivity)
    if sensitivity is None:
        raise InvalidRequest(f"sensitivity: unknown value {msg.sensitivity}")
    fmt = msg.response_format
    json_schema = msg.json_schema
    if fmt:
        if fmt not in _FORMATS:
            raise InvalidRequest(f"response_format: {fmt!r} is not one of text, json_object, json_schema")
        if fmt == "json_schema" and not json_schema:
            raise InvalidRequest("response_format json_schema needs `json_schema`")
        if fmt != "json_schema":
            json_schema = ""
    metadata, stop, tools = msg.metadata, msg.stop, msg.tools
    return Request(
        task=msg.task,
        messages=[_message_from_proto(i, m) for i, m in enumerate(msg.messages)],
        sensitivity=sensitivity,
        max_output_tokens=msg.max_output_tokens,
        temperature=msg.temperature if msg.HasField("temperature") else None,
        tenant=msg.tenant,
        metadata=dict(metadata) if metadata else {},
        json_schema=json_schema,
        max_cost_usd=msg.max_cost_usd,
        stream=stream,
        tools=[Tool(t.name, t.description, t.parameters, t.strict) for t in tools] if tools else [],
        tool_choice=_tool_choice_from_proto(msg),
        parallel_tool_calls=msg.parallel_tool_calls if msg.HasField("parallel_tool_calls") else None,
        json_object=fmt == "json_object",
        json_schema_strict=msg.json_schema_strict if msg.HasField("json_schema_strict") else None,
        stop=list(stop) if stop else [],
        top_p=msg.top_p if msg.HasField("top_p") else None,
        seed=msg.seed if msg.HasField("seed") else None,
        presence_penalty=msg.presence_penalty if msg.HasField("presence_penalty") else None,
        frequency_penalty=msg.frequency_penalty if msg.HasField("frequency_penalty") else None,
    )


def request_to_proto(request: Request) -> pb.CompleteRequest:
    fmt = request.response_format
    return pb.CompleteRequest(
        task=request.task,
        messages=[_message_to_proto(m) for m in request.messages],
        sensitivity=_SENSITIVITY_NAMES[request.sensitivity],
        max_output_tokens=request.max_output_tokens,
        temperature=request.temperature,
        tenant=request.tenant,
        metadata=request.metadata,
        json_schema=request.json_schema,
        max_cost_usd=request.max_cost_usd,
        tools=[
            pb.Tool(name=t.name, description=t.description, parameters=t.parameters, strict=t.strict)
            for t in request.tools
        ],
        tool_choice=pb.ToolChoice(mode=request.tool_choice.mode.value, name=request.tool_choice.name)
        if request.tool_choice != ToolChoice()
        else None,
        parallel_tool_calls=request.parallel_tool_calls,
        response_format="" if fmt.value == "text" else fmt.value,
        json_schema_strict=request.json_schema_strict,
        stop=request.stop,
        top_p=request.top_p,
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )


_FORMATS = frozenset({"", "text", "json_object", "json_schema"})
_TOOL_MODES = {m.value: m for m in ToolMode}


_AUTO = ToolChoice()  # frozen: one instance serves every request that sets no tool choice


def _tool_choice_from_proto(msg: pb.CompleteRequest) -> ToolChoice:
    if not msg.HasField("tool_choice"):
        return _AUTO
    mode = _TOOL_MODES.get(msg.tool_choice.mode or "auto")
    if mode is None:
        raise InvalidRequest(
            f"tool_choice.mode: {msg.tool_choice.mode!r} is not one of auto, none, required, tool"
        )
    return ToolChoice(mode, msg.tool_choice.name)


def _message_from_proto(index: int, m: pb.Message) -> Message:
    if not m.parts and not m.tool_calls:  # plain text, the common case
        return Message(m.role, m.content, [], [], m.tool_call_id, m.name)
    parts: list[Part] = []
    for part in m.parts:
        kind = part.WhichOneof("part")
        if kind == "text":
            parts.append(TextPart(part.text))
        elif kind == "image":
            image = part.image
            parts.append(ImagePart(image.url, image.data, image.mime_type, image.detail))
        else:
            raise InvalidRequest(f"messages[{index}].parts: a part needs `text` or `image`")
    if parts and m.content:
        raise InvalidRequest(f"messages[{index}]: set `content` or `parts`, not both")
    content = "".join(p.text for p in parts if isinstance(p, TextPart)) if parts else m.content
    # Text-only parts are plain content: only images need the parts list.
    if all(isinstance(p, TextPart) for p in parts):
        parts = []
    return Message(
        m.role,
        content,
        parts,
        [ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls],
        m.tool_call_id,
        m.name,
    )


def _message_to_proto(m: Message) -> pb.Message:
    parts = [
        pb.ContentPart(text=p.text)
        if isinstance(p, TextPart)
        else pb.ContentPart(image=pb.Image(url=p.url, data=p.data, mime_type=p.mime_type, detail=p.detail))
        for p in m.parts
    ]
    return pb.Message(
        role=m.role,
        content="" if parts else m.content,
        parts=parts,
        tool_calls=_calls_to_proto(m.tool_calls),
        tool_call_id=m.tool_call_id,
        name=m.name,
    )


def _calls_to_proto(calls: list[ToolCall]) -> list[pb.ToolCall]:
    return [pb.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in calls]


def _calls_from_proto(calls: Iterable[pb.ToolCall]) -> list[ToolCall]:
    return [ToolCall(c.id, c.name, c.arguments) for c in calls]


def _deltas_to_proto(deltas: list[ToolCallDelta]) -> list[pb.ToolCallDelta]:
    return [pb.ToolCallDelta(index=d.index, id=d.id, name=d.name, arguments=d.arguments) for d in deltas]


def _deltas_from_proto(deltas: Iterable[pb.ToolCallDelta]) -> list[ToolCallDelta]:
    return [ToolCallDelta(d.index, d.id, d.name, d.arguments) for d in deltas]


# -- answers -----------------------------------------------------------------------------------------------


def usage_to_proto(usage: Usage) -> pb.Usage:
    return pb.Usage(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost_usd=usage.cost_usd
    )


def usage_from_proto(msg: pb.Usage) -> Usage:
    return Usage(input_tokens=msg.input_tokens, output_tokens=msg.output_tokens, cost_usd=msg.cost_usd)


def decision_to_proto(d: Decision) -> pb.Decision:
    # Built with every answer: the strings and lists that are usually empty are set only when they are not
    # (an empty one encodes as nothing in proto3 either way), which halves the cost of building it.
    msg = pb.Decision(
        route=d.route,
        served_by=d.served_by,
        sensitivity=_SENSITIVITY_NAMES[d.sensitivity],
        attempts=[_attempt_to_proto(a) for a in d.attempts],
        overhead_ms=d.overhead_ms,
        reason=d.reason,
        task=d.task,
        cost_usd=d.cost_usd,
        request_id=d.request_id,
        cost_saved_usd=d.cost_saved_usd,
        cache_similarity=d.cache_similarity,
    )
    if d.matched_rules:
        msg.matched_rules.extend(d.matched_rules)
    if d.complexity:
        msg.complexity = d.complexity
    if d.complexity_by:
        msg.complexity_by = d.complexity_by
    for skip in d.skipped:
        msg.skipped.add(model=skip.model, reason=skip.reason)
    if d.arm:
        msg.arm = d.arm
    if d.trace_id:
        msg.trace_id = d.trace_id
    if d.span_id:
        msg.span_id = d.span_id
    if d.cache:
        msg.cache = d.cache
    if d.cache_match:
        msg.cache_match = d.cache_match
    return msg


def _attempt_to_proto(a: Attempt) -> pb.Attempt:
    attempt = pb.Attempt(model=a.model, outcome=a.outcome.value, ttft_ms=a.ttft_ms, latency_ms=a.latency_ms)
    if a.error:
        attempt.error = a.error
    if a.hedged:
        attempt.hedged = True
    return attempt


def decision_from_proto(msg: pb.Decision) -> Decision:
    return Decision(
        route=msg.route,
        task=msg.task,
        sensitivity=_SENSITIVITY_OF.get(msg.sensitivity, Sensitivity.UNSPECIFIED),
        complexity=msg.complexity,
        complexity_by=msg.complexity_by,
        matched_rules=list(msg.matched_rules),
        attempts=[
            Attempt(
                model=a.model,
                # A newer server may name an outcome this client does not know: it did not serve.
                outcome=_OUTCOMES.get(a.outcome, Outcome.ERROR),
                ttft_ms=a.ttft_ms,
                latency_ms=a.latency_ms,
                error=a.error,
                hedged=a.hedged,
            )
            for a in msg.attempts
        ],
        skipped=[Skip(s.model, s.reason) for s in msg.skipped],
        served_by=msg.served_by,
        reason=msg.reason,
        overhead_ms=msg.overhead_ms,
        cost_usd=msg.cost_usd,
        request_id=msg.request_id,
        arm=msg.arm,
        trace_id=msg.trace_id,
        span_id=msg.span_id,
        cache=msg.cache,
        cost_saved_usd=msg.cost_saved_usd,
        cache_match=msg.cache_match,
        cache_similarity=msg.cache_similarity,
    )


def response_to_proto(completion: Completion, decision: Decision) -> pb.CompleteResponse:
    response = pb.CompleteResponse(
        text=completion.text,
        usage=usage_to_proto(completion.usage),
        decision=decision_to_proto(decision),
        finish_reason=completion.finish_reason,
    )
    if completion.tool_calls:
        response.tool_calls.extend(_calls_to_proto(completion.tool_calls))
    if completion.refusal:
        response.refusal = completion.refusal
    return response


def response_from_proto(msg: pb.CompleteResponse) -> Response:
    return Response(
        text=msg.text,
        usage=usage_from_proto(msg.usage),
        decision=decision_from_proto(msg.decision),
        finish_reason=msg.finish_reason,
        tool_calls=_calls_from_proto(msg.tool_calls),
        refusal=msg.refusal,
    )


def chunk_to_proto(chunk: Chunk, decision: Decision | None) -> pb.CompleteChunk:
    """Text and tool-call deltas, and on the last chunk (the one with the decision): usage, decision,
    finish reason."""
    calls = _deltas_to_proto(chunk.tool_calls)
    if decision is None:
        return pb.CompleteChunk(text=chunk.text, tool_calls=calls, refusal=chunk.refusal)
    return pb.CompleteChunk(
        text=chunk.text,
        usage=usage_to_proto(chunk.usage or Usage()),
        decision=decision_to_proto(decision),
        finish_reason=chunk.finish_reason or "stop",
        tool_calls=calls,
        refusal=chunk.refusal,
    )


def chunk_from_proto(msg: pb.CompleteChunk) -> Chunk:
    calls = _deltas_from_proto(msg.tool_calls)
    if not msg.HasField("decision"):
        return Chunk(msg.text, tool_calls=calls, refusal=msg.refusal)
    return Chunk(
        msg.text,
        usage=usage_from_proto(msg.usage),
        finish_reason=msg.finish_reason or "stop",
        decision=decision_from_proto(msg.decision),
        tool_calls=calls,
        refusal=msg.refusal,
    )


# -- status ------------------------------------------------------------------------------------------------


_MODEL_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(ModelState))  # ModelStatus has the same


def status_to_proto(status: SidecarStatus) -> pb.StatusResponse:
    return pb.StatusResponse(
        models=[pb.ModelStatus(**dataclasses.asdict(m)) for m in status.models],  # same field names
        in_flight=status.in_flight,
        uptime_s=status.uptime_s,
        version=status.version,
    )


def status_from_proto(msg: pb.StatusResponse) -> SidecarStatus:
    return SidecarStatus(
        models=[ModelState(**{name: getattr(m, name) for name in _MODEL_STATE_FIELDS}) for m in msg.models],
        in_flight=msg.in_flight,
        uptime_s=msg.uptime_s,
        version=msg.version,
    )


# -- errors ------------------------------------------------------------------------------------------------


def error_trailers(exc: TiergateError) -> tuple[tuple[str, str | bytes], ...]:
    """The trailers that go with an error's status: its kind, the limit hit, the Decision so far."""
    trailers: list[tuple[str, str | bytes]] = [(KIND_TRAILER, exc.kind)]
    if isinstance(exc, LimitExceeded) and exc.limit:
        trailers.append((LIMIT_TRAILER, exc.limit))
    if exc.decision is not None:
        trailers.append((DECISION_TRAILER, decision_to_proto(exc.decision).SerializeToString()))
    return tuple(trailers)


def error_details(trailers: Iterable[tuple[str, str | bytes]]) -> tuple[str, str, Decision | None]:
    """(kind, limit, decision) from an error's trailers; "" and None where the server sent none."""
    found: Mapping[str, str | bytes] = dict(trailers)
    kind, limit, raw = found.get(KIND_TRAILER, ""), found.get(LIMIT_TRAILER, ""), found.get(DECISION_TRAILER)
    decision = decision_from_proto(pb.Decision.FromString(raw)) if isinstance(raw, bytes) else None
    return (
        kind if isinstance(kind, str) else kind.decode(),
        limit if isinstance(limit, str) else limit.decode(),
        decision,
    )


def canary_to_proto(state: CanaryState) -> pb.CanaryResponse:
    return pb.CanaryResponse(
        route=state.route,
        model=state.model,
        percent=state.percent,
        configured_percent=state.configured_percent,
        rolled_back=state.rolled_back,
        arms=[
            pb.CanaryArm(
                arm=arm,
                requests=s.requests,
                failures=s.failures,
                ttft_samples=s.ttft_n,
                mean_ttft_ms=s.mean_ttft_ms,
                scored=s.scored,
                mean_score=s.mean_score,
            )
            for arm, s in state.arms.items()
        ],
    )


def canary_from_proto(msg: pb.CanaryResponse) -> CanaryState:
    arms = {
        a.arm: ArmStats(
            a.requests,
            a.failures,
            a.ttft_samples,
            a.mean_ttft_ms * a.ttft_samples,
            a.scored,
            a.mean_score * a.scored,
        )
        for a in msg.arms
    }
    return CanaryState(msg.route, msg.model, msg.configured_percent, msg.percent, msg.rolled_back, arms)
