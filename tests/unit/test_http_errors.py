"""http_errors.py: every HTTP failure lands on the right type of the taxonomy, with a safe message."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tiergate.providers.base import (
    AuthenticationError,
    BadRequest,
    ContentPolicy,
    MalformedResponse,
    ModelNotFound,
    NonRetryableError,
    Overloaded,
    PermissionDenied,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RequestTooLarge,
    RetryableError,
    ServerError,
)
from tiergate.providers.http_errors import MAX_DETAIL_CHARS, ErrorMapper, parse_retry_after, redact

SECRET = "my-custom-upstream-key-0123"
errors = ErrorMapper("mini", SECRET)


def openai_error(message: str = "boom", err_type: str = "server_error", code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": err_type, "param": None, "code": code}})


def anthropic_error(err_type: str, message: str = "boom") -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": err_type, "message": message}})


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, openai_error(err_type="invalid_request_error"), BadRequest),
        (422, b'{"detail": "bad"}', BadRequest),
        (400, openai_error(err_type="invalid_request_error", code="content_policy_violation"), ContentPolicy),
        (400, openai_error(err_type="invalid_request_error", code="content_filter"), ContentPolicy),
        (401, openai_error(err_type="invalid_request_error", code="invalid_api_key"), AuthenticationError),
        (403, anthropic_error("permission_error"), PermissionDenied),
        (404, anthropic_error("not_found_error"), ModelNotFound),
        (408, b"", ServerError),
        (413, anthropic_error("request_too_large"), RequestTooLarge),
        (429, anthropic_error("rate_limit_error"), RateLimited),
        (500, anthropic_error("api_error"), ServerError),
        (502, b"<html>bad gateway</html>", ServerError),
        (503, b"", ServerError),
        (504, b"", ServerError),
        (529, anthropic_error("overloaded_error"), Overloaded),
        (418, b"", BadRequest),  # an unknown 4xx: the same request fails the same way
        (302, b"", MalformedResponse),  # a redirect where an answer was due
    ],
)
def test_status_maps_to_type(status: int, body: bytes, expected: type[ProviderError]) -> None:
    err = errors.from_response(status, {}, body)
    assert type(err) is expected
    assert err.status == status
    assert f"HTTP {status}" in str(err)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (403, False), (404, False), (413, False), (408, True), (429, True)]
    + [(s, True) for s in (500, 502, 503, 529)],
)
def test_retryability_follows_the_status(status: int, retryable: bool) -> None:
    err = errors.from_response(status, {}, b"")
    assert isinstance(err, RetryableError) is retryable
    assert isinstance(err, NonRetryableError) is not retryable


NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the finer header wins
        ({"retry-after-ms": "junk", "retry-after": "3"}, 3.0),
        ({"retry-after": "Tue, 14 Nov 2023 22:13:30 GMT"}, 10.0),
        ({"retry-after": "Tue, 14 Nov 2023 22:13:00 GMT"}, 0.0),  # in the past: retry now
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after-ms": "nan"}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected
    err = errors.from_response(429, httpx.Headers(headers), b"", now=NOW)
    assert isinstance(err, RateLimited)
    assert err.retry_after_s == expected


def test_retry_after_header_names_are_case_insensitive_with_httpx_headers() -> None:
    err = errors.from_response(429, httpx.Headers({"Retry-After": "7"}), b"")
    assert isinstance(err, RateLimited) and err.retry_after_s == 7.0


def test_message_carries_provider_type_and_message_but_never_the_key() -> None:
    body = openai_error(
        f"Incorrect API key provided: {SECRET}. Also sk-proj-abcdefghijklmnop", "auth", "bad_key"
    )
    err = errors.from_response(401, {}, body)
    text = str(err)
    assert text.startswith("mini: HTTP 401 [auth/bad_key] Incorrect API key provided")
    assert SECRET not in text
    assert "abcdefghijklmnop" not in text
    assert "sk-pro***" in text


def test_long_provider_messages_are_truncated() -> None:
    err = errors.from_response(400, {}, openai_error("x" * 5000))
    detail = str(err).split("] ", 1)[1]
    assert len(detail) == MAX_DETAIL_CHARS
    assert detail.endswith("…")


def test_unparseable_error_body_still_maps_by_status() -> None:
    err = errors.from_response(503, {}, b"upstream connect error or disconnect/reset before headers")
    assert type(err) is ServerError
    assert str(err) == "mini: HTTP 503"  # the raw body is not echoed: it could be anything


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"type": "overloaded_error", "message": "Overloaded"}, Overloaded),
        ({"type": "rate_limit_error", "message": "slow down"}, RateLimited),
        ({"type": "api_error", "message": "internal"}, ServerError),
        ({"type": "server_error", "message": "internal"}, ServerError),
        ({"type": "timeout_error", "message": "took too long"}, ProviderTimeout),
        ({"type": "invalid_request_error", "message": "bad"}, BadRequest),
        ({"type": "invalid_request_error", "code": "content_policy_violation"}, ContentPolicy),
        ({"type": "authentication_error"}, AuthenticationError),
        ({"type": "something_new"}, ServerError),
        ("not an object", ServerError),
        (None, ServerError),
    ],
)
def test_error_objects_inside_a_stream(error: object, expected: type[ProviderError]) -> None:
    err = errors.from_error_object(error)
    assert type(err) is expected
    assert err.status is None
    assert "error in stream" in str(err)


def _request() -> httpx.Request:
    return httpx.Request("POST", "https://api.test/v1/chat/completions")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectTimeout("connect timed out", request=_request()), ProviderTimeout),
        (httpx.ReadTimeout("read timed out", request=_request()), ProviderTimeout),
        (httpx.WriteTimeout("write timed out", request=_request()), ProviderTimeout),
        (httpx.PoolTimeout("no connection free", request=_request()), ProviderTimeout),
        (httpx.ConnectError("[Errno 111] Connection refused", request=_request()), ProviderConnectionError),
        (
            httpx.ReadError("[Errno 104] Connection reset by peer", request=_request()),
            ProviderConnectionError,
        ),
        (httpx.WriteError("broken pipe", request=_request()), ProviderConnectionError),
        (
            httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
            ProviderConnectionError,
        ),
        (httpx.DecodingError("bad gzip"), MalformedResponse),
    ],
)
def test_httpx_exceptions(exc: httpx.HTTPError, expected: type[ProviderError]) -> None:
    err = errors.from_exception(exc)
    assert type(err) is expected
    assert type(exc).__name__ in str(err)


def test_stream_ended_and_malformed_are_their_own_kinds() -> None:
    assert errors.stream_ended().kind == "connection_error"
    assert errors.malformed("no choices").kind == "malformed_response"
    assert errors.timeout(1.5).kind == "timeout"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-abcdefghijklmnop here", "key sk-abc*** here"),
        ("sk-ant-api03-AAAAAAAAAAAAAAAA", "sk-ant-api***"),
        ("sk-proj-****************abcd", "sk-pro***"),
        ("no keys at all, sk- alone", "no keys at all, sk- alone"),
        ("proxy http://user:pa55w0rd@proxy:3128 failed", "proxy http://user:***@proxy:3128 failed"),
        ("url='http://proxy:3128' ok", "url='http://proxy:3128' ok"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
