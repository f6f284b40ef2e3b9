"""The response cache: what a hit costs next to a miss, through the in-process Router.

    .venv/bin/python benches/bench_cache.py [--requests 300]

The upstream is the fake provider on loopback (instant answers), so a miss measures tiergate's own path
plus one local HTTP exchange, and a hit tiergate's path with the cache lookup and no upstream. Three rows:
the cache off (the baseline), a miss (each request is new, so it is looked up, dispatched and stored), and a
hit (the same request again).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT))

from harness import machine, percentile, report_head, table, write_result  # noqa: E402

import tiergate  # noqa: E402
from tests.fakes.provider_server import FakeProvider  # noqa: E402
from tiergate.config import parse, resolve  # noqa: E402


def config(url: str, cache: bool) -> tiergate.Config:
    data: dict[str, object] = {
        "models": {"hosted": {"provider": "openai", "base_url": url, "model": "m", "api_key": "k"}},
        "routes": {"default": {"chain": ["hosted"]}},
        "telemetry": {"decision_log": False},
    }
    if cache:
        data["cache"] = {"ttl_s": 3600}
    return resolve(parse(data), {})


async def timed(router: tiergate.AsyncRouter, texts: list[str], expect: str) -> list[float]:
    out = []
    for text in texts:
        t0 = time.perf_counter()
        answer = await router.complete(text)
        out.append((time.perf_counter() - t0) * 1000)
        assert answer.decision.cache == expect, (answer.decision.cache, expect)
    return out


def row(name: str, ms: list[float]) -> list[str]:
    return [name, f"{percentile(ms, 50):.3f}", f"{percentile(ms, 99):.3f}", str(len(ms))]


async def main(requests: int) -> None:
    head = machine()
    with FakeProvider(record=False) as fake:
        async with tiergate.AsyncRouter(config(fake.url_openai, cache=False)) as router:
            await timed(router, [f"warm {i}" for i in range(20)], "")
            off = await timed(router, [f"off {i}" for i in range(requests)], "")
        async with tiergate.AsyncRouter(config(fake.url_openai, cache=True)) as router:
            await timed(router, [f"warm {i}" for i in range(20)], "miss")
            miss = await timed(router, [f"new {i}" for i in range(requests)], "miss")
            hit = await timed(router, [f"new {i}" for i in range(requests)], "hit")
    lines = report_head("bench_cache: a response cache hit next to a miss", head)
    lines += ["## Latency of `Router.complete` (ms)", ""]
    lines += table(
        ["what", "p50", "p99", "requests"],
        [row("cache off", off), row("cache on, miss (looked up, dispatched, stored)", miss), row("hit", hit)],
    )
    saved = percentile(miss, 50) - percentile(hit, 50)
    lines += ["", f"A hit saves {saved:.3f} ms at p50 against a miss, with an instant loopback upstream;"]
    lines += ["against a hosted model it saves the whole model call (hundreds of ms) and its cost."]
    write_result("bench_cache", lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    asyncio.run(main(parser.parse_args().requests))
