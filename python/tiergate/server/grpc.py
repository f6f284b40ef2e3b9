"""The gRPC servicer: calls the Sidecar, translating with `wire` (proto <-> domain). No routing logic here."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from tiergate.embeddings.wire import embed_request_from_proto, embed_response_to_proto
from tiergate.errors import TiergateError
from tiergate.reload import LiveSidecar
from tiergate.server.grpc_call import CallContext
from tiergate.server.status import status_of
from tiergate.sidecar import Sidecar
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.wire import (
    DECISION_TRAILER,
    canary_to_proto,
    chunk_to_proto,
    decision_to_proto,
    error_trailers,
    request_from_proto,
    response_to_proto,
    status_to_proto,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = ["DECISION_TRAILER", "TiergateServicer"]
# Answer a little before the client's deadline so it gets our status (and the Decision), not its own bare
# DEADLINE_EXCEEDED. The grpc-timeout header rounds the client's timeout up (to a few significant digits, so
# by up to ~1%), which puts the deadline we read after the client's: the margin covers that and the trip back.
DEADLINE_MARGIN_S = 0.005
DEADLINE_MARGIN_SHARE = 0.012


def _deadline(context: CallContext) -> float | None:
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return None
    margin = DEADLINE_MARGIN_S + DEADLINE_MARGIN_SHARE * remaining
    return time.monotonic() + max(remaining - margin, 0.0)


def _parent(sidecar: Sidecar, context: CallContext) -> Context | None:
    """The caller's trace context (`traceparent`, `tracestate`, `baggage` metadata), when tracing is on."""
    if sidecar.telemetry.tracing is None:
        return None
    return sidecar.telemetry.parent_from_metadata(context.invocation_metadata())


async def _abort(context: CallContext, exc: TiergateError) -> None:
    await context.abort(status_of(exc), str(exc), trailing_metadata=error_trailers(exc))


class TiergateServicer:
    """The `tiergate.v1.Tiergate` methods, served by `server/grpc_server.py`."""

    def __init__(self, sidecar: Sidecar | LiveSidecar) -> None:
        self._live = sidecar if isinstance(sidecar, LiveSidecar) else LiveSidecar(sidecar)

    @property
    def _sidecar(self) -> Sidecar:
        # Read once per request: a config reload swaps it, and a request keeps the one it started on.
        return self._live.current

    async def Complete(self, request: pb.CompleteRequest, context: CallContext) -> pb.CompleteResponse:
        sidecar = self._sidecar
        try:
            answer = await sidecar.complete(
                request_from_proto(request, stream=False),
                _deadline(context),
                parent=_parent(sidecar, context),
            )
        except TiergateError as exc:
            await _abort(context, exc)
            raise  # unreachable: abort raises
        return response_to_proto(answer.completion, answer.decision)

    async def StreamComplete(
        self, request: pb.CompleteRequest, context: CallContext
    ) -> AsyncIterator[pb.CompleteChunk]:
        sidecar = self._sidecar
        # On the Rust listener, text deltas may reach the client straight from the provider (`relay.py`);
        # the chunks that carry them come here marked `relayed` and are not sent again.
        sink = context.relay_sink if isinstance(context, CallContext) else None
        try:
            async for chunk, decision in sidecar.stream(
                request_from_proto(request, stream=True),
                _deadline(context),
                parent=_parent(sidecar, context),
                sink=sink,
            ):
                if not chunk.relayed:
                    yield chunk_to_proto(chunk, decision)
        except TiergateError as exc:
            await _abort(context, exc)

    async def Explain(self, request: pb.CompleteRequest, context: CallContext) -> pb.Decision:
        try:
            return decision_to_proto(self._sidecar.explain(request_from_proto(request, stream=False)))
        except TiergateError as exc:
            await _abort(context, exc)
            raise

    async def CountTokens(
        self, request: pb.CountTokensRequest, context: CallContext
    ) -> pb.CountTokensResponse:
        try:
            tokens, encoding = await self._sidecar.count_tokens(request.text, request.encoding, request.model)
        except TiergateError as exc:
            await _abort(context, exc)
            raise
        return pb.CountTokensResponse(tokens=tokens, encoding=encoding)

    async def Feedback(self, request: pb.FeedbackRequest, context: CallContext) -> pb.FeedbackResponse:
        score = request.score if request.HasField("score") else None
        try:
            served = self._sidecar.rate(request.request_id, score, request.label)
        except TiergateError as exc:
            await _abort(context, exc)
            raise
        return pb.FeedbackResponse(route=served.route, model=served.model, arm=served.arm)

    async def Canary(self, request: pb.CanaryRequest, context: CallContext) -> pb.CanaryResponse:
        percent = request.percent if request.HasField("percent") else None
        try:
            return canary_to_proto(await self._sidecar.canary(request.route, percent))
        except TiergateError as exc:
            await _abort(context, exc)
            raise

    async def Embed(self, request: pb.EmbedRequest, context: CallContext) -> pb.EmbedResponse:
        try:
            answer = await self._sidecar.embed(embed_request_from_proto(request), _deadline(context))
        except TiergateError as exc:
            await _abort(context, exc)
            raise
        return embed_response_to_proto(answer)

    async def Status(self, request: pb.StatusRequest, context: CallContext) -> pb.StatusResponse:
        return status_to_proto(self._sidecar.status())
