"""Runs `tiergate serve` as a real subprocess for integration tests, on free loopback ports.

The sidecar's stderr (diagnostics) is kept in `log`; its stdout, the decision records, in `records` (one
line each). `http_address` is where /metrics, /healthz and /readyz answer.
"""

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
_SERVING_HTTP = re.compile(r"serving HTTPS? on (\S+)")


class SidecarProcess:
    def __init__(
        self,
        proc: subprocess.Popen[str],
        address: str,
        log: list[str],
        *,
        http_address: str = "",
        records: list[str] | None = None,
        config_path: Path | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.proc = proc
        self.address = address
        self.log = log
        self.http_address = http_address
        self.records = records if records is not None else []
        self.config_path = config_path
        self.channel = (
            grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
        )
        self.stub = pb_grpc.TiergateStub(self.channel)

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """The first stderr line containing `text`, once the sidecar has printed it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.log):
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"the sidecar never printed {text!r}:\n{''.join(self.log)}")

    def health(self, service: str = "") -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


@contextmanager
def run_sidecar(
    config: Mapping[str, Any] | None,
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    *,
    grpc_address: str = "127.0.0.1:0",
    credentials: grpc.ChannelCredentials | None = None,
) -> Iterator[SidecarProcess]:
    """Starts the sidecar on `config` (None: the embedded default) and yields once it answers SERVING.

    `credentials`: for a sidecar serving TLS (the channel `stub` and `health` use)."""
    args = [sys.executable, "-m", "tiergate.cli", "serve", "--grpc", grpc_address, "--http", "127.0.0.1:0"]
    path: Path | None = None
    if config is not None:
        path = tmp_path / "tiergate.yaml"
        path.write_text(yaml.safe_dump(dict(config)))
        args += ["--config", str(path)]
    proc_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=proc_env)
    log: list[str] = []
    records: list[str] = []
    address: list[str] = []
    http_address: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            found_http = _SERVING_HTTP.search(line)
            if found_http:
                http_address.append(found_http.group(1))
            found = _SERVING.search(line)
            if found:
                address.append(found.group(1))
                ready.set()
        ready.set()

    def pump_records() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            records.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    record_reader = threading.Thread(target=pump_records, daemon=True)
    record_reader.start()
    sidecar: SidecarProcess | None = None
    try:
        if not ready.wait(timeout_s) or not address:
            raise RuntimeError("the sidecar did not start:\n" + "".join(log))
        sidecar = SidecarProcess(
            proc,
            address[0],
            log,
            http_address=http_address[0] if http_address else "",
            records=records,
            config_path=path,
            credentials=credentials,
        )
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
        record_reader.join(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()
        if proc.stdout is not None:
            proc.stdout.close()
