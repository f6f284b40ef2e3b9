"""The Embed RPC's messages <-> domain types, for the gRPC server and clients (the chat ones: `wire.py`)."""

from __future__ import annotations

import struct

from tiergate.embeddings.types import EmbedAnswer, Embeddings, EmbedRequest
from tiergate.errors import InvalidRequest
from tiergate.request import Sensitivity
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.wire import decision_from_proto, decision_to_proto, usage_from_proto, usage_to_proto


def embed_request_from_proto(msg: pb.EmbedRequest) -> EmbedRequest:
    try:
        sensitivity = Sensitivity(msg.sensitivity)
    except ValueError:
        raise InvalidRequest(f"sensitivity: unknown value {msg.sensitivity}") from None
    return EmbedRequest(
        task=msg.task,
        inputs=list(msg.input),
        sensitivity=sensitivity,
        tenant=msg.tenant,
        metadata=dict(msg.metadata),
        dimensions=msg.dimensions,
        max_cost_usd=msg.max_cost_usd,
    )


def embed_request_to_proto(request: EmbedRequest) -> pb.EmbedRequest:
    return pb.EmbedRequest(
        task=request.task,
        input=request.inputs,
        sensitivity=pb.Sensitivity.Name(int(request.sensitivity)),
        tenant=request.tenant,
        metadata=request.metadata,
        dimensions=request.dimensions,
        max_cost_usd=request.max_cost_usd,
    )


def embed_response_to_proto(answer: EmbedAnswer) -> pb.EmbedResponse:
    result = answer.embeddings
    return pb.EmbedResponse(
        embeddings=[pb.Embedding(vector=result.floats(i)) for i in range(len(result.vectors))],
        usage=usage_to_proto(result.usage),
        decision=decision_to_proto(answer.decision),
        model=result.model,
    )


def embed_response_from_proto(msg: pb.EmbedResponse) -> EmbedAnswer:
    dimensions = len(msg.embeddings[0].vector) if msg.embeddings else 0
    vectors = [struct.pack(f"<{len(e.vector)}f", *e.vector) for e in msg.embeddings]
    embeddings = Embeddings(vectors, dimensions, usage_from_proto(msg.usage), msg.model)
    return EmbedAnswer(embeddings, decision_from_proto(msg.decision))
