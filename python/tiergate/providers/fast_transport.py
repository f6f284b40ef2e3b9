"""An httpx transport speaking HTTP/1.1 over asyncio streams, with a keep-alive pool per origin.

httpx's own transport (httpcore) costs about a millisecond of CPU per round trip; this one does the same job
for the requests tiergate sends (small JSON POSTs, SSE answers) at a small fraction of that, and keeps
httpx's API above it: `httpx.AsyncClient(transport=FastTransport())`.

What it guarantees, the same as httpcore does:

- A response body read to its end returns its connection to the pool (unless the server or the request said
  `connection: close`, or the body ran until the server closed). A body closed before its end, a failure and
  a cancellation close the connection at once, so the upstream sees that we gave up.
- An idle connection is dropped instead of reused when the server has closed it or when it was idle for
  longer than `keepalive_expiry`. A request is never retried: a POST may already have been delivered.
- Timeouts come from `request.extensions["timeout"]` (connect, read, write, pool; None: no limit) and raise
  httpx.ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout. Failing to connect raises ConnectError; a
  socket error while sending or reading raises WriteError / ReadError; a server that hangs up early or
  speaks something other than HTTP/1.1 raises RemoteProtocolError.

Not supported (tiergate does not need them): HTTP/2, proxies, `Expect: 100-continue`, trailers (they are
read and ignored), upgrades.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import httpx

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_MAX_IDLE_PER_HOST = 64
DEFAULT_KEEPALIVE_EXPIRY_S = 20.0
READ_SIZE = 65536
MAX_HEAD_BYTES = 65536
_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"
_NO_BODY_STATUS = frozenset({204, 304})

Key = tuple[str, str, int]


def _within(seconds: float | None) -> AbstractAsyncContextManager[Any]:
    return nullcontext() if seconds is None else asyncio.timeout(seconds)


class _Connection:
    """One TCP (or TLS) connection to an origin."""

    __slots__ = ("idle_since", "key", "reader", "writer")

    def __init__(self, key: Key, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def close(self) -> None:
        """Closes the socket now, without waiting for buffered data or a TLS goodbye."""
        self.writer.transport.abort()

    def reusable(self, now: float, expiry: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.transport.is_closing()
            and now - self.idle_since <= expiry
            and not self.reader.exception()
        )


class FastTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 for http and https URLs, keep-alive pooled per (scheme, host, port).

    Args:
        max_connections: connections in use at once (idle pooled ones not counted); beyond it a request
            waits for one, up to the pool timeout. None: no limit.
        max_idle_per_host: idle connections kept per origin; more are closed when they are released.
        keepalive_expiry: seconds an idle connection may wait to be reused.
        ssl_context: for https (default: `ssl.create_default_context()`, made on first use).
    """

    def __init__(
        self,
        *,
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
        max_idle_per_host: int = DEFAULT_MAX_IDLE_PER_HOST,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._idle: dict[Key, deque[_Connection]] = {}
        self._max_idle = max_idle_per_host
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._slots = asyncio.Semaphore(max_connections) if max_connections is not None else None
        self._closed = False

    # -- the pool --------------------------------------------------------------------------------------

    def _checkout(self, key: Key) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed by the server
            if conn.reusable(now, self._expiry):
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection, reuse: bool) -> None:
        """Takes back a connection whose exchange is over: pooled when `reuse`, else closed."""
        if self._slots is not None:
            self._slots.release()
        if not reuse or self._closed or conn.reader.at_eof():
            conn.close()
            return
        idle = self._idle.setdefault(conn.key, deque())
        if len(idle) >= self._max_idle:
            idle.popleft().close()
        conn.idle_since = asyncio.get_running_loop().time()
        idle.append(conn)

    def _abandon(self, conn: _Connection | None) -> None:
        """An exchange failed or was given up: the connection (if any) is closed, its slot freed."""
        if self._slots is not None:
            self._slots.release()
        if conn is not None:
            conn.close()

    async def _connect(self, request: httpx.Request, key: Key, timeout: float | None) -> _Connection:
        scheme, host, port = key
        context: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with _within(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                    limit=MAX_HEAD_BYTES,  # the most a response head (or a chunk-size line) may take
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"could not connect to {host}:{port} in time", request=request
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return _Connection(key, reader, writer)

    async def aclose(self) -> None:
        """Closes every idle connection; connections in use close when their response is closed."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
        # Let the transports finish closing their sockets before the caller moves on.
        await asyncio.sleep(0)

    # -- one exchange ----------------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        if not url.host:
            raise httpx.UnsupportedProtocol(f"no host in URL {url}", request=request)
        port = url.port or (443 if scheme == "https" else 80)
        key: Key = (scheme, url.host, port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})

        if self._slots is not None:
            if self._slots.locked():
                try:
                    async with _within(timeouts.get("pool")):
                        await self._slots.acquire()
                except TimeoutError:
                    raise httpx.PoolTimeout("no connection free in time", request=request) from None
            else:
                await self._slots.acquire()

        conn: _Connection | None = None
        try:
            conn = self._checkout(key)
            if conn is None:
                conn = await self._connect(request, key, timeouts.get("connect"))
            await self._send(conn, request, timeouts.get("write"))
            response = await self._receive_head(conn, request, timeouts.get("read"))
        except BaseException:
            self._abandon(conn)
            raise
        return response

    async def _send(self, conn: _Connection, request: httpx.Request, timeout: float | None) -> None:
        head = bytearray()
        head += request.method.encode("ascii")
        head += b" "
        head += request.url.raw_path
        head += b" HTTP/1.1\r\n"
        chunked = False
        for name, value in request.headers.raw:
            head += name
            head += b": "
            head += value
            head += _CRLF
            if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        head += _CRLF
        writer = conn.writer
        try:
            try:
                body = request.content
            except httpx.RequestNotRead:
                writer.write(head)
                stream = request.stream
                assert isinstance(stream, httpx.AsyncByteStream), "an async client sends async bodies"
                async for part in stream:
                    if not part:
                        continue
                    if chunked:
                        writer.write(b"%x\r\n" % len(part) + part + _CRLF)
                    else:
                        writer.write(part)
                    await self._drain(writer, timeout)
                if chunked:
                    writer.write(b"0\r\n\r\n")
            else:
                if body:
                    head += body
                writer.write(head)
            await self._drain(writer, timeout)
        except TimeoutError:
            raise httpx.WriteTimeout("sending the request timed out", request=request) from None
        except OSError as exc:
            raise httpx.WriteError(f"{type(exc).__name__}: {exc}", request=request) from exc

    @staticmethod
    async def _drain(writer: asyncio.StreamWriter, timeout: float | None) -> None:
        if writer.transport.get_write_buffer_size():
            async with _within(timeout):
                await writer.drain()

    async def _receive_head(
        self, conn: _Connection, request: httpx.Request, timeout: float | None
    ) -> httpx.Response:
        reader = conn.reader
        while True:
            try:
                async with _within(timeout):
                    raw = await reader.readuntil(_HEAD_END)
            except TimeoutError:
                raise httpx.ReadTimeout("no response in time", request=request) from None
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise httpx.RemoteProtocolError(
                        "server disconnected in the middle of the response head", request=request
                    ) from None
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                ) from None
            except asyncio.LimitOverrunError:
                raise httpx.RemoteProtocolError("response head too large", request=request) from None
            except OSError as exc:
                raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
            status, reason, version, headers = _parse_head(raw, request)
            if 100 <= status < 200 and status != 101:
                continue  # informational: the real response follows
            break

        connection = b""
        length: bytes | None = None
        encoding = b""
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                length = value
            elif lname == b"transfer-encoding":
                encoding = value.lower()
            elif lname == b"connection":
                connection = value.lower()
        if version == b"HTTP/1.0":
            keep_alive = b"keep-alive" in connection
        else:
            keep_alive = b"close" not in connection
        if keep_alive and "close" in request.headers.get("connection", "").lower():
            keep_alive = False

        mode: int
        remaining = 0
        if request.method == "HEAD" or status in _NO_BODY_STATUS or 100 <= status < 200:
            mode = _EMPTY
        elif b"chunked" in encoding:
            mode = _CHUNKED
        elif length is not None:
            try:
                remaining = int(length)
            except ValueError:
                raise httpx.RemoteProtocolError("bad content-length", request=request) from None
            if remaining < 0:
                raise httpx.RemoteProtocolError("bad content-length", request=request)
            mode = _LENGTH if remaining else _EMPTY
        else:
            mode = _UNTIL_CLOSE
            keep_alive = False

        body = _Body(self, conn, request, mode, remaining, keep_alive, timeout)
        if mode == _EMPTY:
            body.finish()
        return httpx.Response(
            status,
            headers=headers,
            stream=body,
            extensions={"http_version": version, "reason_phrase": reason},
        )


_EMPTY, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)


def _parse_head(raw: bytes, request: httpx.Request) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    lines = raw[:-4].split(_CRLF)
    parts = lines[0].split(b" ", 2)
    version = parts[0]
    if len(parts) < 2 or version not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError("malformed response status line", request=request)
    status = int(parts[1])
    reason = parts[2] if len(parts) == 3 else b""
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx.RemoteProtocolError("malformed response header", request=request)
        headers.append((name, value.strip()))
    return status, reason, version, headers


class _Body(httpx.AsyncByteStream):
    """A response body read straight off its connection; see the module docstring for what closing does."""

    __slots__ = (
        "_chunk_left",
        "_conn",
        "_done",
        "_keep_alive",
        "_mode",
        "_remaining",
        "_request",
        "_timeout",
        "_transport",
    )

    def __init__(
        self,
        transport: FastTransport,
        conn: _Connection,
        request: httpx.Request,
        mode: int,
        remaining: int,
        keep_alive: bool,
        timeout: float | None,
    ) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        self._request = request
        self._mode = mode
        self._remaining = remaining
        self._chunk_left = 0
        self._keep_alive = keep_alive
        self._timeout = timeout
        self._done = False

    def finish(self) -> None:
        """The body was read to its end: the connection goes back to the pool (or is closed)."""
        self._done = True
        conn, self._conn = self._conn, None
        if conn is not None:
            self._transport._release(conn, self._keep_alive)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if self._done or conn is None:
            raise StopAsyncIteration
        try:
            async with _within(self._timeout):
                data = await self._next(conn.reader)
        except TimeoutError:
            self._fail()
            raise httpx.ReadTimeout("the response body stalled", request=self._request) from None
        except httpx.HTTPError:
            self._fail()
            raise
        except asyncio.IncompleteReadError:
            self._fail()
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=self._request
            ) from None
        except asyncio.LimitOverrunError:
            self._fail()
            raise httpx.RemoteProtocolError("malformed chunked body", request=self._request) from None
        except OSError as exc:
            self._fail()
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=self._request) from exc
        except BaseException:  # cancelled (or worse): the exchange is abandoned
            self._fail()
            raise
        if data:
            return data
        self.finish()
        raise StopAsyncIteration

    async def _next(self, reader: asyncio.StreamReader) -> bytes:
        """The next piece of the body; b"" at its (clean) end."""
        mode = self._mode
        if mode == _LENGTH:
            data = await reader.read(min(self._remaining, READ_SIZE))
            if not data:
                raise httpx.RemoteProtocolError(
                    f"peer closed connection without sending complete message body: "
                    f"{self._remaining} bytes missing",
                    request=self._request,
                )
            self._remaining -= len(data)
            if self._remaining == 0:
                self.finish()
            return data
        if mode == _CHUNKED:
            if self._chunk_left == 0:
                line = await reader.readuntil(_CRLF)
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError("malformed chunk size", request=self._request) from None
                if size < 0:
                    raise httpx.RemoteProtocolError("malformed chunk size", request=self._request)
                if size == 0:
                    while await reader.readuntil(_CRLF) != _CRLF:  # trailers, ignored
                        pass
                    return b""
                self._chunk_left = size
            data = await reader.read(min(self._chunk_left, READ_SIZE))
            if not data:
                raise asyncio.IncompleteReadError(b"", self._chunk_left)
            self._chunk_left -= len(data)
            if self._chunk_left == 0 and await reader.readexactly(2) != _CRLF:
                raise httpx.RemoteProtocolError("malformed chunked body", request=self._request)
            return data
        if mode == _UNTIL_CLOSE:
            return await reader.read(READ_SIZE)
        return b""

    def _fail(self) -> None:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is not None:
            self._transport._abandon(conn)

    async def aclose(self) -> None:
        """Closing before the end closes the connection at once; after it, nothing is left to do."""
        if self._conn is not None:
            self._fail()
