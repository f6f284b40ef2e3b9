"""The upstream HTTP client: aiohttp's, pooled per provider, behind the small interface `hosted_http` uses.

Why aiohttp: measured side by side (benches/results/bench_http_client.md) it spends the least CPU per small
JSON POST and per streamed answer of the well-kept clients, and less than the hand-written HTTP/1.1
transport it replaced; it parses HTTP in C, keeps connections alive, and speaks to proxies.

`UpstreamClient.post` opens one exchange; leaving its block returns the connection to the pool only when the
body was read to its end. A body left unread (closed early, a failure, a cancellation) closes the connection
at once, which is how the upstream learns that we gave up on it. `UpstreamClient.fetch` is the same exchange
read whole (a non-streamed answer), in one call: it sets no time limit of its own on the response, because
its caller bounds the whole call (`hosted_http.HostedEndpoint.post_json`), and so spares each request the
timers, the context manager and the reply object that a stream needs.

Proxies: by default `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` (and their lower-case forms) from the
environment, read when the client is made: when the provider is built, at start or when a reload changes
the model. (aiohttp's own `trust_env` reads them, and ~/.netrc, at every request: 0.25 ms of CPU per request
here.) A model's `proxy` setting overrides them: a proxy URL (`http://[user:password@]host:port`; an
https upstream is reached through it with CONNECT), or `direct`. Proxy credentials go in a
`Proxy-Authorization` header, never in the URL that aiohttp's exceptions quote.

`HttpxClient` adapts an `httpx.AsyncClient` to the same interface: the test seam (`httpx.MockTransport`)
and the way to share a client a caller already has. Both raise their own library's exceptions;
`http_errors.ErrorMapper.from_exception` maps either to the taxonomy.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

# 0: no cap of the pool's own; the sidecar's admission limit (limits.max_concurrent_requests) bounds the
# requests in flight, and so the connections. A lower cap would queue admitted streams behind it.
DEFAULT_MAX_CONNECTIONS = 0
DEFAULT_KEEPALIVE_EXPIRY_S = 20.0
DIRECT = "direct"  # a model's `proxy` setting that ignores the environment's proxies

# Every exception the clients below raise for a failed exchange (aiohttp's read timeouts are ClientErrors).
TRANSPORT_ERRORS: tuple[type[aiohttp.ClientError], type[httpx.HTTPError]] = (
    aiohttp.ClientError,
    httpx.HTTPError,
)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """connect: establishing a connection; request: the response head, each silence in the body, and
    waiting for a pooled connection."""

    connect_s: float
    request_s: float


class Reply(Protocol):
    """The head of a response and a way to read its body."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in pieces of any size."""
        ...

    def reader(self) -> Callable[[], Awaitable[bytes]]:
        """What reads the body's next piece as it arrives (of any size; b"" at its end): the same body as
        `chunks`, one await per piece."""
        ...

    async def read(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Fetched:
    """A whole response: status, head and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class UpstreamClient(Protocol):
    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts
    ) -> AbstractAsyncContextManager[Reply]: ...

    async def fetch(
        self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts, max_error_bytes: int
    ) -> Fetched:
        """POSTs `body` and reads the response: a 2xx body whole, any other only up to `max_error_bytes`
        (and empty if it fails midway: the status says what went wrong). No limit of its own on the
        response's time but connecting (`timeouts.connect_s`): the caller bounds the whole call."""
        ...

    async def aclose(self) -> None: ...


async def read_bounded(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """A body read up to `max_bytes` (and a piece); transport errors pass through."""
    body = bytearray()
    async for part in chunks:
        body += part
        if len(body) > max_bytes:
            break
    return bytes(body)


async def error_body(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """A failed response's body, for the provider's words: up to `max_bytes` (and a piece), or empty when
    reading it fails (the status already says what went wrong)."""
    try:
        return await read_bounded(chunks, max_bytes)
    except TRANSPORT_ERRORS:
        return b""


def _release_or_close(response: aiohttp.ClientResponse) -> None:
    if response.content.at_eof():
        response.release()  # read to its end: the connection goes back to the pool
    else:
        response.close()  # cancelled or cut short: closes the connection now (the upstream stops)


_MAX_TARGETS = 64  # URLs whose parsed form `AiohttpClient.fetch` keeps
READ_TIMEOUT_MESSAGE = "Timeout on reading data from socket"  # aiohttp's own words for its sock_read timeout
_QUIET_CHECKS = 4  # a body's silence is checked this many times per read timeout


class _SilenceWatch:
    """The read timeout on a response body: the upstream sent nothing for `timeout_s`.

    aiohttp's own (`sock_read`) re-arms a timer on every piece received, which cost ~5 µs of each relayed
    chunk (`benches/results/profile_stream_relay.md`). This one looks at the bytes received every
    `timeout_s / 4` instead and fails the body after four looks in a row saw none: it fires after between
    `timeout_s` and 1.25 x `timeout_s` of silence, never sooner, with the same exception aiohttp raises.
    """

    __slots__ = ("_content", "_handle", "_period_s", "_quiet", "_seen")

    def __init__(self, content: aiohttp.StreamReader, timeout_s: float) -> None:
        self._content = content
        self._period_s = timeout_s / _QUIET_CHECKS
        self._seen = -1
        self._quiet = 0
        self._handle = asyncio.get_running_loop().call_later(self._period_s, self._look)

    def _look(self) -> None:
        content = self._content
        if content.is_eof() or content.exception() is not None:
            return
        if content.total_bytes != self._seen:
            self._seen, self._quiet = content.total_bytes, 0
        else:
            self._quiet += 1
            if self._quiet >= _QUIET_CHECKS:
                content.set_exception(aiohttp.SocketTimeoutError(READ_TIMEOUT_MESSAGE))
                return
        self._handle = asyncio.get_running_loop().call_later(self._period_s, self._look)

    def cancel(self) -> None:
        self._handle.cancel()


class _AiohttpReply:
    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()

    def reader(self) -> Callable[[], Awaitable[bytes]]:
        return self._response.content.readany

    async def read(self) -> bytes:
        return await self._response.read()


@dataclass(frozen=True, slots=True)
class _Proxy:
    url: URL | None
    headers: Mapping[str, str] | None

    @classmethod
    def of(cls, proxy: str | None) -> _Proxy:
        if not proxy:
            return cls(None, None)
        url = URL(proxy)
        auth = (
            {"Proxy-Authorization": aiohttp.encode_basic_auth(url.user, url.password or "")}
            if url.user
            else None
        )
        return cls(url.with_user(None), auth)


def _send(
    session: aiohttp.ClientSession,
    url: str | URL,
    body: bytes,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    via: _Proxy,
) -> Awaitable[aiohttp.ClientResponse]:
    """POSTs `body`; the response once its head has arrived (redirects are answers, not followed)."""
    return session.post(
        url,
        data=body,
        headers=headers,
        timeout=timeout,
        proxy=via.url,
        proxy_headers=via.headers,
        allow_redirects=False,
    )


class AiohttpClient:
    """One provider's pooled client. The session is made on first use, inside the running event loop.

    Args:
        proxy: None (the environment's proxies), `DIRECT`, or a proxy URL.
        ssl_context: the TLS settings for https upstreams; None: the system's trusted certificates.
        max_connections: connections open at once (0: no cap); beyond it a request waits for one, up to
            the request timeout.
        keepalive_expiry_s: an idle connection is closed after this long.
    """

    def __init__(
        self,
        *,
        proxy: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        keepalive_expiry_s: float = DEFAULT_KEEPALIVE_EXPIRY_S,
    ) -> None:
        if proxy is not None and proxy != DIRECT and not proxy.startswith(("http://", "https://")):
            raise ValueError("proxy: expected `direct` or an http:// or https:// URL")
        self._fixed = None if proxy is None else _Proxy.of(None if proxy == DIRECT else proxy)
        self._env = urllib.request.getproxies_environment() if proxy is None else {}
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._max_connections = max_connections
        self._keepalive_s = keepalive_expiry_s
        self._session: aiohttp.ClientSession | None = None
        # Plain-http requests through a proxy: forwarded by it, one connection each (`_session_for`).
        self._forwarding: aiohttp.ClientSession | None = None
        self._closed = False
        # What is fixed per URL and per Timeouts, made once: the parsed URL and its proxy (`_target`), and
        # `fetch`'s aiohttp timeout settings (URLs come from the config, so these stay small).
        self._targets: dict[str, tuple[URL, _Proxy]] = {}
        self._fetch_timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    def _target(self, url: str) -> tuple[URL, _Proxy]:
        """`url` parsed, and the proxy it goes through."""
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            target = self._targets[url] = (URL(url), self._fixed or self._proxy_for(url))
        return target

    def _session_for(self, via: _Proxy, url: URL) -> aiohttp.ClientSession:
        """The session for a request to `url` through `via`, made on first use.

        A plain-http request through a proxy is forwarded by it (an https one is tunnelled with CONNECT, and
        the tunnel is kept alive like a direct connection). Forwarding proxies such as tinyproxy close the
        connection after each answer without saying so (no `Connection: close`), so a next request on it
        would fail before it is sent: forwarded requests get a connection each.
        """
        if self._closed:
            raise RuntimeError("the HTTP client has been closed")  # a bug: the provider was closed
        if via.url is not None and url.scheme == "http":
            if self._forwarding is None:
                self._forwarding = self._open_session(force_close=True)
            return self._forwarding
        if self._session is None:
            self._session = self._open_session()
        return self._session

    def _open_session(self, *, force_close: bool = False) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=None if force_close else self._keepalive_s,
            force_close=force_close,
            ssl=self._ssl,
        )
        return aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            raise_for_status=False,
        )

    @asynccontextmanager
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts
    ) -> AsyncIterator[Reply]:
        parsed, via = self._target(url)
        session = self._session_for(via, parsed)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.request_s,  # the wait for a pooled connection, and connecting
            sock_connect=timeouts.connect_s,
            sock_read=None,  # the response head is bounded below, the body by _SilenceWatch
        )
        head = asyncio.timeout(timeouts.request_s)
        try:
            async with head:
                response = await _send(session, parsed, body, headers, timeout, via)
        except TimeoutError:
            if head.expired():  # no response head in time (aiohttp's own connect timeouts pass through)
                raise aiohttp.SocketTimeoutError(READ_TIMEOUT_MESSAGE) from None
            raise
        watch = _SilenceWatch(response.content, timeouts.request_s)
        try:
            yield _AiohttpReply(response)
        finally:
            watch.cancel()
            _release_or_close(response)

    async def fetch(
        self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts, max_error_bytes: int
    ) -> Fetched:
        timeout = self._fetch_timeouts.get(timeouts)
        if timeout is None:
            # Only connecting has a limit here (`connect` is the pool wait too, bounded by the caller).
            timeout = aiohttp.ClientTimeout(
                total=None, connect=None, sock_connect=timeouts.connect_s, sock_read=None
            )
            self._fetch_timeouts[timeouts] = timeout
        parsed, via = self._target(url)
        response = await _send(self._session_for(via, parsed), parsed, body, headers, timeout, via)
        try:
            if 200 <= response.status < 300:
                data = await response.read()
            else:
                data = await error_body(response.content.iter_any(), max_error_bytes)
        finally:
            _release_or_close(response)
        return Fetched(response.status, response.headers, data)

    def _proxy_for(self, url: str) -> _Proxy:
        """The environment's proxy for `url` (made once per URL: `_target` keeps it)."""
        target = URL(url)
        chosen = self._env.get(target.scheme)
        # NO_PROXY matching as urllib does it (typeshed does not declare this stdlib function).
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if chosen and bypass(target.host or "", self._env):
            chosen = None
        if chosen and not chosen.startswith(("http://", "https://")):
            chosen = None  # a proxy scheme aiohttp cannot speak (socks5://): connect directly
        return _Proxy.of(chosen)

    async def aclose(self) -> None:
        self._closed = True
        for session in (self._session, self._forwarding):
            if session is not None:
                await session.close()


