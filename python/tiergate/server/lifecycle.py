"""Starting and stopping the sidecar: the gRPC server with health and reflection, the HTTP listener
(metrics, health, readiness, the OpenAI-compatible facade), config reload on SIGHUP or file change, signals,
shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tiergate.config import Config
from tiergate.reload import ConfigReloader, LiveSidecar
from tiergate.server.grpc import TiergateServicer
from tiergate.server.http import HttpServer, observability_routes
from tiergate.server.openai_facade import OpenAIFacade
from tiergate.sidecar import Sidecar
from tiergate.telemetry import Telemetry
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Tiergate"].full_name
SHUTDOWN_GRACE_S = 10.0


async def serve(
    config: Config,
    *,
    stop: asyncio.Event | None = None,
    config_path: str | None = None,
    telemetry: Telemetry | None = None,
) -> None:
    """Serves until SIGTERM/SIGINT (or `stop` is set), then drains in-flight requests and returns.

    With `config_path`, SIGHUP or a change of that file reloads the config.
    """
    telemetry = telemetry if telemetry is not None else Telemetry(config)
    http: HttpServer | None = None
    if config.listen.http is not None:
        # Up before the models load, so that /healthz answers (and /readyz says "not ready") meanwhile.
        http = HttpServer(observability_routes(telemetry))
        http_host, http_port = await http.start(config.listen.http)
        print(
            f"tiergate: serving HTTP on {http_host}:{http_port} (/metrics, /healthz, /readyz, /v1)",
            file=sys.stderr,
            flush=True,
        )
    try:
        sidecar = await Sidecar.start(config, telemetry=telemetry)
    except BaseException:
        if http is not None:
            await http.stop()
        raise
    live = LiveSidecar(sidecar)
    if http is not None:
        http.mount(OpenAIFacade(live))
    telemetry.watch(lambda: live.current)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_TiergateServicer_to_server(TiergateServicer(live), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(config.listen.grpc)
    except RuntimeError as exc:
        await sidecar.aclose()
        if http is not None:
            await http.stop()
        raise OSError(f"cannot listen on {config.listen.grpc}: {exc}") from None
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = config.listen.grpc.rsplit(":", 1)[0]
    print(
        f"tiergate: serving gRPC on {host}:{port} (models: {', '.join(config.models)})",
        file=sys.stderr,
        flush=True,
    )

    telemetry.ready = True

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = [signal.SIGTERM, signal.SIGINT]
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    reloader: ConfigReloader | None = None
    watcher: asyncio.Task[None] | None = None
    if config_path is not None:
        reloader = ConfigReloader(live, config_path, telemetry)
        loop.add_signal_handler(signal.SIGHUP, reloader.request_reload)
        signals.append(signal.SIGHUP)
        watcher = asyncio.create_task(reloader.watch())
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        telemetry.ready = False
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await health_servicer.enter_graceful_shutdown()
        await server.stop(SHUTDOWN_GRACE_S)
        if reloader is not None:
            await reloader.aclose()
        await live.current.aclose()
        if http is not None:
            await http.stop()
        await telemetry.aclose()
        print("tiergate: stopped", file=sys.stderr, flush=True)
