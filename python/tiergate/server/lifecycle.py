"""Starting and stopping the sidecar: the gRPC server with health and reflection, signals, shutdown."""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tiergate.config import Config
from tiergate.server.grpc import TiergateServicer
from tiergate.sidecar import Sidecar
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Tiergate"].full_name
SHUTDOWN_GRACE_S = 10.0


async def serve(config: Config, *, stop: asyncio.Event | None = None) -> None:
    """Serves until SIGTERM/SIGINT (or `stop` is set), then drains in-flight requests and returns."""
    sidecar = await Sidecar.start(config)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_TiergateServicer_to_server(TiergateServicer(sidecar), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(config.listen.grpc)
    except RuntimeError as exc:
        await sidecar.aclose()
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

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await health_servicer.enter_graceful_shutdown()
        await server.stop(SHUTDOWN_GRACE_S)
        await sidecar.aclose()
        print("tiergate: stopped", file=sys.stderr, flush=True)
