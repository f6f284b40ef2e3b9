"""The gRPC servicer: converts proto <-> domain types and calls the Sidecar. No routing logic lives here."""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import AsyncIterator

import grpc

from tiergate.errors import InvalidRequest, TiergateError
from tiergate.reload import LiveSidecar
from tiergate.request import Decision, Message, Request, Sensitivity, Usage
from tiergate.server.status import status_of
from tiergate.sidecar import Sidecar
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

DECISION_TRAILER = "tiergate-decision-bin"
VERSION = importlib.metadata.version("tiergate")
# Answer a little before the client's deadline so it gets our status, not its own DEADLINE_EXCEEDED.
DEADLINE_MARGIN_S = 0.005


def to_request(msg: pb.CompleteRequest, *, stream: bool) -> Request:
    return Request(
        task=msg.task,
        messages=[Message(m.role, m.content) for m in msg.messages],
        sensitivity=Sensitivity(msg.sensitivity)
        if msg.sensitivity in _SENSITIVITIES
        else _bad_sensitivity(msg),
        max_output_tokens=msg.max_output_tokens,
        temperature=msg.temperature if msg.HasField("temperature") else None,
        tenant=msg.tenant,
        metadata=dict(msg.metadata),
        json_schema=msg.json_schema,
        max_cost_usd=msg.max_cost_usd,
        stream=stream,
    )


_SENSITIVITIES = frozenset(int(s) for s in Sensitivity)
# Proto enums accept their value names; ours match the proto's numbers, not its spelling of UNSPECIFIED.
_SENSITIVITY_NAMES = {s: pb.Sensitivity.Name(int(s)) for s in Sensitivity}


def _bad_sensitivity(msg: pb.CompleteRequest) -> Sensitivity:
    raise InvalidRequest(f"sensitivity: unknown value {msg.sensitivity}")


def to_usage(usage: Usage) -> pb.Usage:
    return pb.Usage(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost_usd=usage.cost_usd
    )


def to_decision(d: Decision) -> pb.Decision:
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
    )


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return None
    return time.monotonic() + max(remaining - DEADLINE_MARGIN_S, 0.0)


async def _abort(context: grpc.aio.ServicerContext, exc: TiergateError) -> None:
    trailers: tuple[tuple[str, str | bytes], ...] = ()
    if exc.decision is not None:
        trailers = ((DECISION_TRAILER, to_decision(exc.decision).SerializeToString()),)
    await context.abort(status_of(exc), str(exc), trailing_metadata=trailers)


class TiergateServicer(pb_grpc.TiergateServicer):
    def __init__(self, sidecar: Sidecar | LiveSidecar) -> None:
        self._live = sidecar if isinstance(sidecar, LiveSidecar) else LiveSidecar(sidecar)
        self._started = time.monotonic()

    @property
    def _sidecar(self) -> Sidecar:
        # Read once per request: a config reload swaps it, and a request keeps the one it started on.
        return self._live.current

    async def Complete(
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompleteResponse:
        try:
            answer = await self._sidecar.complete(to_request(request, stream=False), _deadline(context))
        except TiergateError as exc:
            await _abort(context, exc)
            raise  # unreachable: abort raises
        c = answer.completion
        return pb.CompleteResponse(
            text=c.text,
            usage=to_usage(c.usage),
            decision=to_decision(answer.decision),
            finish_reason=c.finish_reason,
        )

    async def StreamComplete(
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CompleteChunk]:
        try:
            async for chunk, decision in self._sidecar.stream(
                to_request(request, stream=True), _deadline(context)
            ):
                if decision is None:
                    yield pb.CompleteChunk(text=chunk.text)
                else:
                    yield pb.CompleteChunk(
                        text=chunk.text,
                        usage=to_usage(chunk.usage or Usage()),
                        decision=to_decision(decision),
                        finish_reason=chunk.finish_reason or "stop",
                    )
        except TiergateError as exc:
            await _abort(context, exc)

    async def Explain(self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext) -> pb.Decision:
        try:
            return to_decision(self._sidecar.explain(to_request(request, stream=False)))
        except TiergateError as exc:
            await _abort(context, exc)
            raise

    async def CountTokens(
        self, request: pb.CountTokensRequest, context: grpc.aio.ServicerContext
    ) -> pb.CountTokensResponse:
        try:
            tokens, encoding = self._sidecar.count_tokens(request.text, request.encoding, request.model)
        except TiergateError as exc:
            await _abort(context, exc)
            raise
        return pb.CountTokensResponse(tokens=tokens, encoding=encoding)

    async def Status(self, request: pb.StatusRequest, context: grpc.aio.ServicerContext) -> pb.StatusResponse:
        sidecar = self._sidecar
        return pb.StatusResponse(
            models=[
                pb.ModelStatus(
                    name=m.name,
                    provider=m.provider,
                    on_device=m.on_device,
                    breaker=m.breaker,
                    ttft_ms=m.ttft_ms,
                    tokens_per_s=m.tokens_per_s,
                    samples=m.samples,
                    queue=m.queue,
                )
                for m in sidecar.status()
            ],
            in_flight=sidecar.in_flight,
            uptime_s=time.monotonic() - self._started,
            version=VERSION,
        )