class _HttpxReply:
    __slots__ = ("_response",)

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.aiter_bytes()

    def reader(self) -> Callable[[], Awaitable[bytes]]:
        pieces = self._response.aiter_bytes()

        async def read() -> bytes:
            return await anext(pieces, b"")

        return read

    async def read(self) -> bytes:
        return await self._response.aread()


class HttpxClient:
    """An `httpx.AsyncClient` (e.g. over `httpx.MockTransport` in tests) as an `UpstreamClient`."""

    def __init__(self, client: httpx.AsyncClient, *, owned: bool = False) -> None:
        self._client = client
        self._owned = owned

    @asynccontextmanager
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts
    ) -> AsyncIterator[Reply]:
        timeout = httpx.Timeout(timeouts.request_s, connect=timeouts.connect_s)
        async with self._client.stream(
            "POST", url, content=body, headers=headers, timeout=timeout
        ) as response:
            yield _HttpxReply(response)

    async def fetch(
        self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts, max_error_bytes: int
    ) -> Fetched:
        async with self.post(url, body, headers, timeouts) as reply:
            if 200 <= reply.status < 300:
                return Fetched(reply.status, reply.headers, await reply.read())
            return Fetched(reply.status, reply.headers, await error_body(reply.chunks(), max_error_bytes))

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()
