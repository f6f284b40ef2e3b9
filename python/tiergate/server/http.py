"""The HTTP listener (`listen.http`): `/metrics` (Prometheus), `/healthz` (process up), `/readyz` (serving).

A small HTTP/1.1 server on asyncio streams, enough for scrapers and probes: GET and HEAD of fixed paths,
keep-alive. Mounted `App`s (the OpenAI-compatible facade, `server/openai_facade.py`; the control panel,
`server/ui.py`) serve their own paths,
with request bodies (Content-Length only) and streamed responses (chunked transfer encoding). With a bearer
token (`server/auth.py`) every path but the health ones needs it; with an `ssl.SSLContext` it serves HTTPS.
`drain` stops accepting and lets requests in progress finish, for a graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from tiergate.server.auth import UI_LOGIN_PATH, UI_PREFIX, BearerToken
from tiergate.telemetry import Telemetry

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
IDLE_TIMEOUT_S = 60.0  # a keep-alive connection with no new request is closed after this
HEAD_TIMEOUT_S = 10.0  # a request head, once begun, must be complete by then
CLIENT_CHECK_S = 0.1  # how often a request in progress checks that its client is still connected
_REASONS = {
    200: "OK",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StreamResponse:
    """Sent with chunked transfer encoding, one chunk per item of `chunks` (e.g. server-sent events)."""

    status: int
    chunks: AsyncGenerator[bytes, None]
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased, values as sent
    body: bytes


class App(Protocol):
    """Serves every method of `paths`, with request bodies; mounted once the sidecar is up."""

    @property
    def paths(self) -> Collection[str]: ...

    def __call__(self, request: HttpRequest) -> Awaitable[Response | StreamResponse]: ...


Handler = Callable[[Mapping[str, str]], Response]  # the request's headers -> the response


def observability_routes(telemetry: Telemetry) -> dict[str, Handler]:
    """The three endpoints every sidecar serves."""

    def metrics(headers: Mapping[str, str]) -> Response:
        # OpenMetrics (with the latency histograms' exemplars) for a scraper that asks for it.
        if "application/openmetrics-text" in headers.get("accept", ""):
            return Response(
                200, openmetrics.generate_latest(telemetry.metrics.registry), openmetrics.CONTENT_TYPE_LATEST
            )
        return Response(200, generate_latest(telemetry.metrics.registry), CONTENT_TYPE_LATEST)

    def healthz(headers: Mapping[str, str]) -> Response:
        return Response(200, b"ok\n")

    def readyz(headers: Mapping[str, str]) -> Response:
        if not telemetry.ready:
            return Response(503, b"not ready\n")
        # A local model's worker that is down does not make the sidecar unready: hosted models still serve,
        # and taking the pod out of service would cut them off too. The body says what is degraded.
        down = "".join(f"degraded: local model {line}\n" for line in telemetry.metrics.workers_down())
        return Response(200, b"ready\n" + down.encode())

    return {"/metrics": metrics, "/healthz": healthz, "/readyz": readyz}


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    """Serves GET/HEAD of `routes` (path -> handler)."""

    def __init__(
        self,
        routes: Mapping[str, Handler],
        *,
        token: BearerToken | None = None,
        tls: ssl.SSLContext | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._routes = dict(routes)
        self._apps: list[App] = []
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()  # connections in the middle of a request
        self._token = token
        self._tls = tls
        self._max_body = max_body_bytes
        self._draining = False

    async def start(self, address: str) -> tuple[str, int]:
        """Listens on "host:port" (port 0: any free one); returns the address actually bound."""
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise OSError(f"listen.http: {address!r} is not host:port")
        host = host.strip("[]")
        try:
            self._server = await asyncio.start_server(self._accept, host, int(port), ssl=self._tls)
        except OSError as exc:
            raise OSError(f"cannot listen on {address}: {exc.strerror or exc}") from None
        bound = self._server.sockets[0].getsockname()
        return host, int(bound[1])

    def mount(self, app: App) -> None:
        """From now on `app` serves its paths (before, they answer 404)."""
        self._apps.append(app)

    async def drain(self, grace_s: float) -> None:
        """Stops accepting, closes idle connections, and gives requests in progress `grace_s` to finish;
        then `stop` cancels what is left."""
        self._draining = True
        if self._server is not None:
            self._server.close()
        for task in self._connections - self._busy:
            task.cancel()
        if self._busy:
            await asyncio.wait(list(self._busy), timeout=grace_s)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections))
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._serve_one(reader, writer, task) and not self._draining:
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            logger.debug("HTTP client went away: %s", exc)
        finally:
            self._connections.discard(task)
            self._busy.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[None]
    ) -> bool:
        """Answers one request; False when the connection should close."""
        try:
            async with asyncio.timeout(IDLE_TIMEOUT_S):
                first = await reader.readexactly(1)
        except (TimeoutError, asyncio.IncompleteReadError):
            return False  # idle, or closed between requests
        if not b"A" <= first <= b"Z":  # every method starts so; TLS, HTTP/2 and noise do not
            await _write(writer, Response(400, b"not an HTTP/1.1 request\n"), keep_alive=False)
            return False
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = first + await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            await _write(writer, Response(408, b"request head too slow\n"), keep_alive=False)
            return False
        except asyncio.LimitOverrunError:
            await _write(writer, Response(431, b"request head too large\n"), keep_alive=False)
            return False
        except asyncio.IncompleteReadError:
            return False  # closed halfway through the head
        self._busy.add(task)
        try:
            return await self._answer(head, reader, writer)
        finally:
            self._busy.discard(task)

    async def _answer(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if len(head) > MAX_HEAD_BYTES:
            await _write(writer, Response(431, b"request head too large\n"), keep_alive=False)
            return False
        try:
            method, path, headers, keep_alive = _parse(head)
            app = next((a for a in self._apps if path in a.paths), None)
            length = _body_length(headers, accepted=app is not None, limit=self._max_body)
        except _BadRequest as exc:
            await _write(writer, Response(exc.status, f"{exc}\n".encode()), keep_alive=False)
            return False
        if self._token is not None and not self._token.http_allows(path, headers):
            # The body stays unread, so the connection cannot be reused.
            await _write(writer, _unauthorized(path), keep_alive=False)
            return False
        handler = self._routes.get(path)
        if app is not None:
            body = await reader.readexactly(length) if length else b""
            answer = await _unless_client_leaves(reader, app(HttpRequest(method, path, headers, body)))
            if isinstance(answer, StreamResponse):
                await _write_stream(writer, answer, keep_alive=keep_alive)
                return keep_alive
            response = answer
        elif handler is None:
            response = Response(404, f"not found: {path} (try {', '.join(self._routes)})\n".encode())
        elif method not in ("GET", "HEAD"):
            response = Response(405, b"only GET and HEAD\n")
        else:
            response = handler(headers)
        await _write(writer, response, keep_alive=keep_alive, head_only=method == "HEAD")
        return keep_alive


async def _unless_client_leaves(
    reader: asyncio.StreamReader, work: Awaitable[Response | StreamResponse]
) -> Response | StreamResponse:
    """Awaits `work`, cancelling it (and the upstream calls under it) if the client closes the connection
    meanwhile: an abandoned request should not go on spending tokens. Checked every CLIENT_CHECK_S."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait([task], timeout=CLIENT_CHECK_S)
            if done:
                return task.result()
            if reader.at_eof():
                raise ConnectionResetError("the client closed the connection before the answer")
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _parse(head: bytes) -> tuple[str, str, dict[str, str], bool]:
    """(method, path without the query, headers, keep-alive) of a request head."""
    lines = head.decode("latin-1").split("\r\n")  # latin-1 decodes any byte
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return method, target.split("?", 1)[0], headers, keep_alive


