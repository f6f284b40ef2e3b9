"""Runs `tiergate serve` as a real subprocess for integration tests, on a free loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

_SERVING = re.compile(r"serving gRPC on (\S+)")


class SidecarProcess:
    def __init__(self, proc: subprocess.Popen[str], address: str, log: list[str]) -> None:
        self.proc = proc
        self.address = address
        self.log = log
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.TiergateStub(self.channel)

    def health(self, service: str = "") -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


@contextmanager
def run_sidecar(
    config: Mapping[str, Any] | None,
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Iterator[SidecarProcess]:
    """Starts the sidecar on `config` (None: the embedded default) and yields once it answers SERVING."""
    args = [sys.executable, "-m", "tiergate.cli", "serve", "--grpc", "127.0.0.1:0"]
    if config is not None:
        path = tmp_path / "tiergate.yaml"
        path.write_text(yaml.safe_dump(dict(config)))
        args += ["--config", str(path)]
    proc_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=proc_env)
    log: list[str] = []
    address: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            found = _SERVING.search(line)
            if found:
                address.append(found.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    sidecar: SidecarProcess | None = None
    try:
        if not ready.wait(timeout_s) or not address:
            raise RuntimeError("the sidecar did not start:\n" + "".join(log))
        sidecar = SidecarProcess(proc, address[0], log)
        deadline = time.monotonic() + timeout_s
        while sidecar.health() != health_pb2.HealthCheckResponse.SERVING:
            if time.monotonic() > deadline:
                raise RuntimeError("the sidecar never reported SERVING")
            time.sleep(0.05)
        yield sidecar
    finally:
        if sidecar is not None:
            sidecar.channel.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()
