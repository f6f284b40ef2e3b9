"""The response cache: what a hit costs next to a miss, through the in-process Router.

    .venv/bin/python benches/bench_cache.py [--requests 300]

The upstream is the fake provider on loopback (instant answers), so a miss measures tiergate's own path
plus one local HTTP exchange, and a hit tiergate's path with the cache lookup and no upstream. Three rows:
the cache off (the baseline), a miss (each request is new, so it is looked up, dispatched and stored), and a
hit (the same request again).

Then semantic matching (`cache.semantic`, the embedded all-MiniLM-L6-v2 in its worker process): an exact
hit, a semantic hit (a paraphrase: "How can I ..." after "How do I ..."), and a miss (looked up exactly,
embedded, compared, dispatched, stored). Each question has a tenant of its own, so its scope holds one entry;
the scan of a full scope is measured apart (`nearest_vector` over 1,000 and 10,000 vectors), as is embedding
one question.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT))

from harness import machine, percentile, report_head, table, write_result  # noqa: E402

import tiergate  # noqa: E402
from tests.fakes.provider_server import FakeProvider  # noqa: E402
from tiergate._native import nearest_vector  # noqa: E402
from tiergate.config import ModelConfig, parse, resolve  # noqa: E402
from tiergate.providers.onnx_embedding import OnnxEmbeddingProvider  # noqa: E402

# "How do I X?" and "How can I X?" score 0.98-1.00 with all-MiniLM-L6-v2.
TASKS = [
    "reset my password",
    "cancel my subscription",
    "change my email address",
    "export my data to CSV",
    "delete my account",
    "update my billing address",
    "turn on two-factor authentication",
    "invite a colleague to my team",
    "download last month's invoice",
    "change the language of the app",
]


def config(url: str, cache: bool, semantic: bool = False) -> tiergate.Config:
    data: dict[str, object] = {
        "models": {"hosted": {"provider": "openai", "base_url": url, "model": "m", "api_key": "k"}},
        "routes": {"default": {"chain": ["hosted"]}},
        "telemetry": {"decision_log": False},
    }
    if cache:
        data["cache"] = {"ttl_s": 3600}
    if semantic:
        data["models"] = {**data["models"], "local-embed": {"provider": "onnx", "path": "embedded"}}  # type: ignore[dict-item]
        data["cache"] = {"ttl_s": 3600, "semantic": {"model": "local-embed", "timeout_ms": 5_000}}
    return resolve(parse(data), {})


async def timed(
    router: tiergate.AsyncRouter,
    texts: list[str],
    expect: str,
    tenants: list[str] | None = None,
    match: str = "",
) -> list[float]:
    out = []
    for i, text in enumerate(texts):
        tenant = tenants[i] if tenants is not None else ""
        t0 = time.perf_counter()
        answer = await router.complete(text, tenant=tenant)
        out.append((time.perf_counter() - t0) * 1000)
        got = (answer.decision.cache, answer.decision.cache_match)
        assert got == (expect, match), (got, expect, match)
    return out


async def semantic_rows(url: str, requests: int) -> list[list[str]]:
    tenants = [f"tenant-{i}" for i in range(requests)]
    asked = [f"How do I {TASKS[i % len(TASKS)]}?" for i in range(requests)]
    paraphrased = [f"How can I {TASKS[i % len(TASKS)]}?" for i in range(requests)]
    async with tiergate.AsyncRouter(config(url, cache=True, semantic=True)) as router:
        warm = [f"warm-{i}" for i in range(20)]
        await timed(router, asked[:20], "miss", warm)
        miss = await timed(router, asked, "miss", tenants)
        exact = await timed(router, asked, "hit", tenants, "exact")
        semantic = await timed(router, paraphrased, "hit", tenants, "semantic")
    return [
        row("miss (looked up, embedded, compared, dispatched, stored)", miss),
        row("exact hit", exact),
        row("semantic hit (a paraphrase)", semantic),
    ]


async def part_rows(requests: int) -> list[list[str]]:
    model = ModelConfig(provider="onnx", path="embedded")
    embedder = await OnnxEmbeddingProvider.start("local-embed", model)
    try:
        embed_ms = []
        for i in range(requests):
            t0 = time.perf_counter()
            await embedder.embed([f"How can I {TASKS[i % len(TASKS)]}?"], 0)
            embed_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        await embedder.aclose()
    rows = [row("embed one question (worker round trip)", embed_ms)]
    rng = random.Random(18)
    query = struct.pack("<384f", *(rng.gauss(0, 1) for _ in range(384)))
    for count in (1_000, 10_000):
        block = struct.pack(f"<{384 * count}f", *(rng.gauss(0, 1) for _ in range(384 * count)))
        scan_ms = []
        for _ in range(requests):
            t0 = time.perf_counter()
            nearest_vector(query, block)
            scan_ms.append((time.perf_counter() - t0) * 1000)
        rows.append(row(f"scan {count:,} vectors of 384 (`nearest_vector`)", scan_ms))
    return rows


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
            hit = await timed(router, [f"new {i}" for i in range(requests)], "hit", match="exact")
        semantic = await semantic_rows(fake.url_openai, requests)
    parts = await part_rows(requests)
    lines = report_head("bench_cache: a response cache hit next to a miss", head)
    lines += ["## Latency of `Router.complete` (ms)", ""]
    lines += table(
        ["what", "p50", "p99", "requests"],
        [row("cache off", off), row("cache on, miss (looked up, dispatched, stored)", miss), row("hit", hit)],
    )
    saved = percentile(miss, 50) - percentile(hit, 50)
    lines += ["", f"A hit saves {saved:.3f} ms at p50 against a miss, with an instant loopback upstream;"]
    lines += ["against a hosted model it saves the whole model call (hundreds of ms) and its cost."]
    lines += ["", "## Semantic matching: latency of `Router.complete` (ms)", ""]
    lines += table(["what", "p50", "p99", "requests"], semantic)
    lines += ["", "## Semantic matching: its parts (ms)", ""]
    lines += table(["what", "p50", "p99", "runs"], parts)
    write_result("bench_cache", lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    asyncio.run(main(parser.parse_args().requests))
