"""Traffic control, measured: the split of a 70/30 pool and of a 10% canary, and how soon a failing canary is
rolled back.

    .venv/bin/python benches/bench_traffic.py [--selections N] [--min-samples N]

1. Pool split: N first choices of `PoolSelector` over a 70/30 pool (equal latencies, closed breakers), and
   the same right after member A's breaker closed again (slow start), halfway through the ramp and after it.
2. Canary split: N distinct tenants through `CanaryController.arm` at 10%.
3. Rollback: a real Sidecar (in this process) over the loopback fake provider, a route at 10% canary whose
   candidate's upstream answers 503 to every call, requests from distinct tenants one after another: the
   requests (all, and canary-arm) and the wall time from the first request until the rollback.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import machine, report_head, table, write_result

from tests.fakes.provider_server import FakeProvider
from tiergate._native import CircuitBreaker, ManualClock
from tiergate.config import PoolConfig, RouteConfig, parse, resolve
from tiergate.model_stats import ModelStats
from tiergate.policy.canary import CANARY, CanaryController
from tiergate.policy.pools import PoolSelector
from tiergate.request import Message, Request
from tiergate.sidecar import Sidecar


def share(count: int, n: int, p: float) -> list[str]:
    sigma = math.sqrt(n * p * (1 - p))
    z = f"{(count - n * p) / sigma:+.2f}" if sigma else "-"
    return [f"{p:.1%}", f"{count / n:.2%}", z]


def pool_rows(n: int) -> list[list[str]]:
    clock = ManualClock()
    breakers = {
        m: CircuitBreaker(window=4, min_calls=2, open_ms=1000, half_open_calls=1, clock=clock) for m in "ab"
    }
    stats = {m: ModelStats() for m in "ab"}
    pools = {"p": PoolConfig(members={"a": 70, "b": 30}, slow_start_ms=60_000)}
    selector = PoolSelector(pools, breakers, stats, clock=lambda: clock.now_ms() / 1000)

    def first_a() -> int:
        return sum(selector.order("p", ["a", "b"])[0] == "a" for _ in range(n))

    rows = [["70/30, steady", *share(first_a(), n, 0.7)]]
    for _ in range(2):
        breakers["a"].try_acquire()
        breakers["a"].record(False, 1.0)
    selector.order("p", ["a", "b"])  # sees it open
    rows.append(["A's breaker open", *share(first_a(), n, 0.0)])
    clock.advance(1000)
    breakers["a"].try_acquire()
    breakers["a"].record(True, 1.0)  # closed again
    rows.append(["slow start: just closed", *share(first_a(), n, 3.5 / 33.5)])
    clock.advance(30_000)
    rows.append(["slow start: halfway", *share(first_a(), n, 35 / 65)])
    clock.advance(30_000)
    rows.append(["slow start: done", *share(first_a(), n, 0.7)])
    return rows


def canary_row(n: int) -> list[str]:
    controller = CanaryController(
        {"chat": RouteConfig(chain=["base"], canary={"model": "cand", "percent": 10})}
    )
    count = sum(controller.arm("chat", Request("chat", [], tenant=f"tenant-{i}")) == CANARY for i in range(n))
    return ["10% canary, sticky per tenant", *share(count, n, 0.1)]


async def rollback(min_samples: int) -> list[str]:
    with FakeProvider(record=False) as fake:
        hosted = {"provider": "openai", "base_url": fake.url_openai, "api_key": "k"}
        data = {
            "models": {"base": {**hosted, "model": "base"}, "cand": {**hosted, "model": "fault:status:503"}},
            "routes": {
                "chat": {
                    "chain": ["base"],
                    "retries": 0,
                    "canary": {"model": "cand", "percent": 10, "min_samples": min_samples},
                }
            },
            "breaker": {"failure_rate": 100, "window": 100_000, "min_calls": 100_000},
            "telemetry": {"decision_log": False},
        }
        sidecar = await Sidecar.start(resolve(parse(data), {}))
        try:
            started = time.perf_counter()
            total = canary = 0
            while sidecar.canaries.state("chat").percent > 0:
                request = Request("chat", [Message("user", "hi")], tenant=f"tenant-{total}")
                decision = (await sidecar.complete(request)).decision
                total += 1
                canary += decision.arm == CANARY
            elapsed = time.perf_counter() - started
        finally:
            await sidecar.aclose()
    return [str(min_samples), str(total), str(canary), f"{elapsed * 1000:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--selections", type=int, default=100_000)
    parser.add_argument("--min-samples", type=int, default=50)
    args = parser.parse_args()
    n = args.selections
    lines = [
        *report_head("Traffic control: pool and canary splits, canary rollback", machine()),
        f"## Splits ({n:,} choices each; z = (observed - expected) / binomial sigma)",
        "",
        *table(["case", "expected A / canary", "observed", "z"], [*pool_rows(n), canary_row(n)]),
        "",
        "## Rollback of a candidate whose every call fails (10% canary, requests one after another)",
        "",
        *table(
            ["min_samples", "requests until rollback", "of which canary", "ms until rollback"],
            [asyncio.run(rollback(args.min_samples))],
        ),
    ]
    write_result("bench_traffic", lines)


if __name__ == "__main__":
    main()
