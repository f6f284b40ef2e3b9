"""Bearer-token auth (`listen.auth_token`) for both listeners, and the loopback warning.

gRPC: every call but the health service's must carry metadata `authorization: Bearer <token>`, else
UNAUTHENTICATED (probes, such as Kubernetes' gRPC probe, cannot send metadata). HTTP: `/v1/*` and `/metrics`
need the `Authorization: Bearer <token>` header, else 401; `/healthz` and `/readyz` stay open. Tokens are
compared in constant time and never appear in a log line or an error.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from grpc_health.v1 import health

OPEN_GRPC_SERVICES = (f"/{health.SERVICE_NAME}/",)
OPEN_HTTP_PATHS = frozenset({"/healthz", "/readyz"})


class BearerToken:
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def __repr__(self) -> str:
        return "BearerToken(***)"

    def accepts(self, authorization: str | None) -> bool:
        """Whether an `authorization` value carries the token (the scheme's case does not matter)."""
        if authorization is None:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        offered = f"{'Bearer' if scheme.lower() == 'bearer' else scheme} {credentials.strip()}"
        return hmac.compare_digest(offered.encode(), self._expected)

    def http_allows(self, path: str, headers: Mapping[str, str]) -> bool:
        return path in OPEN_HTTP_PATHS or self.accepts(headers.get("authorization"))


class GrpcAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no stubs
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
        if handler is None or method.startswith(OPEN_GRPC_SERVICES):
            return handler
        metadata: tuple[tuple[str, Any], ...] = handler_call_details.invocation_metadata or ()
        offered = next((v for k, v in metadata if k == "authorization" and isinstance(v, str)), None)
        if self._token.accepts(offered):
            return handler
        return _denied(handler, "missing or wrong bearer token (metadata `authorization: Bearer <token>`)")


def _denied(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
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


def is_loopback(address: str) -> bool:
    """Whether a listen address ("host:port" or "unix:PATH") is reachable from this machine only."""
    if address.startswith("unix:"):
        return True
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, assume it is reachable
