"""The gRPC listener: HTTP/2, gRPC framing, the health service and reflection run in Rust (`tiergate._native.
GrpcFront`, tonic on a thread of its own); each call of `tiergate.v1.Tiergate` is handled here, on the event
loop, by the servicer in `server/grpc.py`.

The bearer token (`listen.auth_token`) is checked in Rust, for every service but health, before a call
reaches this loop. The Rust side queues events (a new call, a call whose client went away, a full stream
with room again) and writes one byte to a socket this loop watches; `_on_wake` takes them all at once. A
unary call is answered with one `finish_ok`; a streaming call's messages go into a bounded queue that the
HTTP/2 stream drains (`send` says when it is full, and `want_writable` asks to be told when it is not).
What the streams were sent during one turn of this loop leaves together at its end (`flush`): one wake-up
of the Rust thread per turn, not one per message (waking a thread cost more than relaying the chunk).

Why not grpc.aio: relaying one streamed chunk through it cost ~100 µs of CPU, most of it thread hand-offs
inside gRPC core (`benches/results/profile_stream_relay.md`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import DecodeError, Message

from tiergate._native import CallFinished, GrpcCall, GrpcFront
from tiergate.server.grpc import TiergateServicer
from tiergate.server.grpc_call import Aborted, CallContext, GrpcRelaySink
from tiergate.v1 import tiergate_pb2 as pb

__all__ = ["SERVICE_NAME", "GrpcServer"]

_log = logging.getLogger("tiergate.server")

SERVICE = pb.DESCRIPTOR.services_by_name["Tiergate"]
SERVICE_NAME = SERVICE.full_name
# Messages a streaming call may have queued for a slow client before the handler waits.
STREAM_CAPACITY = 64
# After the handlers have ended, how long answers already given get to reach their clients.
FLUSH_S = 1.0

_CALL, _CANCELLED, _WRITABLE = 0, 1, 2
_SENT, _FULL, _CLOSED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Method:
    handler: Callable[[Any, CallContext], Any]
    request_type: type[Message]
    streams: bool


def _descriptor_set(file: FileDescriptor) -> bytes:
    """The encoded FileDescriptorSet of `file` and everything it imports, for the reflection service."""
    found = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(descriptor: FileDescriptor) -> None:
        if descriptor.name in seen:
            return
        seen.add(descriptor.name)
        for dependency in descriptor.dependencies:
            add(dependency)
        descriptor.CopyToProto(found.file.add())

    add(file)
    return found.SerializeToString()


def _code(code: grpc.StatusCode) -> int:
    value: int = code.value[0]
    return value


class GrpcServer:
    def __init__(
        self,
        servicer: TiergateServicer,
        *,
        token: str | None = None,
        tls: tuple[str, str] | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        max_streams_per_connection: int = 1024,
    ) -> None:
        self._token = token
        self._max_streams = max_streams_per_connection
        self._tls = tls
        self._max_message_bytes = max_message_bytes
        self._methods = {
            f"/{SERVICE_NAME}/{method.name}": _Method(
                handler=getattr(servicer, method.name),
                request_type=getattr(pb, method.input_type.name),
                streams=method.server_streaming,
            )
            for method in SERVICE.methods
        }
        self._front: GrpcFront | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._writable: dict[int, asyncio.Future[None]] = {}
        self._stopping = False
        self._flush_due = False

    async def start(self, address: str) -> int | None:
        """Listens on `address` ("HOST:PORT", port 0 for any); returns the port bound. (A unix socket works
        too, but gRPC-core clients cannot call it there: `tiergate serve` uses `UnixGrpcServer` for those.)

        Raises OSError when the address cannot be bound, ValueError for a malformed address or TLS files.
        """
        tls = None
        if self._tls is not None:
            cert, key = self._tls
            tls = (Path(cert).read_bytes(), Path(key).read_bytes())
        front = GrpcFront(
            address,
            [(path, method.streams) for path, method in self._methods.items()],
            _descriptor_set(pb.DESCRIPTOR),
            self._max_message_bytes,
            stream_capacity=STREAM_CAPACITY,
            tls=tls,
            token=self._token,
            max_streams_per_connection=self._max_streams,
        )
        self._front = front
        asyncio.get_running_loop().add_reader(front.fileno(), self._on_wake)
        return front.port

    async def set_serving(self, serving: bool) -> None:
        """The health service's answer, for the server ("") and for `tiergate.v1.Tiergate`."""
        if self._front is not None:
            for name in ("", SERVICE_NAME):
                self._front.set_health(name, serving)

    async def stop(self) -> None:
        """Cancels the calls still running (their clients get UNAVAILABLE), then closes the listener."""
        front = self._front
        if front is None:
            return
        self._stopping = True
        asyncio.get_running_loop().remove_reader(front.fileno())
        for kind, _, call in front.take_events():  # calls that arrived as the server stopped
            if kind == _CALL and call is not None:
                _finish_quietly(call, grpc.StatusCode.UNAVAILABLE, "the sidecar is shutting down")
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        front.flush()  # the streams' final statuses
        await asyncio.to_thread(front.stop, FLUSH_S)
        self._front = None

    def _flush_soon(self) -> None:
        """Messages and ends queued now leave together, once this turn of the loop is over."""
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self._front is not None:
            self._front.flush()

    def _on_wake(self) -> None:
        front = self._front
        if front is None:
            return
        try:
            os.read(front.fileno(), 4096)
        except BlockingIOError:
            pass  # a wake-up byte already read with an earlier batch
        for kind, call_id, call in front.take_events():
            if kind == _CALL and call is not None:
                self._tasks[call_id] = asyncio.create_task(self._run(call))
            elif kind == _CANCELLED:
                task = self._tasks.get(call_id)
                if task is not None:
                    task.cancel()
            elif kind == _WRITABLE:
                waiter = self._writable.pop(call_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    async def _run(self, call: GrpcCall) -> None:
        try:
            await self._serve(call)
        except Aborted as aborted:
            call.finish_error(_code(aborted.code), aborted.details, list(aborted.trailers))
        except asyncio.CancelledError:
            # The client went away (nobody reads this) or the server is stopping.
            code, details = (
                (grpc.StatusCode.UNAVAILABLE, "the sidecar is shutting down")
                if self._stopping
                else (grpc.StatusCode.CANCELLED, "cancelled")
            )
            _finish_quietly(call, code, details)
        except Exception as exc:  # noqa: BLE001 - a bug in tiergate: the client gets INTERNAL, the log its traceback
            _log.exception("unhandled %s in %s", type(exc).__name__, call.method)
            _finish_quietly(call, grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__})")
        finally:
            self._tasks.pop(call.id, None)
            self._writable.pop(call.id, None)
            if call.streaming:
                self._flush_soon()

    async def _serve(self, call: GrpcCall) -> None:
        method = self._methods[call.method]
        try:
            request = method.request_type.FromString(call.request)
        except DecodeError:
            raise Aborted(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {method.request_type.__name__}",
                (),
            ) from None
        if not method.streams:
            context = CallContext(call)
            answer: Awaitable[Message] = method.handler(request, context)
            call.finish_ok((await answer).SerializeToString())
            return
        context = CallContext(call, GrpcRelaySink(call, self._flush_soon, self._room))
        messages: AsyncGenerator[Message, None] = method.handler(request, context)
        send = call.send
        try:
            async for message in messages:
                data = message.SerializeToString()
                sent = send(data)
                self._flush_soon()
                while sent == _FULL:
                    await self._room(call)
                    sent = send(data)
                if sent == _CLOSED:
                    return  # the client is gone; the cancellation event follows
        finally:
            await messages.aclose()  # cancelled while waiting for room: the handler's clean-up runs now
        call.finish_ok()

    async def _room(self, call: GrpcCall) -> None:
        """Waits until a full stream's channel has room (the client read some)."""
        waiter = asyncio.get_running_loop().create_future()
        self._writable[call.id] = waiter
        if call.want_writable():
            self._writable.pop(call.id, None)
            return
        await waiter


def _finish_quietly(call: GrpcCall, code: grpc.StatusCode, details: str) -> None:
    """Finishes a call that may already be finished (it was cancelled after its last answer)."""
    try:
        call.finish_error(_code(code), details, [])
    except CallFinished:
        pass  # it was: the client has its answer
