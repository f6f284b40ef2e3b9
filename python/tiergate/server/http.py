"""The HTTP listener (`listen.http`): `/metrics` (Prometheus), `/healthz` (process up), `/readyz` (serving).

A small HTTP/1.1 server on asyncio streams, enough for scrapers and probes: GET and HEAD of fixed paths,
keep-alive, no request bodies. The OpenAI-compatible facade will extend or replace it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tiergate.telemetry import Telemetry

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
IDLE_TIMEOUT_S = 60.0  # a keep-alive connection with no new request is closed after this
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT


Handler = Callable[[], Response]


def observability_routes(telemetry: Telemetry) -> dict[str, Handler]:
    """The three endpoints every sidecar serves."""

    def metrics() -> Response:
        return Response(200, generate_latest(telemetry.metrics.registry), CONTENT_TYPE_LATEST)

    def healthz() -> Response:
        return Response(200, b"ok\n")

    def readyz() -> Response:
        return Response(200, b"ready\n") if telemetry.ready else Response(503, b"not ready\n")

    return {"/metrics": metrics, "/healthz": healthz, "/readyz": readyz}


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    """Serves GET/HEAD of `routes` (path -> handler)."""

    def __init__(self, routes: Mapping[str, Handler]) -> None:
        self._routes = dict(routes)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, address: str) -> tuple[str, int]:
        """Listens on "host:port" (port 0: any free one); returns the address actually bound."""
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise OSError(f"listen.http: {address!r} is not host:port")
        host = host.strip("[]")
        try:
            self._server = await asyncio.start_server(self._accept, host, int(port))
        except OSError as exc:
            raise OSError(f"cannot listen on {address}: {exc.strerror or exc}") from None
        bound = self._server.sockets[0].getsockname()
        return host, int(bound[1])

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
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            logger.debug("HTTP client went away: %s", exc)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answers one request; False when the connection should close."""
        try:
            async with asyncio.timeout(IDLE_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            return False
        except asyncio.LimitOverrunError:
            await _write(writer, Response(431, b"request head too large\n"), keep_alive=False)
            return False
        except asyncio.IncompleteReadError:
            return False  # closed between requests
        if len(head) > MAX_HEAD_BYTES:
            await _write(writer, Response(431, b"request head too large\n"), keep_alive=False)
            return False
        try:
            method, path, keep_alive = _parse(head)
        except _BadRequest as exc:
            await _write(writer, Response(exc.status, f"{exc}\n".encode()), keep_alive=False)
            return False
        handler = self._routes.get(path)
        if handler is None:
            response = Response(404, f"not found: {path} (try {', '.join(self._routes)})\n".encode())
        elif method not in ("GET", "HEAD"):
            response = Response(405, b"only GET and HEAD\n")
        else:
            response = handler()
        await _write(writer, response, keep_alive=keep_alive, head_only=method == "HEAD")
        return keep_alive


def _parse(head: bytes) -> tuple[str, str, bool]:
    """(method, path without the query, keep-alive) of a request head."""
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
        headers[name.strip().lower()] = value.strip().lower()
    if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
        raise _BadRequest(413, "request bodies are not accepted")
    connection = headers.get("connection", "")
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return method, target.split("?", 1)[0], keep_alive


async def _write(
    writer: asyncio.StreamWriter, response: Response, *, keep_alive: bool, head_only: bool = False
) -> None:
    lines = [
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
    ]
    if response.status == 405:
        lines.append("Allow: GET, HEAD")
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    writer.write(head if head_only else head + response.body)
    await writer.drain()