def _body_length(headers: Mapping[str, str], *, accepted: bool, limit: int) -> int:
    """The request body's length; bodies only where `accepted`, and only with a Content-Length."""
    length = headers.get("content-length", "0")
    if "transfer-encoding" in headers or (not accepted and length != "0"):
        raise _BadRequest(413, "request bodies are not accepted" if not accepted else "send a Content-Length")
    if not length.isdigit():
        raise _BadRequest(400, "malformed Content-Length")
    if int(length) > limit:
        raise _BadRequest(413, f"request body over {limit} bytes (limits.max_request_bytes)")
    return int(length)


def _unauthorized(path: str) -> Response:
    message = "missing or wrong bearer token (header `Authorization: Bearer <token>`)"
    if path == UI_PREFIX:  # a person opening the control panel: to its login form
        return Response(303, b"", TEXT, (("Location", UI_LOGIN_PATH), ("Cache-Control", "no-store")))
    headers = (("WWW-Authenticate", 'Bearer realm="tiergate"'),)
    if path.startswith("/v1/"):  # the OpenAI SDKs read this shape
        error = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
        return Response(401, orjson.dumps({"error": {**error, "param": None}}), "application/json", headers)
    return Response(401, f"{message}\n".encode(), TEXT, headers)


async def _write(
    writer: asyncio.StreamWriter, response: Response, *, keep_alive: bool, head_only: bool = False
) -> None:
    lines = [
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
    ]
    if response.status == 405 and not response.headers:
        lines.append("Allow: GET, HEAD")
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    writer.write(head if head_only else head + response.body)
    await writer.drain()


async def _write_stream(writer: asyncio.StreamWriter, response: StreamResponse, *, keep_alive: bool) -> None:
    lines = [
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}",
        f"Content-Type: {response.content_type}",
        "Transfer-Encoding: chunked",
        "Cache-Control: no-cache",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    if not keep_alive:
        lines.append("Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    # aclosing: a client that goes away mid-stream ends the producer (and the model's generation) at once.
    async with contextlib.aclosing(response.chunks) as chunks:
        async for data in chunks:
            if data:
                writer.write(b"%x\r\n%b\r\n" % (len(data), data))
                await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
