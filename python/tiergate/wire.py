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

from tiergate.errors import InvalidRequest, LimitExceeded, TiergateError
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

_SENSITIVITIES = frozenset(int(s) for s in Sensitivity)
# Proto enums accept their value names; ours match the proto's numbers, not its spelling of UNSPECIFIED.
_SENSITIVITY_NAMES = {s: pb.Sensitivity.Name(int(s)) for s in Sensitivity}
_OUTCOMES = {o.value: o for o in Outcome}

# -- requests -----------------------------------------------------------------------------------------------


def request_from_proto(msg: pb.CompleteRequest, *, stream: bool) -> Request:
    """Raises InvalidRequest for a sensitivity this version does not know."""
    if msg.sensitivity not in _SENSITIVITIES:
        raise InvalidRequest(f"sensitivity: unknown value {msg.sensitivity}")
    return Request(
        task=msg.task,
        messages=[Message(m.role, m.content) for m in msg.messages],
        sensitivity=Sensitivity(msg.sensitivity),
        max_output_tokens=msg.max_output_tokens,
        temperature=msg.temperature if msg.HasField("temperature") else None,
        tenant=msg.tenant,
        metadata=dict(msg.metadata),
        json_schema=msg.json_schema,
        max_cost_usd=msg.max_cost_usd,
        stream=stream,
    )


def request_to_proto(request: Request) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        task=request.task,
        messages=[pb.Message(role=m.role, content=m.content) for m in request.messages],
        sensitivity=_SENSITIVITY_NAMES[request.sensitivity],
        max_output_tokens=request.max_output_tokens,
        temperature=request.temperature,
        tenant=request.tenant,
        metadata=request.metadata,
        json_schema=request.json_schema,
        max_cost_usd=request.max_cost_usd,
    )


# -- answers -----------------------------------------------------------------------------------------------


def usage_to_proto(usage: Usage) -> pb.Usage:
    return pb.Usage(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost_usd=usage.cost_usd
    )


def usage_from_proto(msg: pb.Usage) -> Usage:
    return Usage(input_tokens=msg.input_tokens, output_tokens=msg.output_tokens, cost_usd=msg.cost_usd)


def decision_to_proto(d: Decision) -> pb.Decision:
    return pb.Decision(
        route=d.route,
        served_by=d.served_by,
        sensitivity=_SENSITIVITY_NAMES[d.sensitivity],
        matched_rules=d.matched_rules,
        attempts=[
            pb.Attempt(
                model=a.model,
                outcome=a.outcome.value,
                ttft_ms=a.ttft_ms,
                latency_ms=a.latency_ms,
                error=a.error,
                hedged=a.hedged,
            )
            for a in d.attempts
        ],
        overhead_ms=d.overhead_ms,
        reason=d.reason,
        task=d.task,
        complexity=d.complexity,
        complexity_by=d.complexity_by,
        skipped=[pb.Skipped(model=s.model, reason=s.reason) for s in d.skipped],
        cost_usd=d.cost_usd,
        cache=d.cache,
        cost_saved_usd=d.cost_saved_usd,
    )


def decision_from_proto(msg: pb.Decision) -> Decision:
    return Decision(
        route=msg.route,
        task=msg.task,
        sensitivity=Sensitivity(msg.sensitivity)
        if msg.sensitivity in _SENSITIVITIES
        else Sensitivity.UNSPECIFIED,
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
        cache=msg.cache,
        cost_saved_usd=msg.cost_saved_usd,
    )


def response_to_proto(completion: Completion, decision: Decision) -> pb.CompleteResponse:
    return pb.CompleteResponse(
        text=completion.text,
        usage=usage_to_proto(completion.usage),
        decision=decision_to_proto(decision),
        finish_reason=completion.finish_reason,
    )


def response_from_proto(msg: pb.CompleteResponse) -> Response:
    return Response(
        text=msg.text,
        usage=usage_from_proto(msg.usage),
        decision=decision_from_proto(msg.decision),
        finish_reason=msg.finish_reason,
    )


def chunk_to_proto(chunk: Chunk, decision: Decision | None) -> pb.CompleteChunk:
    """Text only, except the last chunk (the one with the decision): usage, decision, finish reason."""
    if decision is None:
        return pb.CompleteChunk(text=chunk.text)
    return pb.CompleteChunk(
        text=chunk.text,
        usage=usage_to_proto(chunk.usage or Usage()),
        decision=decision_to_proto(decision),
        finish_reason=chunk.finish_reason or "stop",
    )


def chunk_from_proto(msg: pb.CompleteChunk) -> Chunk:
    if not msg.HasField("decision"):
        return Chunk(msg.text)
    return Chunk(
        msg.text,
        usage=usage_from_proto(msg.usage),
        finish_reason=msg.finish_reason or "stop",
        decision=decision_from_proto(msg.decision),
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
