"""What tracing adds to a request, and that an unreachable collector changes nothing for requests.

    python benches/bench_tracing.py          # or: make bench BENCH=tracing

Four Sidecars of one config in this process, identical but for their telemetry (decision records and metrics
in all four, as `tiergate serve` runs them; the records go to /dev/null):

- **off**: no `otlp_endpoint`;
- **on, collector up**: spans built and exported over OTLP/HTTP to a receiver in another process that accepts
  every batch (a small Python OTLP/HTTP server: what it costs is not this process's);
- **on, collector down**: the OTLP endpoint is a loopback port where nothing listens;
- **on, joining a caller's trace**: as "collector up", each request with a `traceparent` header parsed as the
  HTTP facade parses it.

The upstream is an in-process provider that answers at once, so the figures are tiergate's own work. Each
timed request is `await sidecar.complete(request)` plus one turn of the loop, in which the deferred telemetry
(span building included) runs; the exporter's background thread (OTLP encoding, the POST) competes for the
GIL and so counts too. Batches of the variants rotate over several rounds; the figure per variant is the
median of its batches' mean µs per request. Every request of every variant must be answered: with the
collector down, requests are unaffected. Each part (header parsing, ids and sampling, span building, OTLP
encoding) is also timed alone, for a request served at once and for one with a fallback and a hedge.
Results go to benches/results/bench_tracing.md. Exit status 1 if a request failed or the target is missed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_telemetry import CONFIG, PROMPT, build, reports
from harness import command_line, free_port, machine, table, write_result

from tiergate.config import parse, resolve
from tiergate.request import Message, Request
from tiergate.sidecar import Sidecar
from tiergate.telemetry import Telemetry, configure_logging

TARGET_US = 500.0  # what tracing may add per request (CPU, after the answer, mostly the OTLP encoding)
ROUNDS = 8
BATCH = 1_000
WARMUP = 1_000
RECORD_CALLS = 5_000
TRACEPARENT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Accept(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Accept).serve_forever()
"""


def traced(endpoint: str | None) -> Sidecar:
    data = {**CONFIG, "telemetry": {"otlp_endpoint": endpoint}} if endpoint else CONFIG
    telemetry = Telemetry()
    sidecar = build(telemetry)
    telemetry.configure(resolve(parse(data), {}))
    return sidecar


async def batch_us(sidecar: Sidecar, request: Request, n: int, *, join: bool) -> float:
    complete = sidecar.complete
    parent_from = sidecar.telemetry.parent_from
    start = time.perf_counter()
    for _ in range(n):
        await complete(request, parent=parent_from(TRACEPARENT) if join else None)
        await asyncio.sleep(0)
    return (time.perf_counter() - start) / n * 1e6


async def measure(up: str, down: str) -> dict[str, list[float]]:
    variants = {
        "off": (traced(None), False),
        "on, collector up": (traced(up), False),
        "on, collector down": (traced(down), False),
        "on, joining a caller's trace": (traced(up), True),
    }
    request = Request("", [Message("user", PROMPT)], tenant="acme")
    for sidecar, join in variants.values():
        await batch_us(sidecar, request, WARMUP, join=join)
    out: dict[str, list[float]] = {name: [] for name in variants}
    gc.collect()
    names = list(variants)
    for i in range(ROUNDS):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            sidecar, join = variants[name]
            out[name].append(await batch_us(sidecar, request, BATCH, join=join))
    for name, (sidecar, _) in variants.items():
        served = sidecar.telemetry.metrics.registry.get_sample_value(
            "tiergate_requests_total", {"route": "default", "model": "mini", "outcome": "ok"}
        )
        assert served == WARMUP + ROUNDS * BATCH, f"{name}: not every request was answered: {served}"
    for sidecar, _ in variants.values():
        tracing = sidecar.telemetry.tracing
        if tracing is not None:
            await asyncio.to_thread(tracing.flush, 100)
    return out


def per_call_us(call: Callable[[], object]) -> float:
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(RECORD_CALLS):
            call()
        samples.append((time.perf_counter() - start) / RECORD_CALLS * 1e6)
    return statistics.median(samples)


