"""How a failed gRPC call becomes a `tiergate.errors` exception on the client side: the inverse of
`server/status.py`, derived from its table.

The server sends, with the status, the error's `kind` (telling apart the errors that share a status code),
the limit hit and the Decision so far (`wire.error_trailers`). A failure that tiergate's request path did not
raise — the sidecar unreachable, a missing token, a gRPC-level error — has no kind and becomes one of the
errors below, which extend the tree of `tiergate.errors`::

    TiergateError
    └── TransportError         the call failed outside tiergate's request path; `code` is the gRPC status
        ├── ConnectError       UNAVAILABLE: the sidecar could not be reached (address, TLS handshake)
        └── AuthenticationError  UNAUTHENTICATED, PERMISSION_DENIED: missing or wrong token
"""

from __future__ import annotations

from typing import Any

import grpc

from tiergate import wire
from tiergate.errors import LimitExceeded, TiergateError
from tiergate.request import Decision
from tiergate.server.status import STATUS, status_of


class TransportError(TiergateError):
    kind = "transport"

    def __init__(self, message: str, decision: Decision | None = None, *, code: str = "UNKNOWN") -> None:
        super().__init__(message, decision)
        self.code = code


class ConnectError(TransportError):
    kind = "connect"


class AuthenticationError(TransportError):
    kind = "authentication"


_BY_KIND: dict[str, type[TiergateError]] = {cls.kind: cls for cls in STATUS}
# A status code that only one error maps to names it even without a kind (the client's own deadline).
_BY_CODE: dict[Any, type[TiergateError]] = {
    code: cls for cls, code in STATUS.items() if list(STATUS.values()).count(code) == 1
}
_TRANSPORT: dict[Any, type[TransportError]] = {
    grpc.StatusCode.UNAVAILABLE: ConnectError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: AuthenticationError,
}


def error_from_rpc(exc: grpc.RpcError) -> TiergateError:
    """The typed error for a failed call (a `grpc.RpcError` that is also a `grpc.Call`)."""
    code = exc.code()
    details = exc.details() or code.name
    kind, limit, decision = wire.error_details(exc.trailing_metadata() or ())
    cls = _BY_KIND.get(kind) or _BY_CODE.get(code)
    if cls is LimitExceeded:
        return LimitExceeded(details, decision, limit=limit)
    if cls is not None:
        return cls(details, decision)
    return _TRANSPORT.get(code, TransportError)(f"{code.name}: {details}", decision, code=code.name)


def status_name(exc: TiergateError) -> str:
    """The gRPC status name an error came with (or, from the in-process Router, would have)."""
    if isinstance(exc, TransportError):
        return exc.code
    return str(status_of(exc).name)
