"""`tiergate.AsyncClient` and `tiergate.Client`: a running sidecar, over gRPC, with typed results.

    with tiergate.Client("127.0.0.1:50051") as client:
        response = client.complete("Say hello", task="default")
        print(response.text, response.decision.served_by)

Requests and answers are translated by `wire` (the same functions the server uses) and failures become the
typed errors of `tiergate.errors` (`transport_errors`), carrying the Decision the server sent with them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import grpc

from tiergate import wire
from tiergate.embeddings.types import EmbedAnswer, EmbedRequest
from tiergate.embeddings.wire import embed_request_to_proto, embed_response_from_proto
from tiergate.policy.canary import CanaryState
from tiergate.request import Chunk, Decision, Request, Response, SidecarStatus
from tiergate.sdk.api import AsyncAPI, TokenCount
from tiergate.sdk.sync import SyncAPI, blocking
from tiergate.sdk.transport_errors import error_from_rpc
from tiergate.telemetry.trace_context import inject_current
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
ADDRESS_ENV = "TIERGATE_ADDRESS"
TOKEN_ENV = "TIERGATE_TOKEN"
TLS_CA_ENV = "TIERGATE_TLS_CA"
DEFAULT_TIMEOUT_S = 60.0


class AsyncClient(AsyncAPI):
    """A tiergate sidecar over gRPC, from async code. Use as `async with`, or call `aclose()` when done.

    Args:
        address: `host:port` or `unix:/path/to.sock` (default: `$TIERGATE_ADDRESS`, else 127.0.0.1:50051).
        token: sent as `authorization: Bearer <token>` with every call (default: `$TIERGATE_TOKEN`; none
            when unset). Never shown in a repr or an error.
        tls: use TLS, trusting the system's CA certificates.
        root_certificates: a CA certificate (PEM file) to trust; implies TLS (default: `$TIERGATE_TLS_CA`).
        timeout: the default deadline of each call in seconds (None: none). The deadline is the request's
            whole latency budget, fallbacks included.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: str | os.PathLike[str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(timeout=timeout)
        self.address = address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        ca = root_certificates if root_certificates is not None else os.environ.get(TLS_CA_ENV) or None
        self._credentials: Any = None
        if tls or ca is not None:
            # Read now: a wrong path is the caller's mistake, reported here rather than at the first call.
            pem = Path(ca).read_bytes() if ca is not None else None
            self._credentials = grpc.ssl_channel_credentials(root_certificates=pem)
        self._channel: Any = None
        self._stub: Any = None
        self._closed = False

    def __repr__(self) -> str:
        tls, token = self._credentials is not None, "set" if self._metadata else None
        return f"{type(self).__name__}({self.address!r}, tls={tls}, token={token})"

    async def _open(self) -> None:
        self._rpc()

    def _rpc(self) -> Any:
        """The stub, on a channel made on first use (grpc.aio channels belong to the loop they start on)."""
        if self._stub is None:
            if self._closed:
                raise RuntimeError("this tiergate client is closed")
            if self._credentials is not None:
                self._channel = grpc.aio.secure_channel(self.address, self._credentials)
            else:
                self._channel = grpc.aio.insecure_channel(self.address)
            self._stub = pb_grpc.TiergateStub(self._channel)  # type: ignore[no-untyped-call]  # generated
        return self._stub

    async def aclose(self) -> None:
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    async def _unary(self, method: Any, message: Any, timeout: float | None) -> Any:
        """One unary call with the token; a failure becomes its typed error."""
        try:
            return await method(message, timeout=timeout, metadata=self._metadata + inject_current())
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    async def _complete(self, request: Request, timeout: float | None) -> Response:
        reply = await self._unary(self._rpc().Complete, wire.request_to_proto(request), timeout)
        return wire.response_from_proto(reply)

    async def _stream(self, request: Request, timeout: float | None) -> AsyncGenerator[Chunk, None]:
        call = self._rpc().StreamComplete(
            wire.request_to_proto(request), timeout=timeout, metadata=self._metadata + inject_current()
        )
        try:
            async for msg in call:
                yield wire.chunk_from_proto(msg)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        finally:
            call.cancel()  # the caller stopped early: the sidecar stops generating too

    async def _explain(self, request: Request, timeout: float | None) -> Decision:
        reply = await self._unary(self._rpc().Explain, wire.request_to_proto(request), timeout)
        return wire.decision_from_proto(reply)

    async def _count_tokens(self, text: str, encoding: str, model: str, timeout: float | None) -> TokenCount:
        message = pb.CountTokensRequest(text=text, encoding=encoding, model=model)
        reply = await self._unary(self._rpc().CountTokens, message, timeout)
        return TokenCount(reply.tokens, reply.encoding)

    async def _status(self, timeout: float | None) -> SidecarStatus:
        reply = await self._unary(self._rpc().Status, pb.StatusRequest(), timeout)
        return wire.status_from_proto(reply)

    async def _feedback(
        self, request_id: str, score: float | None, label: str, timeout: float | None
    ) -> tuple[str, str, str]:
        message = pb.FeedbackRequest(request_id=request_id, score=score, label=label)
        reply = await self._unary(self._rpc().Feedback, message, timeout)
        return reply.route, reply.model, reply.arm

    async def _canary(self, route: str, percent: float | None, timeout: float | None) -> CanaryState:
        reply = await self._unary(self._rpc().Canary, pb.CanaryRequest(route=route, percent=percent), timeout)
        return wire.canary_from_proto(reply)

    async def _embed(self, request: EmbedRequest, timeout: float | None) -> EmbedAnswer:
        reply = await self._unary(self._rpc().Embed, embed_request_to_proto(request), timeout)
        return embed_response_from_proto(reply)

    async def health(self, *, timeout: float | None = None) -> str:
        """The sidecar's gRPC health status: "SERVING" once it is ready, "NOT_SERVING" while it drains."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self._rpc()
        check = health_pb2_grpc.HealthStub(self._channel).Check
        reply = await self._unary(check, health_pb2.HealthCheckRequest(), self._timeout(timeout))
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


class Client(SyncAPI[AsyncClient]):
    """A tiergate sidecar over gRPC, blocking: `AsyncClient`'s methods and results, without `await`.

    Use as `with`, or call `close()` when done. Args: as `AsyncClient`. Safe to share between threads.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: str | os.PathLike[str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        client = AsyncClient(
            address, token=token, tls=tls, root_certificates=root_certificates, timeout=timeout
        )
        super().__init__(client, what="client")

    health = blocking(AsyncClient.health)

    @property
    def address(self) -> str:
        return self._inner.address

    def __repr__(self) -> str:
        return repr(self._inner).replace("AsyncClient", "Client", 1)