def parts_us() -> list[tuple[str, float]]:
    """Each part of a traced request's cost, alone."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    config = resolve(parse({**CONFIG, "telemetry": {"otlp_endpoint": "http://127.0.0.1:9"}}), {})
    telemetry = Telemetry(config, span_exporter=exporter)
    tracing = telemetry.tracing
    assert tracing is not None
    parse_header = "`Telemetry.parent_from` (parse a `traceparent` header)"
    rows = [
        (parse_header, per_call_us(lambda: telemetry.parent_from(TRACEPARENT))),
        ("`Tracing.start` (ids and sampling, no caller)", per_call_us(lambda: tracing.start(None))),
    ]
    parent = telemetry.parent_from(TRACEPARENT)
    rows.append(("`Tracing.start` (joining the caller's trace)", per_call_us(lambda: tracing.start(parent))))
    # Before the loops below, whose spans overflow the batch processor's queue.
    for name, report in reports():
        report.trace = tracing.start(None)
        exporter.clear()
        tracing.record(report)
        tracing.flush()
        spans = exporter.get_finished_spans()
        assert report.decision is not None and len(spans) == 1 + len(report.decision.attempts)
        rows.append(
            (
                f"OTLP encoding in the export thread: {name}",
                per_call_us(lambda spans=spans: encode_spans(spans).SerializePartialToString()),
            )
        )
    for name, report in reports():
        report.trace = tracing.start(None)
        rows.append((f"`Tracing.record`: {name}", per_call_us(lambda report=report: tracing.record(report))))
    tracing.shutdown()
    return rows


def main() -> int:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    up, down = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{free_port()}"
    devnull = open(os.devnull, "w")  # closed below, after the logging thread stops
    stop_logging = configure_logging(records=devnull, diagnostics=sys.stderr)
    try:
        time.sleep(0.5)  # the receiver binds its port
        results = asyncio.run(measure(up, down))
        parts = parts_us()
    finally:
        stop_logging()
        devnull.close()
        receiver.terminate()
        receiver.wait()
    med = {name: statistics.median(v) for name, v in results.items()}
    off = med["off"]
    rows = [
        [name, f"{m:.1f}", f"{m - off:+.1f}", f"{min(results[name]):.1f} to {max(results[name]):.1f}"]
        for name, m in med.items()
    ]
    added = med["on, collector up"] - off
    down_added = med["on, collector down"] - off
    ok = added <= TARGET_US
    lines = [
        "# Tracing: what it adds per request, and the collector down",
        "",
        f"Tracing adds **{added:.1f} µs** of CPU per request ({med['on, collector up']:.1f} µs with it, "
        f"{off:.1f} µs without), {'within' if ok else 'OVER'} the target of {TARGET_US:.0f} µs; with the "
        f"collector down it adds {down_added:.1f} µs and every request is answered (the spans are dropped, "
        "one warning is logged). The spans are built after the answer, in the next turn of the event loop, "
        "so a client does not wait for them: the figures are the CPU the sidecar spends.",
        "",
        "## Request path, in process (analysis, plan, dispatch to an instant upstream, records, metrics, "
        "spans)",
        "",
        *table(["variant", "µs per request (median of batches)", "vs off", "range of batch means"], rows),
        "",
        f"{ROUNDS} rounds of one batch of {BATCH:,} sequential requests per variant, the order rotating each "
        f"round, after {WARMUP:,} warm-up requests each; each request is `await sidecar.complete(...)` plus "
        "one `asyncio.sleep(0)`. Every variant answered all of its requests.",
        "",
        "## Each part alone",
        "",
        *table(["part", "µs per call (median of 5 x 5,000)"], [[n, f"{us:.1f}"] for n, us in parts]),
        "",
        "`Tracing.record` builds the request span and one span per attempt and hands them to the batch "
        "processor; the OTLP encoding (and the HTTP POST) happen in the SDK's export thread, which competes "
        "for the GIL: the request-path figures above include it.",
        "",
        "## Machine",
        "",
        *machine(),
        f"- load average before measuring: {load}",
        f"- command: `{command_line()}` (extension built with `maturin develop --release`)",
    ]
    write_result("bench_tracing", lines)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
