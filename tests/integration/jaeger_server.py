"""Runs a real Jaeger (v2 all-in-one, built by tools/jaeger.sh) on free loopback ports, in memory.

`otlp_url` takes OTLP/HTTP spans; `trace(trace_id)` reads a trace back from the query API
(`GET /api/traces/<id>`), polling for a bounded time until it holds what a test waits for.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "jaeger.sh"
GO_MISSING = 3  # tools/jaeger.sh's exit status when Go is not installed

CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def jaeger_binary() -> tuple[str | None, str]:
    """(the binary, "") once built (building it now if missing), or (None, why not)."""
    try:
        done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1500)
    except subprocess.TimeoutExpired:
        return None, "building Jaeger took over 25 minutes"
    if done.returncode == GO_MISSING:
        return None, "Go is not installed, so Jaeger cannot be built (tools/jaeger.sh)"
    if done.returncode != 0:
        return None, f"tools/jaeger.sh failed: {done.stderr[-2000:]}"
    return done.stdout.strip().splitlines()[-1], ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Jaeger:
    def __init__(self, proc: subprocess.Popen[str], otlp: int, query: int, log: Path) -> None:
        self.proc = proc
        self.otlp_url = f"http://127.0.0.1:{otlp}"
        self.query_url = f"http://127.0.0.1:{query}"
        self.log = log

    def trace(
        self, trace_id: str, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 30
    ) -> Trace:
        """The trace's spans once `until(spans)` holds (AssertionError after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        spans: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            response = httpx.get(f"{self.query_url}/api/traces/{trace_id}", timeout=5)
            if response.status_code == 200:
                data = response.json().get("data") or []
                spans = [span for trace in data for span in trace["spans"]]
                if until(spans):
                    return Trace(data[0], spans)
            time.sleep(0.1)
        raise AssertionError(f"trace {trace_id} never held what was expected: {spans}")


class Trace:
    def __init__(self, data: dict[str, Any], spans: list[dict[str, Any]]) -> None:
        self.data = data
        self.spans = spans

    def named(self, prefix: str) -> list[dict[str, Any]]:
        return sorted(
            (s for s in self.spans if s["operationName"].startswith(prefix)), key=lambda s: s["startTime"]
        )

    @staticmethod
    def tags(span: dict[str, Any]) -> dict[str, Any]:
        return {t["key"]: t["value"] for t in span["tags"]}

    @staticmethod
    def parent(span: dict[str, Any]) -> str | None:
        refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        return refs[0]["spanID"] if refs else None


@contextmanager
def run_jaeger(binary: str, timeout_s: float = 60.0) -> Iterator[Jaeger]:
    with tempfile.TemporaryDirectory(prefix="tiergate-jaeger-") as workdir:
        otlp, query, query_grpc = _free_port(), _free_port(), _free_port()
        config = Path(workdir) / "jaeger.yaml"
        config.write_text(CONFIG.format(otlp=otlp, query=query, query_grpc=query_grpc))
        log = Path(workdir) / "jaeger.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [binary, "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, text=True
            )
        jaeger = Jaeger(proc, otlp, query, log)
        try:
            deadline = time.monotonic() + timeout_s
            while not _answers(jaeger):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Jaeger did not start: {log.read_text()[-3000:]}")
                time.sleep(0.1)
            yield jaeger
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answers(jaeger: Jaeger) -> bool:
    try:
        query = httpx.get(f"{jaeger.query_url}/api/services", timeout=1).status_code == 200
        with socket.create_connection(("127.0.0.1", int(jaeger.otlp_url.rsplit(":", 1)[1])), timeout=1):
            return query
    except (httpx.HTTPError, OSError):
        return False
