"""HTTP plumbing shared by the hosted providers: one pooled client per provider, POST JSON, stream SSE.

Every failure leaves this module already mapped by `http_errors.ErrorMapper`; nothing here knows a provider's
wire format. A stream holds its response inside `client.post(...)`'s block and `post_json` reads its own
whole in `client.fetch(...)`, so a cancelled task or a closed stream closes the response at once; the client
(`http_client`) returns a connection to the pool only when the response was read to its end, and closes it
otherwise, which is how the upstream learns that we gave up on it.

Timeouts: `connect_timeout_ms` for connecting; `request_timeout_ms` for the whole of a `post_json` call, and
for each read and pool wait of a stream. A stream has no total limit here (it may rightly run long): the
dispatcher owns TTFT and total deadlines and enforces them by cancelling.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Protocol

import aiohttp
import httpx

from tiergate.config import ModelConfig
from tiergate.providers.base import ProviderError
from tiergate.providers.http_client import (
    TRANSPORT_ERRORS,
    AiohttpClient,
    HttpxClient,
    Reply,
    Timeouts,
    UpstreamClient,
    error_body,
    read_bounded,
)
from tiergate.providers.http_errors import MAX_ERROR_BODY_BYTES, ErrorMapper
from tiergate.providers.sse import LineTooLong, SSEEvent
from tiergate.relay import RELAY_EMPTY, RELAY_FULL, RelaySink, SseRelay
from tiergate.request import Chunk

# Idle keep-alive connections a provider's pool may hold: aiohttp keeps each one a finished request returns,
# so no more than the peak of requests in flight, which limits.max_concurrent_requests bounds (by default).
MAX_KEEPALIVE_CONNECTIONS = 256
# After a stream's final event only the end of the chunked body should follow; read it (so the connection
# returns to the pool) for at most this long before handing out the final chunk.
DRAIN_TIMEOUT_S = 0.05


def timeouts(config: ModelConfig) -> Timeouts:
    """Connect timeout from the config; the request timeout bounds every read and pool wait."""
    return Timeouts(
        connect_s=config.connect_timeout_ms / 1000.0, request_s=config.request_timeout_ms / 1000.0
    )


def new_client(config: ModelConfig) -> AiohttpClient:
    """A long-lived HTTP/1.1 client with keep-alive pooling, for one provider, through its proxy setting."""
    proxy = config.proxy.get_secret_value() if config.proxy is not None else None
    return AiohttpClient(proxy=proxy)


class EventStream:
    """The events of one SSE response, read as they arrive; transport errors come out mapped.

    Iterate it for the events the provider's parser reads; `relay` forwards the plain text deltas in between
    straight to the client (`relay.py`).
    """

    __slots__ = ("_decoder", "_errors", "_read")

    def __init__(self, read: Callable[[], Awaitable[bytes]], errors: ErrorMapper) -> None:
        self._read = read  # the body's next piece; b"" at its end
        self._decoder = SseRelay()
        self._errors = errors

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> SSEEvent:
        decoder = self._decoder
        event = decoder.next_event()
        if event is not None:
            return SSEEvent(*event)
        read = self._read
        try:
            while data := await read():
                decoder.feed(data)
                event = decoder.next_event()
                if event is not None:
                    return SSEEvent(*event)
        except TRANSPORT_ERRORS as exc:
            raise self._errors.from_exception(exc) from exc
        except LineTooLong:
            raise self._errors.malformed("an event-stream line too long") from None
        # A partial event at the end of the stream is discarded, as the SSE format requires.
        raise StopAsyncIteration

    async def relay(self, sink: RelaySink, wire: str) -> str:
        """Forwards the plain text deltas of `wire` ("openai", "anthropic") to `sink` as they arrive, until an
        event the parser must read, the client's end or the body's; returns the text forwarded."""
        decoder = self._decoder
        decoder.wire = wire
        while True:
            status = sink.relay(decoder)
            if status == RELAY_FULL:
                await sink.room()  # the client's side: its failures are not the provider's
                continue
            if status != RELAY_EMPTY:
                break
            try:
                data = await self._read()
                if not data:
                    break
                decoder.feed(data)
            except TRANSPORT_ERRORS as exc:
                raise self._errors.from_exception(exc) from exc
            except LineTooLong:
                raise self._errors.malformed("an event-stream line too long") from None
        return decoder.take_text()

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> bool:
        """Reads (and ignores) whatever follows the final event; True when the body ended in time.

        The answer is complete when this is called, so a slow or broken tail must not fail it: it costs only
        the connection, which is then closed instead of pooled.
        """
        try:
            async with asyncio.timeout(timeout_s):
                while await self._read():
                    pass
        except (TimeoutError, aiohttp.ClientError, httpx.HTTPError):
            return False
        return True


class ChunkParser(Protocol):
    """A provider's reading of its SSE events: text chunks, then `done` and a `final` chunk with usage.

    `relays`: the wire of its events ("openai", "anthropic") when `EventStream.relay` may forward their plain
    text deltas natively, else None.
    """

    done: bool
    relays: str | None

    def feed(self, data: str) -> Chunk | None: ...

    def final(self) -> Chunk: ...


class HostedEndpoint:
    """One POST endpoint of one provider: URL, headers, timeouts and the (shared) pooled client.

    `client`: None (the endpoint owns an `AiohttpClient` made from the config), an `UpstreamClient` to
    share, or an `httpx.AsyncClient` (the test seam: `httpx.MockTransport`).
    """

    __slots__ = ("_client", "_errors", "_headers", "_owns_client", "_timeouts", "_total_s", "_url")

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        config: ModelConfig,
        errors: ErrorMapper,
        client: httpx.AsyncClient | UpstreamClient | None = None,
    ) -> None:
        self._url = url
        self._headers = dict(headers)
        self._errors = errors
        self._timeouts = timeouts(config)
        self._total_s = config.request_timeout_ms / 1000.0
        self._owns_client = client is None
        self._client: UpstreamClient
        if client is None:
            self._client = new_client(config)
        elif isinstance(client, httpx.AsyncClient):
            self._client = HttpxClient(client)
        else:
            self._client = client

    async def post_json(self, body: bytes) -> bytes:
        """POSTs `body` and returns the 2xx response body. The whole call is bounded by request_timeout_ms."""
        try:
            async with asyncio.timeout(self._total_s):
                reply = await self._client.fetch(
                    self._url, body, self._headers, self._timeouts, MAX_ERROR_BODY_BYTES
                )
        except TRANSPORT_ERRORS as exc:  # before TimeoutError: aiohttp's read timeouts are both
            raise self._errors.from_exception(exc) from exc
        except TimeoutError:
            raise self._errors.timeout(self._total_s) from None
        if not 200 <= reply.status < 300:
            raise self._errors.from_response(reply.status, reply.headers, reply.body)
        return reply.body

    @asynccontextmanager
    async def open_sse(self, body: bytes) -> AsyncIterator[EventStream]:
        """POSTs `body` and yields the response's events; leaving the block closes the response."""
        try:
            async with self._client.post(self._url, body, self._headers, self._timeouts) as reply:
                if not 200 <= reply.status < 300:
                    raise await self._error(reply)
                if reply.headers.get("content-type", "").startswith("application/json"):
                    # Some servers answer a streamed request that failed with a 200 JSON error body.
                    body = await read_bounded(reply.chunks(), MAX_ERROR_BODY_BYTES)
                    raise self._errors.json_instead_of_stream(body)
                yield EventStream(reply.reader(), self._errors)
        except TRANSPORT_ERRORS as exc:
            raise self._errors.from_exception(exc) from exc

    async def stream_chunks(
        self, body: bytes, parser: ChunkParser
    ) -> AsyncGenerator[Chunk, RelaySink | None]:
        """POSTs `body` and yields the chunks `parser` makes of the events; the last carries usage.

        A `RelaySink` sent in (`asend`) after a chunk takes the plain text deltas from then on, when the
        parser `relays`: they reach the client natively and come up here as one `relayed` chunk before the
        next event the parser reads (`relay.py`).

        Close the generator when abandoning it early (`contextlib.aclosing`): that, or cancelling the task
        awaiting it, closes the HTTP response and its connection at once.
        """
        sink: RelaySink | None = None
        async with self.open_sse(body) as events:
            async for event in events:
                chunk = parser.feed(event.data)
                if chunk is not None:
                    sink = yield chunk
                elif parser.done:
                    await events.drain()
                    yield parser.final()
                    return
                if sink is not None and parser.relays is not None:
                    # In a task of its own: each chunk then wakes the relay's short stack, not every generator
                    # from here up to the server's handler. Cancelling this task cancels that one too.
                    text = await asyncio.get_running_loop().create_task(events.relay(sink, parser.relays))
                    if text:
                        sink = yield Chunk(text, relayed=True)
        raise self._errors.stream_ended()

    async def aclose(self) -> None:
        """Closes the pooled client if this endpoint created it."""
        if self._owns_client:
            await self._client.aclose()

    async def _error(self, reply: Reply) -> ProviderError:
        body = await error_body(reply.chunks(), MAX_ERROR_BODY_BYTES)
        return self._errors.from_response(reply.status, reply.headers, body)
