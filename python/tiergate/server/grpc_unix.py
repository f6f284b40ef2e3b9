"""The gRPC listener on a unix socket (`listen.grpc: unix:PATH`), served by grpc.aio.

A unix socket is the one address the Rust listener (`server/grpc_server.py`) does not take: gRPC-core clients
(Python, C++, Ruby, C#, PHP) send the socket's percent-encoded path as `:authority` over a unix socket, which
hyper's HTTP/2 rejects as malformed (RST_STREAM PROTOCOL_ERROR; hyperium/h2#487, grpc/grpc#38142), so those
clients could not call a tonic server there. grpc.aio accepts them. Same servicer, same token rule (every
service but health), same health and reflection services; the relay costs what grpc.aio costs
(`benches/results/bench_streams.md`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tiergate.server.auth import BearerToken
from tiergate.server.grpc import TiergateServicer
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

__all__ = ["UnixGrpcServer"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Tiergate"].full_name
OPEN_SERVICES = (f"/{health.SERVICE_NAME}/",)
DENIED = "missing or wrong bearer token (metadata `authorization: Bearer <token>`)"


class UnixGrpcServer:
    """The interface of `GrpcServer` (start, set_serving, stop) over grpc.aio, for unix sockets."""

    def __init__(
        self,
        servicer: TiergateServicer,
        *,
        token: str | None = None,
        tls: tuple[str, str] | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._tls = tls
        self._server = grpc.aio.server(
            interceptors=[_AuthInterceptor(BearerToken(token))] if token is not None else None,
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", max_message_bytes)],
        )
        pb_grpc.add_TiergateServicer_to_server(servicer, self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self._started = False

    async def start(self, address: str) -> None:
        """Listens on `address` ("unix:PATH"). Raises OSError when it cannot be bound."""
        try:
            if self._tls is not None:
                cert, key = self._tls
                pair = (Path(key).read_bytes(), Path(cert).read_bytes())
                self._server.add_secure_port(address, grpc.ssl_server_credentials([pair]))
            else:
                self._server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address}: {exc}") from None
        await self._server.start()
        self._started = True

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)

    async def stop(self) -> None:
        """Cancels the calls still running and closes the listener."""
        if self._started:
            await self._server.stop(0)
            self._started = False


class _AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no stubs
    """Rejects calls without the bearer token, before the request message is even read."""

    def __init__(self, token: BearerToken) -> None:
        self._token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        metadata: tuple[tuple[str, Any], ...] = handler_call_details.invocation_metadata or ()
        offered = next((v for k, v in metadata if k == "authorization" and isinstance(v, str)), None)
        return handler if self._token.accepts(offered) else _denied(handler)


def _denied(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)

    async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)
        yield  # pragma: no cover - abort raises

    codecs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(deny, **codecs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(deny_stream, **codecs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(deny, **codecs)
    return grpc.stream_stream_rpc_method_handler(deny_stream, **codecs)
