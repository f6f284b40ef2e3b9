"""Request-level errors: what the application sees when tiergate cannot answer.

Each maps to exactly one gRPC status code (the mapping lives in `server/status.py`)::

    TiergateError
    ├── InvalidRequest          INVALID_ARGUMENT     malformed request, unknown encoding, bad json_schema
    ├── UnknownTask             NOT_FOUND            no route of that name and no `default` route
    ├── SensitiveDataBlocked    FAILED_PRECONDITION  restricted data and no on-device model can serve it
    ├── LimitExceeded           RESOURCE_EXHAUSTED   budget, rate limit, concurrency cap, local queue full
    ├── DeadlineExceeded        DEADLINE_EXCEEDED    the request's time budget ran out
    ├── AllAttemptsFailed       UNAVAILABLE          every candidate failed; the message lists each attempt
    └── StreamInterrupted       UNAVAILABLE          the serving model failed after text reached the client

Provider-level failures (`providers.base.ProviderError`) never reach the client directly: dispatch records
them as attempts and raises one of these. Every error carries the Decision made so far.
"""

from __future__ import annotations

from tiergate.request import Decision


class TiergateError(Exception):
    def __init__(self, message: str, decision: Decision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


class InvalidRequest(TiergateError):
    pass


class UnknownTask(TiergateError):
    pass


class SensitiveDataBlocked(TiergateError):
    pass


class LimitExceeded(TiergateError):
    pass


class DeadlineExceeded(TiergateError):
    pass


class AllAttemptsFailed(TiergateError):
    pass


class StreamInterrupted(TiergateError):
    pass
