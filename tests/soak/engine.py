"""The soak: a real `tiergate serve` under steady mixed traffic while its upstreams fail 20% of the time.

`await run_soak(Settings(...), workdir)` runs it and returns a `SoakReport`: the figures, and `problems`,
the list of everything that did not reconcile or leaked (empty when all is well). The bounded test
(tests/soak/test_soak.py) and the long bench (benches/bench_soak.py) both run it.

The set-up: one fake provider (tests/fakes/provider_server.py, in this process on its own thread) serving
OpenAI and Anthropic models, whose default is a `FaultMix` (every kind of the fault table); a model on a
closed port (connection refused); a deliberately slow model for client cancellations and deadlines. The
sidecar has five routes (a plain chain with retries, a TTFT guardrail, a hedge, one with the refused model,
the slow one) and four tenants (generous budgets, none, and one limited to 20 requests a minute).

Phases: warm-up traffic, quiet (nothing in flight), snapshot *before*; soak traffic (RSS sampled), quiet,
snapshot *after*. Leaks are *after* minus *before*, so that what warm-up legitimately grows (pools, caches,
the allocator's arenas) does not count.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.provider_server import FakeProvider, RecordedRequest
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tests.soak.fault_mix import FaultMix, label_of
from tests.soak.process_probe import rss_kib, snapshot
from tests.soak.reconcile import check
from tests.soak.report import FAKE_MODELS, Samples, Settings, Snapshot, SoakReport
from tests.soak.traffic import Traffic
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

SLOW_MODEL_ID = "fault:drip:150;tokens=20"  # 20 tokens, one every 150 ms: ~3 s per answer
ROUTE_TOTAL_MS = 3000
QUIET_TIMEOUT_S = 20.0  # the longest a request may still run once traffic stops: total_ms, a retry-after...
SETTLE_S = 1.0  # after the last request ended: sockets finish closing, records are written


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sidecar_config(fake: FakeProvider, refused_port: int) -> dict[str, Any]:
    price = {"input_per_mtok": 1.0, "output_per_mtok": 4.0}

    def hosted(wire: str, model_id: str, base_url: str) -> dict[str, Any]:
        return {
            "provider": wire,
            "base_url": base_url,
            "model": model_id,
            "api_key": "k-soak",
            "price": price,
        }

    models = {
        name: hosted(
            "openai" if name.startswith("gpt") else "anthropic",
            name,
            fake.url_openai if name.startswith("gpt") else fake.url_anthropic,
        )
        for name in FAKE_MODELS
    }
    models["refused"] = {
        **hosted("openai", "refused", f"http://127.0.0.1:{refused_port}/v1"),
        "connect_timeout_ms": 1000,
    }
    models["slow"] = hosted("openai", SLOW_MODEL_ID, fake.url_openai)
    total = {"total_ms": ROUTE_TOTAL_MS}
    return {
        "models": models,
        "routes": {
            "default": {"chain": ["gpt-a", "claude-c"], "retries": 1, **total},
            "chat": {"chain": ["claude-c", "gpt-b", "gpt-a"], "ttft_ms": 400, "retries": 1, **total},
            "search": {
                "chain": ["gpt-b", "claude-d"],
                "hedge_after_ms": 150,
                "ttft_ms": 1000,
                "retries": 1,
                **total,
            },
            "extract": {"chain": ["refused", "claude-d", "gpt-a"], "retries": 0, **total},
            "slow": {"chain": ["slow"], "retries": 0},
        },
        # Quick to reopen, so that breakers opened by a burst of faults (or by the refused model) cycle
        # through half-open many times during the soak.
        "breaker": {"open_ms": 2000},
        "budgets": {
            "acme": {"usd_per_day": 1000.0, "requests_per_minute": 100_000, "tokens_per_minute": 100_000_000},
            "globex": {"usd_per_month": 10_000.0},
            "tiny": {"requests_per_minute": 20},
        },
    }


async def run_soak(settings: Settings, workdir: Path) -> SoakReport:
    """Runs the whole soak and checks it; the report's `problems` lists whatever failed."""
    mix = FaultMix(settings.fault_rate, settings.seed)
    with (
        FakeProvider(default=mix) as fake,
        run_sidecar(sidecar_config(fake, closed_port()), workdir) as side,
    ):
        started = time.monotonic()
        channel = grpc.aio.insecure_channel(side.address)
        try:
            traffic = Traffic(channel, fake.reply_text, settings.seed)
            stub = pb_grpc.TiergateStub(channel)
            problems: list[str] = []
            outcomes = await traffic.run(settings.warmup_s, settings.rate)
            problems += await _settle(stub, fake, "warm-up")
            before = await _snapshot(side, fake)
            rss: list[tuple[float, int]] = []
            sampler = asyncio.create_task(_sample_rss(side.proc.pid, rss))
            outcomes += await traffic.run(settings.soak_s, settings.rate)
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            problems += await _settle(stub, fake, "soak")
            after = await _snapshot(side, fake)
            metrics = await scrape(side.http_address)
            upstream = fake.requests  # the ledgers as they are now, before the closing clean request
            records = await _records(side, len(outcomes))
            wall_s = time.monotonic() - started
            problems += await _still_serves(channel, stub, mix, fake.reply_text)
        finally:
            await channel.close()
        report = SoakReport(
            settings=settings,
            outcomes=outcomes,
            upstream=upstream,
            metrics=metrics,
            records=records,
            before=before,
            after=after,
            rss_timeline=rss,
            wall_s=wall_s,
            problems=problems,
        )
        report.fault_labels = dict(
            Counter(label_of(r.fault) for r in report.upstream if r.model in FAKE_MODELS)
        )
    report.problems += check(report)
    return report


