"""Request-level errors: what the application sees when tiergate cannot answer.

Each maps to exactly one gRPC status code (the mapping lives in `server/status.py`)::

    TiergateError
    ├── InvalidRequest          INVALID_ARGUMENT     malformed request, unknown encoding, bad json_schema
    ├── UnknownTask             NOT_FOUND            no route of that name ("" means `default`)
    ├── FeedbackNotFound        NOT_FOUND            feedback for a request id unknown, expired or rated
    ├── SensitiveDataBlocked    FAILED_PRECONDITION  restricted data and no on-device model can serve it
    ├── PolicyBlocked           FAILED_PRECONDITION  the tenant's or request's residency / approval policy
    │                                                leaves no model of the route
    ├── LimitExceeded           RESOURCE_EXHAUSTED   budget, rate limit, concurrency cap, local queue full
    ├── DeadlineExceeded        DEADLINE_EXCEEDED    the request's time budget ran out
    ├── AllAttemptsFailed       UNAVAILABLE          every candidate failed; the message lists each attempt
    ├── StreamInterrupted       UNAVAILABLE          the serving model failed after text reached the client
    ├── StateUnavailable        UNAVAILABLE          the fleet state store (Redis) is unreachable and
    │                                                `state_failure: closed` says not to serve without it
    └── ShuttingDown            UNAVAILABLE          the sidecar is stopping and takes no new requests

A `tiergate.Client` adds `TransportError` (with `ConnectError` and `AuthenticationError`) for calls that fail
outside the request path — the sidecar unreachable, a missing token: see `sdk/transport_errors.py`.

Provider-level failures (`providers.base.ProviderError`) never reach the client directly: dispatch records
them as attempts and raises one of these. Every error carries the Decision made so far, and a short stable
`kind` for decision records and metrics.
"""

from __future__ import annotations

from typing import ClassVar

from tiergate.request import Decision


class TiergateError(Exception):
    kind: ClassVar[str] = "internal"

    def __init__(self, message: str, decision: Decision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


class InvalidRequest(TiergateError):
    kind = "invalid_request"


class UnknownTask(TiergateError):
    kind = "unknown_task"


class FeedbackNotFound(TiergateError):
    """Feedback names a request id that was never served here, has expired or was already rated."""

    kind = "feedback_not_found"


class SensitiveDataBlocked(TiergateError):
    kind = "sensitive_data_blocked"


class PolicyBlocked(TiergateError):
    """Residency or approval policy (allowed regions, approved models, forbidden tags) leaves no model."""

    kind = "policy_blocked"


class LimitExceeded(TiergateError):
    """`limit` names what was exceeded, e.g. "usd_per_day" or "requests_per_minute"."""

    kind = "limit_exceeded"

    def __init__(self, message: str, decision: Decision | None = None, *, limit: str = "") -> None:
        super().__init__(message, decision)
        self.limit = limit


class DeadlineExceeded(TiergateError):
    kind = "deadline_exceeded"


class AllAttemptsFailed(TiergateError):
    kind = "all_attempts_failed"


class StreamInterrupted(TiergateError):
    kind = "stream_interrupted"


class StateUnavailable(TiergateError):
    kind = "state_unavailable"


class ShuttingDown(TiergateError):
    kind = "shutting_down"


class StartupError(RuntimeError):
    """The sidecar (or an in-process Router) cannot start: a model file missing, corrupt or rejected. Not a
    request error: `tiergate serve` prints it and exits 1."""
