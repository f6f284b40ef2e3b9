"""HTTP plumbing shared by the hosted providers: one pooled client per provider, POST JSON, stream SSE.

Every failure leaves this module already mapped by `http_errors.ErrorMapper`; nothing here knows a provider's
wire format. Both calls hold the response inside `async with client.stream(...)`, so a cancelled task or a
closed stream closes the response at once. `FastTransport` returns a connection to the pool only when the
response was read to its end; a response closed early closes its connection, which is how the upstream learns
that we gave up on it.

Timeouts: `connect_timeout_ms` for connecting; `request_timeout_ms` for each read, write and pool wait, and
for the whole of a `post_json` call. A stream has no total limit here (it may rightly run long): the
dispatcher owns TTFT and total deadlines and enforces them by cancelling.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Protocol

import httpx

from tiergate.config import ModelConfig
from tiergate.providers.base import ProviderError
from tiergate.providers.fast_transport import FastTransport
from tiergate.providers.http_errors import MAX_ERROR_BODY_BYTES, ErrorMapper
from tiergate.providers.sse import SSEDecoder, SSEEvent
from tiergate.request import Chunk

# Pool sizing: as many connections as the sidecar admits concurrent requests by default
# (config.limits.max_concurrent_requests); idle connections are kept long enough to serve bursts.
MAX_CONNECTIONS = 256
MAX_KEEPALIVE_CONNECTIONS = 64
KEEPALIVE_EXPIRY_S = 20.0
# After a stream's final event only the end of the chunked body should follow; read it (so the connection
# returns to the pool) for at most this long before handing out the final chunk.
DRAIN_TIMEOUT_S = 0.05


def timeouts(config: ModelConfig) -> httpx.Timeout:
    """Connect timeout from the config; the request timeout bounds every read, write and pool wait."""
    return httpx.Timeout(config.request_timeout_ms / 1000.0, connect=config.connect_timeout_ms / 1000.0)


def new_client(config: ModelConfig) -> httpx.AsyncClient:
    """A long-lived HTTP/1.1 client with keep-alive pooling, for one provider (over `FastTransport`)."""
    transport = FastTransport(
        max_connections=MAX_CONNECTIONS,
        max_idle_per_host=MAX_KEEPALIVE_CONNECTIONS,
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    )
    return httpx.AsyncClient(transport=transport, timeout=timeouts(config), follow_redirects=False)


class EventStream:
    """The events of one SSE response, read as they arrive; httpx errors come out mapped."""

    __slots__ = ("_decoder", "_errors", "_lines")

    def __init__(self, lines: AsyncIterator[str], errors: ErrorMapper) -> None:
        self._lines = lines
        self._decoder = SSEDecoder()
        self._errors = errors

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> SSEEvent:
        try:
            async for line in self._lines:
                event = self._decoder.feed_line(line)
                if event is not None:
                    return event
        except httpx.HTTPError as exc:
            raise self._errors.from_exception(exc) from exc
        # A partial event at the end of the stream is discarded, as the SSE format requires.
        raise StopAsyncIteration

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> bool:
        """Reads (and ignores) whatever follows the final event; True when the body ended in time.

        The answer is complete when this is called, so a slow or broken tail must not fail it: it costs only
        the connection, which is then closed instead of pooled.
        """
        try:
            async with asyncio.timeout(timeout_s):
                async for _ in self._lines:
                    pass
        except (TimeoutError, httpx.HTTPError):
            return False
        return True

    async def aclose(self) -> None:
        if isinstance(self._lines, AsyncGenerator):
            await self._lines.aclose()


class ChunkParser(Protocol):
    """A provider's reading of its SSE events: text chunks, then `done` and a `final` chunk with usage."""

    done: bool

    def feed(self, data: str) -> Chunk | None: ...

    def final(self) -> Chunk: ...


class HostedEndpoint:
    """One POST endpoint of one provider: URL, headers, timeouts and the (shared) pooled client."""

    __slots__ = ("_client", "_errors", "_headers", "_owns_client", "_timeout", "_total_s", "_url")

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        config: ModelConfig,
        errors: ErrorMapper,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = url
        self._headers = dict(headers)
        self._errors = errors
        self._timeout = timeouts(config)
        self._total_s = config.request_timeout_ms / 1000.0
        self._owns_client = client is None
        self._client = new_client(config) if client is None else client

    async def post_json(self, body: bytes) -> bytes:
        """POSTs `body` and returns the 2xx response body. The whole call is bounded by request_timeout_ms."""
        try:
            async with (
                asyncio.timeout(self._total_s),
                self._client.stream(
                    "POST", self._url, content=body, headers=self._headers, timeout=self._timeout
                ) as response,
            ):
                if not 200 <= response.status_code < 300:
                    raise await self._error(response)
                return await response.aread()
        except TimeoutError:
            raise self._errors.timeout(self._total_s) from None
        except httpx.HTTPError as exc:
            raise self._errors.from_exception(exc) from exc

    @asynccontextmanager
    async def open_sse(self, body: bytes) -> AsyncIterator[EventStream]:
        """POSTs `body` and yields the response's events; leaving the block closes the response."""
        try:
            async with self._client.stream(
                "POST", self._url, content=body, headers=self._headers, timeout=self._timeout
            ) as response:
                if not 200 <= response.status_code < 300:
                    raise await self._error(response)
                if response.headers.get("content-type", "").startswith("application/json"):
                    # Some servers answer a streamed request that failed with a 200 JSON error body.
                    raise self._errors.json_instead_of_stream(await self._read_bounded(response))
                events = EventStream(response.aiter_lines(), self._errors)
                try:
                    yield events
                finally:
                    await events.aclose()
        except httpx.HTTPError as exc:
            raise self._errors.from_exception(exc) from exc

    async def stream_chunks(self, body: bytes, parser: ChunkParser) -> AsyncGenerator[Chunk, None]:
        """POSTs `body` and yields the chunks `parser` makes of the events; the last carries usage.

        Close the generator when abandoning it early (`contextlib.aclosing`): that, or cancelling the task
        awaiting it, closes the HTTP response and its connection at once.
        """
        async with self.open_sse(body) as events:
            async for event in events:
                chunk = parser.feed(event.data)
                if chunk is not None:
                    yield chunk
                elif parser.done:
                    await events.drain()
                    yield parser.final()
                    return
        raise self._errors.stream_ended()

    async def aclose(self) -> None:
        """Closes the pooled client if this endpoint created it."""
        if self._owns_client:
            await self._client.aclose()

    async def _error(self, response: httpx.Response) -> ProviderError:
        try:
            body = await self._read_bounded(response)
        except httpx.HTTPError:
            # The status already says what went wrong; a body cut short only loses the provider's detail.
            body = b""
        return self._errors.from_response(response.status_code, response.headers, body)

    @staticmethod
    async def _read_bounded(response: httpx.Response) -> bytes:
        body = bytearray()
        async for part in response.aiter_bytes():
            body += part
            if len(body) > MAX_ERROR_BODY_BYTES:
                break
        return bytes(body)