async def _settle(stub: pb_grpc.TiergateStub, fake: FakeProvider, phase: str) -> list[str]:
    """Waits until nothing is in flight in the sidecar and every upstream request has ended."""
    deadline = time.monotonic() + QUIET_TIMEOUT_S
    while True:
        status = await stub.Status(pb.StatusRequest(), timeout=5)
        hanging = [r for r in fake.requests if _in_progress(r)]
        if status.in_flight == 0 and not hanging:
            break
        if time.monotonic() > deadline:
            return [
                f"after the {phase} traffic ended: {status.in_flight} requests still in flight in the "
                f"sidecar, {len(hanging)} upstream requests never ended or closed "
                f"(e.g. {[(r.model, r.fault.kind) for r in hanging[:5]]})"
            ]
        await asyncio.sleep(0.1)
    await asyncio.sleep(SETTLE_S)
    return []


def _in_progress(r: RecordedRequest) -> bool:
    return r.finished_at is None and r.client_closed_at is None and not r.server_closed


async def _snapshot(side: SidecarProcess, fake: FakeProvider) -> Snapshot:
    # /proc first: the scrape's own connection would show for a moment after it, closing.
    process = snapshot(side.proc.pid)
    metrics = await scrape(side.http_address)
    listeners = {int(side.address.rsplit(":", 1)[1]), int(side.http_address.rsplit(":", 1)[1])}
    return Snapshot(
        process=process,
        tasks=int(metrics.get(("tiergate_asyncio_tasks", ()), -1)),
        upstream=len(process.tcp_to(fake.port)),
        inbound=sum(len(process.tcp_from(port)) for port in listeners),
        fake_open=fake.open_connections,
    )


async def _sample_rss(pid: int, into: list[tuple[float, int]]) -> None:
    """Appends (seconds since the soak phase began, RSS in KiB) to `into` twice a second until cancelled."""
    started = time.monotonic()
    while True:
        into.append((time.monotonic() - started, rss_kib(pid)))
        await asyncio.sleep(0.5)


async def scrape(http_address: str) -> Samples:
    """The sidecar's /metrics, as (name, sorted labels) -> value; a fresh connection, closed after."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{http_address}/metrics", timeout=10)
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def _records(side: SidecarProcess, expected: int) -> list[dict[str, Any]]:
    """The decision records, once there are as many as requests (or a few seconds passed)."""
    deadline = time.monotonic() + 5
    while len(side.records) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return [orjson.loads(line) for line in list(side.records)]


async def _still_serves(
    channel: grpc.aio.Channel, stub: pb_grpc.TiergateStub, mix: FaultMix, reply: str
) -> list[str]:
    """With the faults off: health says SERVING and a plain request is answered whole."""
    mix.enabled = False
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    problems = []
    if health.status != health_pb2.HealthCheckResponse.SERVING:
        problems.append(
            f"health after the soak: {health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)}"
        )
    request = pb.CompleteRequest(messages=[pb.Message(role="user", content="Say hello")])
    try:
        response = await stub.Complete(request, timeout=10)
    except grpc.aio.AioRpcError as err:
        return [*problems, f"a clean request after the soak failed: {err.code().name} {err.details()}"]
    if response.text != reply or not response.decision.served_by:
        problems.append(
            f"a clean request after the soak: {response.text!r} from {response.decision.served_by!r}"
        )
    return problems
