"""Domain types of an embedding request, and the interface every embedding provider implements."""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tiergate.providers.base import BadRequest, ChunkStream
from tiergate.request import Chunk, Completion, Decision, Message, Request, Sensitivity, Usage


@dataclass(slots=True)
class EmbedRequest:
    """Texts to embed, as the application asked for it. `task` names an embedding route."""

    task: str
    inputs: list[str]
    sensitivity: Sensitivity = Sensitivity.UNSPECIFIED
    tenant: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    dimensions: int = 0  # 0: the model's own size
    max_cost_usd: float = 0.0  # 0: no per-request limit

    def as_request(self) -> Request:
        """The request the rules, budgets and reports see: one user message per input."""
        return Request(
            task=self.task,
            messages=[Message("user", text) for text in self.inputs],
            sensitivity=self.sensitivity,
            tenant=self.tenant,
            metadata=self.metadata,
        )


@dataclass(slots=True)
class Embeddings:
    """One vector per input, in order: each the float32 little-endian bytes of `dimensions` values."""

    vectors: list[bytes]
    dimensions: int
    usage: Usage
    model: str = ""  # the upstream model id, or the on-device model's name

    def floats(self, index: int) -> list[float]:
        values = array("f", self.vectors[index])
        if sys.byteorder == "big":
            values.byteswap()
        return values.tolist()

    @staticmethod
    def pack(values: list[float]) -> bytes:
        packed = array("f", values)
        if sys.byteorder == "big":
            packed.byteswap()
        return packed.tobytes()


@dataclass(slots=True)
class EmbedAnswer:
    """What the application gets for an embedding request: the vectors, and the Decision behind them."""

    embeddings: Embeddings
    decision: Decision

    @property
    def vectors(self) -> list[list[float]]:
        return [self.embeddings.floats(i) for i in range(len(self.embeddings.vectors))]


@runtime_checkable
class EmbeddingProvider(Protocol):
    """One configured embedding model. `embed` raises the `ProviderError` taxonomy, like chat providers."""

    name: str
    on_device: bool

    async def embed(self, inputs: list[str], dimensions: int) -> Embeddings: ...

    async def aclose(self) -> None: ...


class NotAChatModel:
    """The chat half of the `Provider` interface for an embedding provider: the config never routes a chat
    request to an embedding model, and if anything did, this refuses it instead of answering nonsense."""

    name: str

    async def complete(self, request: Request) -> Completion:
        raise BadRequest(f"{self.name!r} is an embedding model: it does not answer chat requests")

    async def stream(self, request: Request) -> ChunkStream:
        raise BadRequest(f"{self.name!r} is an embedding model: it does not answer chat requests")
        yield Chunk()  # pragma: no cover - makes this an async generator
