"""The provider interface and the error taxonomy every provider maps its failures into.

Dispatch decides what to do next from the exception *type* only, never its message::

    ProviderError
    ├── RetryableError                 another attempt (same model after backoff, or the next model) may work
    │   ├── ProviderTimeout            no answer in time (connect, read, or our own deadline)
    │   ├── ProviderConnectionError    refused, reset, dropped mid-stream
    │   │   ├── LocalWorkerCrashed     the on-device model's worker process died during this request
    │   │   └── LocalWorkerDown        its worker process is not serving (restarting, or cannot load)
    │   ├── RateLimited                429 (carries retry_after_s when the provider sent one)
    │   ├── ServerError                5xx, 408
    │   ├── Overloaded                 Anthropic 529 / overloaded_error
    │   ├── MalformedResponse          the provider answered something we cannot parse
    │   └── LocalQueueFull             the on-device model's queue is full
    └── NonRetryableError              the same request will fail the same way on this model
        ├── BadRequest                 400, 422
        ├── AuthenticationError        401
        ├── PermissionDenied           403
        ├── ModelNotFound              404
        ├── RequestTooLarge            413
        └── ContentPolicy              refused by the provider's content filter

Error messages never carry API keys or prompt text: providers build them from status codes and the
provider's own error type/message only.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol, TypeAlias, runtime_checkable

from tiergate.relay import RelaySink
from tiergate.request import Chunk, Completion, Request

# A provider's stream: chunks out; in, after a chunk, the relay sink that may take its plain text deltas
# from then on (`relay.py`), which a provider that cannot relay ignores.
ChunkStream: TypeAlias = AsyncGenerator[Chunk, RelaySink | None]


class ProviderError(Exception):
    """Base of every provider failure. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def kind(self) -> str:
        """Short, stable name for decision records and metrics (e.g. "rate_limited")."""
        return _KIND_NAMES.get(type(self), type(self).__name__)


class RetryableError(ProviderError):
    """Another attempt may succeed."""


class ProviderTimeout(RetryableError):
    pass


class ProviderConnectionError(RetryableError):
    pass


class RateLimited(RetryableError):
    def __init__(self, message: str, *, status: int | None = 429, retry_after_s: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class ServerError(RetryableError):
    pass


class Overloaded(RetryableError):
    pass


class MalformedResponse(RetryableError):
    pass


class LocalQueueFull(RetryableError):
    pass


class LocalWorkerCrashed(ProviderConnectionError):
    """The worker process serving an on-device model died while this request ran (a native crash, a kill)."""


class LocalWorkerDown(ProviderConnectionError):
    """The worker process of an on-device model is not serving: starting, restarting, or unable to load."""


class NonRetryableError(ProviderError):
    """The same request will fail the same way on this model: do not retry it there."""


class BadRequest(NonRetryableError):
    pass


class AuthenticationError(NonRetryableError):
    pass


class PermissionDenied(NonRetryableError):
    pass


class ModelNotFound(NonRetryableError):
    pass


class RequestTooLarge(NonRetryableError):
    pass


class ContentPolicy(NonRetryableError):
    pass


_KIND_NAMES: dict[type[ProviderError], str] = {
    ProviderTimeout: "timeout",
    ProviderConnectionError: "connection_error",
    RateLimited: "rate_limited",
    ServerError: "server_error",
    Overloaded: "overloaded",
    MalformedResponse: "malformed_response",
    LocalQueueFull: "local_queue_full",
    LocalWorkerCrashed: "local_worker_crashed",
    LocalWorkerDown: "local_worker_down",
    BadRequest: "bad_request",
    AuthenticationError: "authentication_error",
    PermissionDenied: "permission_denied",
    ModelNotFound: "model_not_found",
    RequestTooLarge: "request_too_large",
    ContentPolicy: "content_policy",
}


_KINDS: dict[str, type[ProviderError]] = {kind: cls for cls, kind in _KIND_NAMES.items()}


def error_of_kind(kind: str, message: str) -> ProviderError:
    """The error a `kind` names (as `ProviderError.kind` gave it), e.g. one sent by a worker process.

    An unknown kind is a ServerError: something failed, and the name it had is not ours.
    """
    return _KINDS.get(kind, ServerError)(message)


@runtime_checkable
class Provider(Protocol):
    """One configured model. `name` is the model's name in the config, not the upstream model id.

    `stream` yields text chunks as they arrive; the last chunk carries usage and finish_reason. What is sent
    into it (`asend`) is a relay sink or None; a provider that cannot relay ignores it.
    Cancelling the consuming task (or closing the generator: `aclose()`, `contextlib.aclosing`) must release
    the upstream at once: the HTTP stream is closed, a local generation stops at its next token.
    """

    name: str
    on_device: bool

    async def complete(self, request: Request) -> Completion: ...

    def stream(self, request: Request) -> ChunkStream: ...

    async def aclose(self) -> None: ...
