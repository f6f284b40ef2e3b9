"""Issue 3: the TTFT guardrail. With the primary stalled before its first byte, how long does a request take?

    .venv/bin/python benches/bench_guardrail.py                 # ~1 minute, writes results/bench_guardrail.md
    .venv/bin/python benches/bench_guardrail.py --ttft-ms 200 --quick

The route is `{chain: [primary, backup], ttft_ms: T, retries: 0}`. The primary's upstream model id is
`fault:stall_first_byte`, so the fake provider (tests/fakes/provider_server.py, run in this process on its own
thread) accepts the request and never sends a byte; the backup answers at once. Every request must therefore
wait T, give up on the primary, and be served by the backup: end-to-end latency should be T plus one quick
answer. Target: p99 <= T + 50 ms.

The fake records, on this process's `time.monotonic()` clock, when each request arrived and when the client
(tiergate) closed its connection. close - (arrival + T) says how promptly the abandoned upstream stream was
really closed; it slightly understates the delay, by the time the request took to reach the fake (tiergate
starts its TTFT clock before it connects). The breaker is configured so that it never opens (a window larger
than the run): an open breaker would skip the primary, and nothing would test the guardrail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.fakes, when run as a script

import grpc
import yaml

from benches.harness import (
    PYTHON,
    Samples,
    machine,
    percentile,
    report_head,
    run_server,
    table,
    timed_batch,
    write_result,
)
from tests.fakes.provider_server import FakeProvider, RecordedRequest
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

STALLED_MODEL = "fault:stall_first_byte"
BACKUP_MODEL = "backup-model"
GRPC_TIMEOUT_S = 10.0
TARGET_SLACK_MS = 50.0


def config(fake: FakeProvider, ttft_ms: float, breaker_window: int) -> dict[str, object]:
    return {
        "listen": {"grpc": "127.0.0.1:0", "http": None},
        "models": {
            "primary": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": STALLED_MODEL,
                "api_key": "k-p",
            },
            "backup": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": BACKUP_MODEL,
                "api_key": "k-b",
            },
        },
        "routes": {"default": {"chain": ["primary", "backup"], "ttft_ms": ttft_ms, "retries": 0}},
        "breaker": {"window": breaker_window, "min_calls": breaker_window},
    }


class Checker:
    """Calls Complete and checks every answer came from the backup after the primary's TTFT timeout."""

    def __init__(self, stub: pb_grpc.TiergateStub) -> None:
        self._stub = stub
        self._request = pb.CompleteRequest(
            task="default", messages=[pb.Message(role="user", content="Say hello.")], max_output_tokens=16
        )
        self.cancel_after_ms: list[float] = []  # the primary attempt's latency_ms, as tiergate recorded it
        self.backup_ms: list[float] = []  # the backup attempt's latency_ms
        self.outside_ms: list[
            float
        ] = []  # end-to-end minus both attempts: gRPC, tiergate's own work, queueing
        self.wrong: list[str] = []

    async def call(self, worker: int = 0) -> None:
        started = time.perf_counter()
        response = await self._stub.Complete(self._request, timeout=GRPC_TIMEOUT_S)
        e2e_ms = (time.perf_counter() - started) * 1000
        attempts = [(a.model, a.outcome) for a in response.decision.attempts]
        if response.decision.served_by != "backup" or attempts != [
            ("primary", "ttft_timeout"),
            ("backup", "ok"),
        ]:
            self.wrong.append(f"served_by={response.decision.served_by} attempts={attempts}")
            return
        primary, backup = response.decision.attempts
        self.cancel_after_ms.append(primary.latency_ms)
        self.backup_ms.append(backup.latency_ms)
        self.outside_ms.append(e2e_ms - primary.latency_ms - backup.latency_ms)

    def reset(self) -> None:
        self.cancel_after_ms.clear()
        self.backup_ms.clear()
        self.outside_ms.clear()
        self.wrong.clear()


def dist(values: list[float]) -> list[str]:
    if not values:
        return ["—"] * 4
    return [f"{percentile(values, q):.1f}" for q in (50, 90, 99)] + [f"{max(values):.1f}"]


