"""The one place where HTTP failures become the error taxonomy of `base`.

Every hosted provider sends its failures through here: the HTTP client's exceptions (`from_exception`:
aiohttp's, or httpx's for an httpx client), non-2xx responses (`from_response`) and error objects that
arrive inside a 200 stream (`from_error_object`).

    httpx.TimeoutException (connect, read, write, pool),    -> ProviderTimeout
      aiohttp.ServerTimeoutError, ConnectionTimeoutError
    httpx.NetworkError, RemoteProtocolError, other transport -> ProviderConnectionError
      aiohttp.ClientConnectionError, ClientPayloadError, proxy errors, other ClientErrors
    httpx.DecodingError, unparseable JSON or SSE            -> MalformedResponse
    408, 5xx                                                -> ServerError
    429                                                     -> RateLimited (retry_after_s from the headers)
    529, overloaded_error                                   -> Overloaded
    400, 422                                                -> BadRequest, or ContentPolicy by error type/code
    401 / 403 / 404 / 413                                   -> AuthenticationError / PermissionDenied /
                                                               ModelNotFound / RequestTooLarge

Messages name the provider, the status and the provider's own error type and message (truncated). They never
carry the request body, and anything that looks like an API key is masked before it goes into a message.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx
import orjson

from tiergate.providers.base import (
    AuthenticationError,
    BadRequest,
    ContentPolicy,
    MalformedResponse,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RequestTooLarge,
    ServerError,
)

MAX_DETAIL_CHARS = 200
# Error bodies larger than this are not parsed: a well-formed provider error is a few hundred bytes.
MAX_ERROR_BODY_BYTES = 64 * 1024

_STATUS_ERRORS: dict[int, type[ProviderError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: ModelNotFound,
    408: ServerError,
    413: RequestTooLarge,
    422: BadRequest,
    529: Overloaded,
}

# Error `type` values of Anthropic's error objects (and of OpenAI-compatible servers that copy them), for
# errors that arrive without a meaningful HTTP status: inside a 200 event stream.
_TYPE_ERRORS: dict[str, type[ProviderError]] = {
    "overloaded_error": Overloaded,
    "rate_limit_error": RateLimited,
    "api_error": ServerError,
    "server_error": ServerError,
    "timeout_error": ProviderTimeout,
    "invalid_request_error": BadRequest,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDenied,
    "not_found_error": ModelNotFound,
    "request_too_large": RequestTooLarge,
}

# An error type or code containing one of these marks a refusal by the provider's content filter
# (OpenAI: code `content_policy_violation`; Azure OpenAI: code `content_filter`).
_CONTENT_POLICY_MARKERS = ("content_policy", "content_filter", "content_management")

_KEY_PATTERN = re.compile(r"\b(sk-(?:ant-)?[A-Za-z0-9_-]{3})[A-Za-z0-9_*-]{6,}")
# The password of a URL's user info (a proxy URL's credentials, should a message quote one).
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*:)[^/@\s]+@")


class ErrorMapper:
    """Builds taxonomy errors for one provider. `secret` (the API key) is masked should an error echo it."""

    __slots__ = ("_provider", "_secret")

    def __init__(self, provider: str, secret: str = "") -> None:
        self._provider = provider
        self._secret = secret

    def from_exception(self, exc: httpx.HTTPError | aiohttp.ClientError) -> ProviderError:
        """Maps an HTTP client exception (raised while connecting, sending or reading) to the taxonomy."""
        kind = type(exc).__name__
        detail = self._clean(str(exc))
        suffix = f": {detail}" if detail else ""
        if isinstance(exc, httpx.TimeoutException | TimeoutError):  # aiohttp's timeouts are TimeoutErrors
            return ProviderTimeout(f"{self._provider}: timed out ({kind}){suffix}")
        if isinstance(exc, httpx.DecodingError):
            return MalformedResponse(f"{self._provider}: response body could not be decoded ({kind}){suffix}")
        # NetworkError (connect, read, write, close), RemoteProtocolError (the peer hung up or spoke
        # garbage), proxy and unsupported-protocol errors: the request did not complete on this connection.
        return ProviderConnectionError(f"{self._provider}: connection failed ({kind}){suffix}")

    def from_response(
        self, status: int, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> ProviderError:
        """Maps a non-2xx response to the taxonomy; `body` is the (possibly empty) error body.

        `now` (Unix time) only matters for a `retry-after` given as an HTTP date; tests pass it to be exact.
        """
        err_type, err_code, err_message = _error_fields(body)
        message = self._message(status, err_type, err_code, err_message)
        if status == 429:
            return RateLimited(message, status=status, retry_after_s=parse_retry_after(headers, now=now))
        if status in (400, 422) and _is_content_policy(err_type, err_code):
            return ContentPolicy(message, status=status)
        cls = _STATUS_ERRORS.get(status)
        if cls is None:
            if 500 <= status < 600:
                cls = ServerError
            elif 400 <= status < 500:
                cls = BadRequest
            else:
                # 1xx/3xx where a 200 was expected: a misconfigured base_url or a proxy in the way.
                cls = MalformedResponse
        return cls(message, status=status)

    def from_error_object(self, error: Any) -> ProviderError:
        """Maps an error object received inside a 200 stream: Anthropic's `error` event, an OpenAI chunk
        `{"error": {...}}`. `error` is the inner object (with `type`, `message`, maybe `code`)."""
        err_type, err_code, err_message = _fields_of(error)
        message = self._message(None, err_type, err_code, err_message, where="error in stream")
        if _is_content_policy(err_type, err_code):
            return ContentPolicy(message)
        cls = _TYPE_ERRORS.get(err_type or "") or _TYPE_ERRORS.get(err_code or "")
        if cls is None:
            # The upstream broke off an answer with an error we do not know: the server failed.
            cls = ServerError
        if cls is RateLimited:
            return RateLimited(message, status=None)
        return cls(message)

    def json_instead_of_stream(self, body: bytes) -> ProviderError:
        """A 2xx JSON body where an event stream was asked for: the error it carries, else malformed."""
        try:
            data = orjson.loads(body) if len(body) <= MAX_ERROR_BODY_BYTES else None
        except orjson.JSONDecodeError:
            data = None
        inner = data.get("error") if isinstance(data, dict) else None
        if isinstance(inner, dict):
            return self.from_error_object(inner)
        return self.malformed("a JSON body where an event stream was expected")

    def malformed(self, what: str) -> MalformedResponse:
        """The provider answered 2xx with something we cannot parse. `what` must not quote response text."""
        return MalformedResponse(f"{self._provider}: malformed response: {what}")

    def stream_ended(self) -> ProviderConnectionError:
        """The event stream ended (the connection closed cleanly) before the provider's final event."""
        return ProviderConnectionError(f"{self._provider}: stream ended before the final event")

    def timeout(self, seconds: float) -> ProviderTimeout:
        """Our own total deadline for a whole (non-streamed) request passed."""
        return ProviderTimeout(f"{self._provider}: no complete answer within {seconds:g} s")

    def _message(
        self,
        status: int | None,
        err_type: str | None,
        err_code: str | None,
        err_message: str | None,
        *,
        where: str = "",
    ) -> str:
        parts = [f"{self._provider}:"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if where:
            parts.append(where)
        labels = [v for v in (err_type, err_code) if v]
        if labels:
            parts.append(f"[{'/'.join(dict.fromkeys(labels))}]")
        if err_message:
            parts.append(self._clean(err_message))
        return " ".join(parts)

    def _clean(self, text: str) -> str:
        text = " ".join(text.split())
        if self._secret and len(self._secret) >= 4:
            text = text.replace(self._secret, "***")
        text = redact(text)
        if len(text) > MAX_DETAIL_CHARS:
            return text[: MAX_DETAIL_CHARS - 1] + "…"
        return text


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from `retry-after-ms` (preferred: finer) or `retry-after` (seconds or an HTTP date).

    Returns None when neither header is present or parseable; never a negative number.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = -1.0
        if ms >= 0 and ms == ms and ms != float("inf"):
            return ms / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if 0 <= seconds < float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def redact(text: str) -> str:
    """Masks anything shaped like an OpenAI or Anthropic API key (providers echo a prefix of a bad key) and
    the password in a URL's user info."""
    return _URL_PASSWORD.sub(r"\1***@", _KEY_PATTERN.sub(r"\1***", text))


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    if not body or len(body) > MAX_ERROR_BODY_BYTES:
        return None, None, None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    if isinstance(data, dict):
        # OpenAI: {"error": {...}}; Anthropic: {"type": "error", "error": {...}}; others: {"error": "text"}
        inner = data.get("error")
        if isinstance(inner, dict):
            return _fields_of(inner)
        if isinstance(inner, str):
            return None, None, inner
        return _fields_of(data)
    return None, None, None


def _fields_of(error: Any) -> tuple[str | None, str | None, str | None]:
    if not isinstance(error, dict):
        return None, None, None
    err_type = error.get("type")
    code = error.get("code")
    message = error.get("message")
    return (
        err_type if isinstance(err_type, str) else None,
        code if isinstance(code, str) else (str(code) if isinstance(code, int) else None),
        message if isinstance(message, str) else None,
    )


def _is_content_policy(err_type: str | None, err_code: str | None) -> bool:
    for value in (err_type, err_code):
        if value:
            lowered = value.lower()
            if any(marker in lowered for marker in _CONTENT_POLICY_MARKERS):
                return True
    return False
