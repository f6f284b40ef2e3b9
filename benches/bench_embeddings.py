"""The on-device embedding model (all-MiniLM-L6-v2, int8 ONNX on onnxruntime) in its worker process.

    .venv/bin/python benches/bench_embeddings.py [--rounds 40] [--threads 2]

Starts the embedding provider as the sidecar does (a supervised worker process, kind `embedding`) and times
`embed` from the sidecar's side, socket round trip included: one short text, one 242-token text, batches of
8 and 32 texts of ~30 tokens. For comparison, the same 242-token text through the same `Embedder` loaded in
this process (no worker, no socket). Memory: the worker's VmRSS and peak after load and after the traffic, and
what starting the provider added to this (the sidecar's) process. Agreement: cosine of each vector with the
fp32 reference (a numpy forward pass of the upstream fp32 weights, `tests/embedding_reference.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT))

from harness import machine, memory_mb, percentile, report_head, table, write_result  # noqa: E402

from tests.embedding_reference import ReferenceModel  # noqa: E402
from tiergate.config import ModelConfig  # noqa: E402
from tiergate.embeddings import model_files  # noqa: E402
from tiergate.local.worker.embedder import Embedder  # noqa: E402
from tiergate.providers.onnx_embedding import OnnxEmbeddingProvider  # noqa: E402

SHORT = "How do I reset my password?"
SENTENCES = [
    "The quarterly report shows revenue grew by twelve percent while operating costs stayed flat.",
    "Please summarise the attached contract and list every clause about termination and renewal.",
    "Our on-call engineer restarted the database after the replication lag exceeded five minutes.",
    "Write a short poem about autumn leaves falling on a quiet river in the early morning light.",
    "Translate the following customer complaint into French and keep the tone polite but firm.",
    "Which of these three laptops has the best battery life for travelling on long-haul flights?",
    "The patient reported mild headaches for two weeks, improving with rest and hydration.",
    "Explain the difference between a mutex and a semaphore with an example in Rust or C.",
]


def long_text(tokens: int, embedder: Embedder) -> str:
    words: list[str] = []
    while embedder.count_tokens(" ".join(words)) < tokens:
        words.append(SENTENCES[len(words) % len(SENTENCES)].split()[len(words) % 10])
    return " ".join(words)


def vector(raw: bytes) -> np.ndarray:
    return np.array(struct.unpack(f"<{len(raw) // 4}f", raw), dtype=np.float32)


async def timed(provider: OnnxEmbeddingProvider, texts: list[str], rounds: int) -> list[float]:
    await provider.embed(texts, 0)  # warm
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await provider.embed(texts, 0)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def row(name: str, texts: int, tokens: str, ms: list[float]) -> list[str]:
    return [name, str(texts), tokens, f"{percentile(ms, 50):.1f}", f"{percentile(ms, 99):.1f}", str(len(ms))]


async def main(rounds: int, threads: int) -> None:
    head = machine()
    files = model_files.embedded()
    local = Embedder.load(files.model, files.tokenizer, threads=threads, max_tokens=256)
    text_242 = long_text(242, local)
    assert local.count_tokens(text_242) in (242, 243), local.count_tokens(text_242)
    before, _ = memory_mb(os.getpid())
    provider = await OnnxEmbeddingProvider.start(
        "local-embed", ModelConfig(provider="onnx", path="embedded", threads=threads)
    )
    try:
        after_start, _ = memory_mb(os.getpid())
        worker = provider.live_state().worker_pid
        worker_rss_load, _ = memory_mb(worker)
        batch8 = SENTENCES
        batch32 = [f"{s} ({i})" for i, s in enumerate(SENTENCES * 4)]
        rows = [
            row("1 short text", 1, str(local.count_tokens(SHORT)), await timed(provider, [SHORT], rounds)),
            row("1 text of 242 tokens", 1, "242", await timed(provider, [text_242], rounds)),
            row("batch of 8", 8, "~20 each", await timed(provider, batch8, rounds)),
            row("batch of 32", 32, "~22 each", await timed(provider, batch32, max(rounds // 2, 5))),
        ]
        direct = []
        local.embed([text_242])
        for _ in range(rounds):
            t0 = time.perf_counter()
            local.embed([text_242])
            direct.append((time.perf_counter() - t0) * 1000)
        rows.append(row("242 tokens, in-process Embedder (no worker)", 1, "242", direct))
        worker_rss, worker_peak = memory_mb(worker)
        texts = [SHORT, text_242, *SENTENCES]
        got = (await provider.embed(texts, 0)).vectors
    finally:
        await provider.aclose()
    assert files.fp32 is not None
    reference = ReferenceModel(files.fp32, files.tokenizer)
    cosines = [float(vector(raw) @ reference.embed(t)) for t, raw in zip(texts, got, strict=True)]
    lines = report_head(
        "bench_embeddings: the on-device embedding model in its worker process",
        head,
        f"- load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- onnxruntime threads: {threads}",
    )
    lines += ["## Latency of `embed` from the sidecar's side (ms)", ""]
    lines += table(["what", "texts", "tokens", "p50", "p99", "runs"], rows)
    lines += ["", "## Memory (MiB)", ""]
    lines += table(
        ["what", "MiB"],
        [
            ["embedding worker VmRSS after load", f"{worker_rss_load:.0f}"],
            ["embedding worker VmRSS after the traffic", f"{worker_rss:.0f}"],
            ["embedding worker peak (VmHWM)", f"{worker_peak:.0f}"],
            ["added to the sidecar's process by starting the provider", f"{after_start - before:.1f}"],
        ],
    )
    lines += ["", "## Agreement with the fp32 model (cosine, unit vectors)", ""]
    lines += table(
        ["texts", "min", "mean"],
        [[str(len(cosines)), f"{min(cosines):.5f}", f"{sum(cosines) / len(cosines):.5f}"]],
    )
    lines += [
        "",
        "## Against the targets",
        "",
        f"- RSS added by the embedding model (its worker, peak): {worker_peak:.0f} MiB (target <= 150: "
        f"**{'met' if worker_peak <= 150 else 'missed'}**)",
        f"- cosine vs fp32: min {min(cosines):.4f} "
        f"(target >= 0.99: **{'met' if min(cosines) >= 0.99 else 'missed'}**)",
        "",
        "The machine is shared (see the load average): latencies are upper bounds of a quiet machine's.",
    ]
    write_result("bench_embeddings", lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.threads))
