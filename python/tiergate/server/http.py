"""The HTTP listener (`listen.http`): `/metrics` (Prometheus), `/healthz` (process up), `/readyz` (serving).

HTTP/1.1 comes from aiohttp's server (its C parser: keep-alive, pipelining, chunked request bodies,
`Expect: 100-continue`, and the RFC 9112 checks, e.g. a 400 for whitespace before a header's colon); this
module only routes. GET and HEAD of fixed paths (`routes`); mounted `App`s (the OpenAI-compatible facade,
`server/openai_facade.py`; the control panel, `server/ui.py`) serve every method of their own paths, with
request bodies (Content-Length or chunked, up to `max_body_bytes`) and streamed responses (chunked transfer
encoding). With a bearer token
(`server/auth.py`) every path but the health ones needs it; with an `ssl.SSLContext` it serves HTTPS. A
client that disconnects cancels its request (and the upstream calls under it). `drain` stops accepting and
lets requests in progress finish, for a graceful shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson
from aiohttp import HttpVersion10, web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from tiergate.server.auth import UI_LOGIN_PATH, UI_PREFIX, BearerToken
from tiergate.server.sse_relay import SseRelaySink
from tiergate.telemetry import Telemetry

logger = logging.getLogger(__name__)

MAX_FIELD_BYTES = 16 * 1024  # a request line or one header line; longer ones are answered 400
MAX_BODY_BYTES = 4 * 1024 * 1024
IDLE_TIMEOUT_S = 60.0  # a keep-alive connection with no new request is closed after this
LINGER_S = 1.0  # after a refused body, how long the rest of it is read (and dropped) before closing
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StreamResponse:
    """Sent with chunked transfer encoding, one chunk per item of `chunks` (e.g. server-sent events).

    `relay`: a relay sink that writes to the same response, in order with `chunks` (`relay.py`).
    """

    status: int
    chunks: AsyncGenerator[bytes, None]
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()
    relay: SseRelaySink | None = None


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


class _ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp logs each malformed request (any client can send one) as an error with its traceback: here it
    is a debug line. Other errors stay errors."""

    def exception(self, msg: object, *args: object, exc_info: object = True, **kwargs: object) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.debug("bad HTTP request: %s", exc_info)
        else:
            self.error(msg, *args, exc_info=exc_info, **kwargs)  # type: ignore[arg-type]


class HttpServer:
    """Serves GET/HEAD of `routes` (path -> handler), and every method of a mounted `App`'s paths."""

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
        self._token = token
        self._tls = tls
        self._max_body = max_body_bytes
        self._runner: web.AppRunner | None = None
        self._sites: list[web.TCPSite] = []

    async def start(self, address: str) -> tuple[str, int]:
        """Listens on "host:port" (port 0: any free one); returns the address actually bound."""
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise OSError(f"listen.http: {address!r} is not host:port")
        host = host.strip("[]")
        app = web.Application(client_max_size=self._max_body, handler_args={"lingering_time": LINGER_S})
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=0.0,  # `stop` cancels at once what is in progress (`drain` gave it its grace)
            access_log=None,
            handler_cancellation=True,  # a client that leaves cancels its request and the upstream calls
            keepalive_timeout=IDLE_TIMEOUT_S,
            max_line_size=MAX_FIELD_BYTES,
            max_field_size=MAX_FIELD_BYTES,
            logger=_ProtocolLog(logger),
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, int(port), ssl_context=self._tls, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"cannot listen on {address}: {exc.strerror or exc}") from None
        self._sites.append(site)
        bound = self._runner.addresses[0]
        return host, int(bound[1])

    def mount(self, app: App) -> None:
        """From now on `app` serves its paths (before, they answer 404)."""
        self._apps.append(app)

    async def drain(self, grace_s: float) -> None:
        """Stops accepting, closes idle connections, and gives requests in progress `grace_s` to finish;
        then `stop` cancels what is left."""
        for site in self._sites:
            await site.stop()
        self._sites.clear()
        if self._runner is not None and self._runner.server is not None:
            await self._runner.server.shutdown(grace_s)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._sites.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.version < HttpVersion10:  # HTTP/0.9: no headers; nothing tiergate serves speaks it
            return _closing(Response(400, b"not an HTTP/1.x request\n"))
        path = request.path
        app = next((a for a in self._apps if path in a.paths), None)
        has_body = request.body_exists
        if app is None and has_body:
            return _closing(Response(413, b"request bodies are not accepted\n"))
        if app is not None and (request.content_length or 0) > self._max_body:
            return _closing(_too_large(self._max_body))
        headers = {name.lower(): value for name, value in request.headers.items()}
        if self._token is not None and not self._token.http_allows(path, headers):
            # The body stays unread, so the connection cannot be reused.
            return _closing(_unauthorized(path))
        if app is not None:
            try:
                body = await request.read() if has_body else b""
            except web.HTTPRequestEntityTooLarge:
                return _closing(_too_large(self._max_body))
            answer = await app(HttpRequest(request.method, path, headers, body))
            if isinstance(answer, StreamResponse):
                return await _stream(request, answer)
            return _response(answer)
        handler = self._routes.get(path)
        if handler is None:
            return _response(Response(404, f"not found: {path} (try {', '.join(self._routes)})\n".encode()))
        if request.method not in ("GET", "HEAD"):
            return _response(Response(405, b"only GET and HEAD\n", headers=(("Allow", "GET, HEAD"),)))
        return _response(handler(headers))


def _too_large(limit: int) -> Response:
    return Response(413, f"request body over {limit} bytes (limits.max_request_bytes)\n".encode())


def _unauthorized(path: str) -> Response:
    message = "missing or wrong bearer token (header `Authorization: Bearer <token>`)"
    if path == UI_PREFIX:  # a person opening the control panel: to its login form
        return Response(303, b"", TEXT, (("Location", UI_LOGIN_PATH), ("Cache-Control", "no-store")))
    headers = (("WWW-Authenticate", 'Bearer realm="tiergate"'),)
    if path.startswith("/v1/"):  # the OpenAI SDKs read this shape
        error = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
        return Response(401, orjson.dumps({"error": {**error, "param": None}}), "application/json", headers)
    return Response(401, f"{message}\n".encode(), TEXT, headers)


def _response(response: Response) -> web.Response:
    answer = web.Response(status=response.status, body=response.body, headers=response.headers)
    answer.headers["Content-Type"] = response.content_type
    return answer


def _closing(response: Response) -> web.Response:
    """A refusal that leaves the request's body unread: the connection closes after it."""
    answer = _response(response)
    answer.force_close()
    return answer


async def _stream(request: web.Request, response: StreamResponse) -> web.StreamResponse:
    answer = web.StreamResponse(status=response.status, headers=response.headers)
    answer.headers["Content-Type"] = response.content_type
    answer.headers["Cache-Control"] = "no-cache"
    answer.enable_chunked_encoding()
    # aclosing: a client that goes away mid-stream ends the producer (and the model's generation) at once.
    async with contextlib.aclosing(response.chunks) as chunks:
        await answer.prepare(request)
        if response.relay is not None:
            response.relay.attach(answer.write)
        async for data in chunks:
            if data:
                await answer.write(data)
    await answer.write_eof()
    return answer