async def run_level(
    fake: FakeProvider, address: str, concurrency: int, requests: int, warmup: int, stagger_s: float
) -> tuple[Samples, Checker, list[RecordedRequest]]:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        checker = Checker(pb_grpc.TiergateStub(channel))
        await timed_batch(checker.call, warmup, min(concurrency, warmup))
        checker.reset()
        await asyncio.sleep(0.2)  # let the warm-up's stalled connections close before counting
        first = len(fake.requests)
        samples = await timed_batch(checker.call, requests, concurrency, stagger_s=stagger_s)
    # Every stalled stream should be closed already; give stragglers a moment before calling them unclosed.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        stalled = [r for r in fake.requests[first:] if r.model == STALLED_MODEL]
        if all(r.client_closed_at is not None for r in stalled):
            break
        await asyncio.sleep(0.05)
    stalled = [r for r in fake.requests[first:] if r.model == STALLED_MODEL]
    return samples, checker, stalled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument("--requests-c1", type=int, default=100)
    parser.add_argument("--requests-c16", type=int, default=480)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="30 and 160 requests")
    parser.add_argument(
        "--nice", type=int, default=0, help="os.nice() increment for this process and tiergate (e.g. -10)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests_c1, args.requests_c16 = 30, 160
    if args.nice:
        os.nice(args.nice)  # inherited by the tiergate subprocess (a negative value needs root)
    t_ms = args.ttft_ms
    target_ms = t_ms + TARGET_SLACK_MS
    # (label, concurrency, requests, stagger): at 16, once all together (every worker stalls, times out and
    # falls back at the same moment: the worst burst) and once spread evenly over T (steady traffic).
    levels = [
        ("1", 1, args.requests_c1, 0.0),
        ("16, in step", 16, args.requests_c16, 0.0),
        ("16, staggered", 16, args.requests_c16, t_ms / 1000 / 16),
    ]
    window = min(1_000_000, 10 * sum(n for _, _, n, _ in levels) + 100)

    machine_lines = machine()
    results = []
    with FakeProvider(record=True) as fake, tempfile.TemporaryDirectory(prefix="tiergate-bench-") as tmp:
        cfg = config(fake, t_ms, window)
        path = Path(tmp) / "tiergate.yaml"
        path.write_text(yaml.safe_dump(cfg))
        argv_t = [
            PYTHON,
            "-m",
            "tiergate.cli",
            "serve",
            "--config",
            str(path),
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "off",
        ]
        with run_server("tiergate", argv_t, r"serving gRPC on (\S+)") as server:
            address = server.found.group(1)
            for label, concurrency, n, stagger_s in levels:
                print(f"concurrency {label}: {n} requests", file=sys.stderr, flush=True)
                outcome = asyncio.run(run_level(fake, address, concurrency, n, args.warmup, stagger_s))
                results.append((label, *outcome))

    lines = [
        *report_head(
            "bench_guardrail: TTFT guardrail with the primary stalled before its first byte", machine_lines
        ),
        "## Setup",
        "",
        "- upstream: tests/fakes/provider_server.py `FakeProvider`, in this process (its own "
        "thread and loop); "
        f"the primary's model id `{STALLED_MODEL}` stalls forever, the backup answers at once",
        "- tiergate: `tiergate serve` subprocess; client: grpc.aio, generated TiergateStub, deadline "
        f"{GRPC_TIMEOUT_S:g} s; each worker calls one after another. *16, in step*: the 16 workers start "
        "together, so all 16 stall, time out and fall back at the same moment (a burst every T, the worst "
        "case); *16, staggered*: worker i starts i·T/16 late (16 in flight, evenly spread)",
        "- priority: " + (f"os.nice({args.nice}) for this process and tiergate" if args.nice else "default"),
        "- config (base_urls point at the fake):",
        "",
        *(
            "      " + line
            for line in yaml.safe_dump({k: v for k, v in cfg.items() if k != "listen"}).splitlines()
        ),
        "",
        f"## End-to-end latency (T = {t_ms:g} ms, target p99 ≤ {target_ms:g} ms)",
        "",
    ]
    rows = []
    # A missed latency target is a result, reported in the table; failed calls, answers that did not come
    # from the backup after a TTFT timeout, or stalled streams left open are a broken guardrail: exit 1.
    failed = False
    for concurrency, samples, checker, _stalled in results:
        p99 = samples.pct_ms(99)
        failed |= bool(samples.errors or checker.wrong)
        rows.append(
            [
                str(concurrency),
                str(len(samples.latencies)),
                *dist([x * 1000 for x in samples.latencies]),
                f"{samples.throughput:.1f}",
                str(samples.errors + len(checker.wrong)),
                "met" if p99 <= target_ms else "**MISSED**",
            ]
        )
    lines += table(
        [
            "concurrency",
            "requests",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "req/s",
            "wrong or failed",
            "p99 target",
        ],
        rows,
    )
    lines += [
        "",
        "## Abandoning the stalled primary",
        "",
        "- *tiergate cancel - T*: the primary attempt's `latency_ms` in the returned Decision minus T — when "
        "the dispatcher gave up on it, late by event-loop delay.",
        "- *close - (arrival + T)*: when the fake saw the connection closed, minus the moment the "
        "TTFT deadline "
        "fell (arrival at the fake + T).",
        "- *backup*: the backup attempt's `latency_ms` (a whole answer from an instant upstream).",
        "- *outside the attempts*: end-to-end minus both attempts' `latency_ms`: the gRPC round "
        "trip, tiergate's "
        "own work before and after the attempts, and any queueing in tiergate, the client or the fake (which "
        "shares this process with the client).",
        "",
    ]
    rows = []
    for concurrency, _samples, checker, stalled in results:
        lateness = [
            (r.client_closed_at - (r.received_at + t_ms / 1000)) * 1000
            for r in stalled
            if r.client_closed_at is not None
        ]
        unclosed = sum(r.client_closed_at is None for r in stalled)
        failed |= unclosed > 0
        rows.append(
            [
                str(concurrency),
                "p50 / p99 / max: "
                + " / ".join(dist([x - t_ms for x in checker.cancel_after_ms])[i] for i in (0, 2, 3)),
                "p50 / p99 / max: " + " / ".join(dist(lateness)[i] for i in (0, 2, 3)),
                f"{len(stalled) - unclosed} of {len(stalled)}",
                "p50 / p99: " + " / ".join(dist(checker.backup_ms)[i] for i in (0, 2)),
                "p50 / p99: " + " / ".join(dist(checker.outside_ms)[i] for i in (0, 2)),
            ]
        )
    lines += table(
        [
            "concurrency",
            "tiergate cancel - T (ms)",
            "close - (arrival + T) (ms)",
            "stalled streams closed",
            "backup (ms)",
            "outside the attempts (ms)",
        ],
        rows,
    )
    for concurrency, samples, checker, _stalled in results:
        if samples.errors:
            lines.append(
                f"\nconcurrency {concurrency}: {samples.errors} failed calls, first: {samples.first_error}"
            )
        if checker.wrong:
            lines.append(
                f"\nconcurrency {concurrency}: {len(checker.wrong)} answers not as expected, first: "
                f"{checker.wrong[0]}"
            )
    write_result("bench_guardrail", lines)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
