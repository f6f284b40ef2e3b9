"""The one place request errors become gRPC status codes."""

from __future__ import annotations

import grpc

from tiergate import errors

STATUS: dict[type[errors.TiergateError], grpc.StatusCode] = {
    errors.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UnknownTask: grpc.StatusCode.NOT_FOUND,
    errors.FeedbackNotFound: grpc.StatusCode.NOT_FOUND,
    errors.SensitiveDataBlocked: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PolicyBlocked: grpc.StatusCode.FAILED_PRECONDITION,
    errors.LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.AllAttemptsFailed: grpc.StatusCode.UNAVAILABLE,
    errors.StreamInterrupted: grpc.StatusCode.UNAVAILABLE,
    errors.StateUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.ShuttingDown: grpc.StatusCode.UNAVAILABLE,
}


def status_of(exc: errors.TiergateError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        code = STATUS.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL
