"""An in-process gRPC sidecar (the real gRPC listener on a loopback port) for async integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from tiergate.config import parse, resolve
from tiergate.server.grpc import TiergateServicer
from tiergate.server.grpc_server import GrpcServer
from tiergate.sidecar import Sidecar
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc


@dataclass
class InProcess:
    sidecar: Sidecar
    stub: pb_grpc.TiergateStub
    address: str


@asynccontextmanager
async def serve(config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> AsyncIterator[InProcess]:
    sidecar = await Sidecar.start(resolve(parse(dict(config)), env or {}))
    server = GrpcServer(TiergateServicer(sidecar))
    port = await server.start("127.0.0.1:0")
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield InProcess(sidecar, pb_grpc.TiergateStub(channel), address)
    finally:
        await channel.close()
        await server.stop()
        await sidecar.aclose()
