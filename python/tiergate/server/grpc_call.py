"""One gRPC call as its handler sees it: the part of `grpc.aio.ServicerContext` the servicer uses, and for a
streaming call the relay sink that puts text deltas straight into its queue (`relay.py`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

import grpc

from tiergate._native import GrpcCall, SseRelay

__all__ = ["Aborted", "CallContext", "GrpcRelaySink", "Metadata"]

Metadata = tuple[tuple[str, str | bytes], ...]


class Aborted(Exception):
    """Raised by `CallContext.abort`: ends the handler; the call is finished with this status."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: Metadata) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailers = trailers


class GrpcRelaySink:
    """A streaming call's queue as a relay sink: text deltas become `CompleteChunk` messages natively.

    `flush_soon` and `room` are the server's: messages queued during a turn of the loop leave together at its
    end; a full queue waits for the client to read.
    """

    __slots__ = ("_call", "_flush_soon", "_room")

    def __init__(
        self, call: GrpcCall, flush_soon: Callable[[], None], room: Callable[[GrpcCall], Awaitable[None]]
    ) -> None:
        self._call = call
        self._flush_soon = flush_soon
        self._room = room

    def relay(self, events: SseRelay) -> int:
        status = events.relay_grpc(self._call)
        self._flush_soon()
        return status

    async def room(self) -> None:
        await self._room(self._call)


class CallContext:
    """What a handler may ask of its call: its deadline, its metadata, and to end it with a status;
    `relay_sink` for a streaming call."""

    __slots__ = ("_call", "_deadline", "relay_sink")

    def __init__(self, call: GrpcCall, relay_sink: GrpcRelaySink | None = None) -> None:
        self._call = call
        self.relay_sink = relay_sink
        timeout = call.timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)

    def invocation_metadata(self) -> Metadata:
        return tuple(self._call.metadata)

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> NoReturn:
        raise Aborted(code, details, tuple(trailing_metadata))
