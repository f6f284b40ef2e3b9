"""One gRPC call as its handler sees it: the part of `grpc.aio.ServicerContext` the servicer uses."""

from __future__ import annotations

import time
from typing import NoReturn

import grpc

from tiergate._native import GrpcCall

__all__ = ["Aborted", "CallContext", "Metadata"]

Metadata = tuple[tuple[str, str | bytes], ...]


class Aborted(Exception):
    """Raised by `CallContext.abort`: ends the handler; the call is finished with this status."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: Metadata) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailers = trailers


class CallContext:
    """What a handler may ask of its call: its deadline, its metadata, and to end it with a status."""

    __slots__ = ("_call", "_deadline")

    def __init__(self, call: GrpcCall) -> None:
        self._call = call
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
