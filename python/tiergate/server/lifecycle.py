"""Starting and stopping the sidecar: the gRPC server with health and reflection, the HTTP listener
(metrics, health, readiness, the OpenAI-compatible facade), auth and TLS, config reload on SIGHUP or file
change, signals, graceful shutdown.

Shutdown (SIGTERM, SIGINT or `stop`): readiness and the gRPC health service turn NOT_SERVING at once; new
requests are refused (gRPC UNAVAILABLE, HTTP 503: "shutting down") while the health service keeps answering
NOT_SERVING, and the HTTP listener stops accepting connections. Requests in progress get
`listen.shutdown_grace_ms` to finish; whatever still runs then is cancelled (its upstream connections closed).
A second signal skips the rest of the grace period. The process then exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import Awaitable
from typing import Any

from tiergate.config import Config
from tiergate.reload import ConfigReloader, LiveSidecar
from tiergate.server.auth import BearerToken, is_loopback
from tiergate.server.grpc import TiergateServicer
from tiergate.server.grpc_server import GrpcServer
from tiergate.server.grpc_unix import UnixGrpcServer
from tiergate.server.http import HttpServer, observability_routes
from tiergate.server.openai_embeddings import OpenAIEmbeddings
from tiergate.server.openai_facade import OpenAIFacade
from tiergate.server.ui import ControlPanel
from tiergate.sidecar import Sidecar
from tiergate.telemetry import Telemetry

# Room for the protobuf framing around a request whose text is at the size limit.
_MESSAGE_OVERHEAD_BYTES = 64 * 1024
_MIN_STREAMS = 1024


def _say(line: str) -> None:
    print(f"tiergate: {line}", file=sys.stderr, flush=True)


def _token(config: Config) -> BearerToken | None:
    token = config.listen.auth_token
    return BearerToken(token.get_secret_value()) if token is not None else None


def _warn_if_exposed(config: Config) -> None:
    if config.listen.auth_token is not None:
        return
    for name, address in (("grpc", config.listen.grpc), ("http", config.listen.http)):
        if address is not None and not is_loopback(address):
            _say(f"warning: listen.{name} {address} is reachable from other hosts and no auth_token is set")


def _http_tls(config: Config) -> ssl.SSLContext | None:
    if config.listen.tls is None:
        return None
    cert, key = config.listen.tls
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _grpc_server(config: Config, live: LiveSidecar) -> GrpcServer | UnixGrpcServer:
    """The Rust listener; grpc.aio on a unix socket, where gRPC-core clients cannot reach the Rust one."""
    token = config.listen.auth_token.get_secret_value() if config.listen.auth_token is not None else None
    max_message_bytes = config.limits.max_request_bytes + _MESSAGE_OVERHEAD_BYTES
    if config.listen.grpc.startswith("unix:"):
        return UnixGrpcServer(
            TiergateServicer(live), token=token, tls=config.listen.tls, max_message_bytes=max_message_bytes
        )
    return GrpcServer(
        TiergateServicer(live),
        token=token,
        tls=config.listen.tls,
        max_message_bytes=max_message_bytes,
        # A bound on what one connection may hold open, well past the admission cap (calls beyond the cap
        # are answered RESOURCE_EXHAUSTED at once, not queued by the client's HTTP/2 stack).
        max_streams_per_connection=max(2 * config.limits.max_concurrent_requests + 64, _MIN_STREAMS),
    )


async def _listen_grpc(server: GrpcServer | UnixGrpcServer, address: str) -> str:
    """Starts the gRPC listener; returns the address bound, for the log line."""
    port = await server.start(address)
    if port is None:
        return address
    return f"{address.rsplit(':', 1)[0]}:{port}"


async def serve(
    config: Config,
    *,
    stop: asyncio.Event | None = None,
    config_path: str | None = None,
    telemetry: Telemetry | None = None,
) -> None:
    """Serves until SIGTERM/SIGINT (or `stop` is set), then shuts down gracefully and returns.

    With `config_path`, SIGHUP or a change of that file reloads the config.
    """
    telemetry = telemetry if telemetry is not None else Telemetry(config)
    _warn_if_exposed(config)
    scheme = "HTTPS" if config.listen.tls is not None else "HTTP"
    http: HttpServer | None = None
    if config.listen.http is not None:
        # Up before the models load, so that /healthz answers (and /readyz says "not ready") meanwhile.
        http = HttpServer(
            observability_routes(telemetry),
            token=_token(config),
            tls=_http_tls(config),
            max_body_bytes=config.limits.max_request_bytes + _MESSAGE_OVERHEAD_BYTES,
        )
        http_host, http_port = await http.start(config.listen.http)
        _say(f"serving {scheme} on {http_host}:{http_port} (/metrics, /healthz, /readyz, /v1, /ui)")
    try:
        sidecar = await Sidecar.start(config, telemetry=telemetry)
    except BaseException:
        if http is not None:
            await http.stop()
        raise
    live = LiveSidecar(sidecar)
    if http is not None:
        http.mount(OpenAIFacade(live))
        http.mount(OpenAIEmbeddings(live))
        panel = ControlPanel(
            live, telemetry, token=_token(config), config_path=config_path, tls=config.listen.tls is not None
        )
        http.mount(panel)
    telemetry.watch(lambda: live.current)
    server = _grpc_server(config, live)
    try:
        bound = await _listen_grpc(server, config.listen.grpc)
    except (OSError, ValueError):
        await sidecar.aclose()
        if http is not None:
            await http.stop()
        raise
    await server.set_serving(True)
    tls = ", TLS" if config.listen.tls is not None else ""
    auth = ", bearer token required" if config.listen.auth_token is not None else ""
    _say(f"serving gRPC on {bound} (models: {', '.join(config.models)}{tls}{auth})")
    telemetry.ready = True

    stop = stop or asyncio.Event()
    hurry = asyncio.Event()  # a second signal: skip the rest of the grace period
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    signals = [signal.SIGTERM, signal.SIGINT]
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    reloader: ConfigReloader | None = None
    watcher: asyncio.Task[None] | None = None
    if config_path is not None:
        reloader = ConfigReloader(live, config_path, telemetry)
        loop.add_signal_handler(signal.SIGHUP, reloader.request_reload)
        signals.append(signal.SIGHUP)
        watcher = asyncio.create_task(reloader.watch())
    try:
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        current = live.current
        current.refuse_new()
        telemetry.ready = False
        await server.set_serving(False)
        grace_s = current.config.listen.shutdown_grace_ms / 1000
        _say(f"stopping: {current.in_flight} requests in flight, {grace_s:g} s to finish")
        if not await _drain(current, http, grace_s, hurry):
            _say(f"cancelling the {current.in_flight} requests still in flight")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        telemetry.ready = False
        if watcher is not None and not watcher.done():
            watcher.cancel()
        await server.stop()  # cancels the calls still running
        if reloader is not None:
            await reloader.aclose()
        await live.current.aclose()
        if http is not None:
            await http.stop()
        await telemetry.aclose()
        _say("stopped")


async def _drain(sidecar: Sidecar, http: HttpServer | None, grace_s: float, hurry: asyncio.Event) -> bool:
    """Waits up to `grace_s` (or until a second signal) for the requests in progress; whether they all
    finished. The HTTP listener stops accepting now; `server.stop` and `http.stop` cancel what is left."""
    finishing: list[Awaitable[Any]] = [sidecar.wait_idle()]
    if http is not None:
        finishing.append(http.drain(grace_s))
    finished = asyncio.ensure_future(asyncio.gather(*finishing))
    hurried = asyncio.ensure_future(hurry.wait())
    try:
        await asyncio.wait([finished, hurried], timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
        return bool(finished.done())
    finally:
        for task in (finished, hurried):
            task.cancel()
        await asyncio.gather(finished, hurried, return_exceptions=True)
