"""What the local provider costs over calling llama-cpp-python directly, in one process.

The same prompt is generated through `LlamaCppProvider.stream` (the model in its supervised worker process:
a socket hop per frame, the engine thread, incremental UTF-8 and stop-sequence handling) and through
`Llama.create_completion(stream=True)` on a `llama_cpp.Llama` loaded in this process with the same parameters,
alternating which goes first. Both decode greedily with
the same repetition penalty, so they must produce the same text; the benchmark checks that (same text and
finish reason: the same tokens were generated, so the same work was done). Each repeat uses a fresh prompt,
so neither side reuses a cached prompt prefix the other lacks.

    TTFT     call -> first non-empty text chunk, as the consumer sees it
    tok/s    (tokens - 1) / (first chunk -> last chunk): decode speed after the first token

On a busy machine TTFT swings by tens of ms from run to run, so the bench also times the one step the worker
process adds to every message: a round trip over its socket (a `count` frame and its answer, which the
worker serves on its reader thread without touching the model).

Run: .venv/bin/python benches/bench_local.py [--repeats 10] [--tokens 128] [--model PATH]
Writes benches/results/bench_local.md and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import llama_cpp
from llama_cpp.llama_types import CreateCompletionStreamResponse

from tiergate import embedded_model
from tiergate.config import ModelConfig
from tiergate.local.worker.prompt import InstructionFormat
from tiergate.providers.llama_cpp import LlamaCppProvider
from tiergate.request import Message, Request

RESULTS = Path(__file__).parent / "results" / "bench_local.md"
N_CTX = 2048
MIN_TOKENS = 32
TOPICS = ["Rome", "Greece", "Egypt", "China", "the printing press", "Venice", "the steam engine", "Japan"]


@dataclass(slots=True)
class Run:
    ttft_ms: float
    decode_s: float  # first -> last text chunk
    text: str
    finish: str | None
    tokens: int = 0  # the provider reports it; the direct side is given it once the texts match

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s


def _question(i: int) -> str:
    # Long greedy answers; the number keeps every prompt distinct, so no run reuses another's cached prefix.
    return f"Essay {i}: write a long essay about the history of {TOPICS[i % len(TOPICS)]}."


async def _provider_run(provider: LlamaCppProvider, question: str, tokens: int) -> Run:
    request = Request(task="bench", messages=[Message("user", question)], max_output_tokens=tokens)
    parts: list[str] = []
    start = time.perf_counter()
    first = last = 0.0
    finish = None
    produced = 0
    async for chunk in provider.stream(request):
        if chunk.text:
            last = time.perf_counter()
            first = first or last
            parts.append(chunk.text)
        if chunk.usage is not None:
            finish = chunk.finish_reason
            produced = chunk.usage.output_tokens
    return Run((first - start) * 1000, last - first, "".join(parts), finish, produced)


async def _round_trips(provider: LlamaCppProvider, n: int) -> list[float]:
    """Socket round trips to the worker (ms): a `count` frame of one word and its answer."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await provider.count_tokens("hi")
        times.append((time.perf_counter() - start) * 1000)
    return times


def _direct_run(llm: llama_cpp.Llama, question: str, tokens: int, penalty: float) -> Run:
    prompt = InstructionFormat().render([Message("user", question)])
    parts: list[str] = []
    start = time.perf_counter()
    first = last = 0.0
    finish = None
    stream = cast(
        "Iterator[CreateCompletionStreamResponse]",
        llm.create_completion(
            prompt.text,
            max_tokens=tokens,
            temperature=0.0,
            repeat_penalty=penalty,
            stop=list(prompt.stops),
            stream=True,
        ),
    )
    for chunk in stream:
        choice = chunk["choices"][0]
        if choice["text"]:
            last = time.perf_counter()
            first = first or last
            parts.append(choice["text"])
        finish = choice["finish_reason"] or finish
    return Run((first - start) * 1000, last - first, "".join(parts), finish)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--model", default="embedded", help="a GGUF path, or `embedded` (default)")
    args = parser.parse_args()

    threads = os.cpu_count() or 1
    config = ModelConfig(provider="llama_cpp", path=args.model, context_window=N_CTX, threads=threads)
    provider = await LlamaCppProvider.start("bench", config)
    path = embedded_model.ensure() if args.model == "embedded" else Path(args.model)
    # The same engine settings as the worker (swa_full=False: see local/worker/model.py).
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=N_CTX,
        n_threads=threads,
        n_threads_batch=threads,
        swa_full=False,
        verbose=False,
    )
    penalty = InstructionFormat.repeat_penalty
    load_before = os.getloadavg()[0]
    try:
        # warm-up: page the weights in and settle the thread pools on both sides
        await _provider_run(provider, _question(1000), 16)
        _direct_run(llm, _question(1001), 16, penalty)
        provider_runs: list[Run] = []
        direct_runs: list[Run] = []
        for i in range(args.repeats):
            question = _question(i)
            if i % 2 == 0:
                provider_runs.append(await _provider_run(provider, question, args.tokens))
                direct_runs.append(_direct_run(llm, question, args.tokens, penalty))
            else:
                direct_runs.append(_direct_run(llm, question, args.tokens, penalty))
                provider_runs.append(await _provider_run(provider, question, args.tokens))
            ours, theirs = provider_runs[-1], direct_runs[-1]
            # .strip(): the provider trims the whitespace llama-cpp-python leaves before a stop sequence
            if (ours.text, ours.finish) != (theirs.text.strip(), theirs.finish):
                raise SystemExit(
                    f"repeat {i}: the two sides generated different text; the comparison is void"
                )
            if ours.tokens < MIN_TOKENS:
                raise SystemExit(f"repeat {i}: only {ours.tokens} tokens; too short to time decoding")
            theirs.tokens = ours.tokens  # same greedy text and finish: the same tokens were generated
        round_trips = await _round_trips(provider, 200)
    finally:
        await provider.aclose()
        llm.close()
    load_after = os.getloadavg()[0]
    report = _report(args, threads, provider_runs, direct_runs, round_trips, (load_before, load_after))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(report)


def _report(
    args: argparse.Namespace,
    threads: int,
    provider_runs: list[Run],
    direct_runs: list[Run],
    round_trips: list[float],
    load: tuple[float, float],
) -> str:
    med = statistics.median
    ratios = [p.tokens_per_s / d.tokens_per_s for p, d in zip(provider_runs, direct_runs, strict=True)]
    added = [p.ttft_ms - d.ttft_ms for p, d in zip(provider_runs, direct_runs, strict=True)]
    ratio, ttft_added = med(ratios), med(added)
    median_tokens = med(p.tokens for p in provider_runs)
    # Load on the machine only ever adds time, so each side's best run is the least disturbed estimate of its
    # fixed cost; with a busy machine the paired medians above can swing by tens of ms.
    best_direct = min(d.ttft_ms for d in direct_runs)
    best_provider = min(p.ttft_ms for p in provider_runs)
    trips = sorted(round_trips)
    p99 = trips[int(len(trips) * 0.99) - 1]
    rows = "\n".join(
        f"| {i} | {d.tokens_per_s:.1f} | {p.tokens_per_s:.1f} | {r:.3f} | {d.ttft_ms:.1f} | {p.ttft_ms:.1f} "
        f"| {a:+.2f} |"
        for i, (p, d, r, a) in enumerate(zip(provider_runs, direct_runs, ratios, added, strict=True))
    )
    verdict_rate = "meets" if ratio >= 0.95 else "MISSES"
    verdict_ttft = "meets" if ttft_added <= 5.0 else "MISSES"
    return f"""# Local provider overhead: the worker process vs llama-cpp-python in one process

Command: `.venv/bin/python benches/bench_local.py --repeats {args.repeats} --tokens {args.tokens}`

| | |
|---|---|
| date | {datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")} |
| CPU | {_cpu_model()} |
| cores | {os.cpu_count()} (llama.cpp threads: {threads}) |
| Python | {platform.python_version()} ({sys.implementation.name}) |
| llama-cpp-python | {llama_cpp.__version__} |
| model | {args.model}, n_ctx {N_CTX}, greedy, repeat penalty {InstructionFormat.repeat_penalty} |
| tokens per run | at most {args.tokens}, median {median_tokens:.0f}; same text both sides |
| load average (1 min) before / after | {load[0]:.2f} / {load[1]:.2f} |

## Result (medians of per-repeat pairs)

| metric | median | target | |
|---|---|---|---|
| tokens/s ratio (provider / direct) | {ratio:.3f} | >= 0.95 | {verdict_rate} |
| TTFT added by the provider | {ttft_added:+.2f} ms | <= 5 ms | {verdict_ttft} |
| TTFT, best run of each side | direct {best_direct:.1f} ms, provider {best_provider:.1f} ms \
(added {best_provider - best_direct:+.2f} ms) | | |

What the worker process adds to every message, timed apart from generation (insensitive to load):

| step | median ms | p99 ms | max ms |
|---|---|---|---|
| socket round trip to the worker and back ({len(trips)} `count` frames) | {med(trips):.3f} | {p99:.3f} \
| {trips[-1]:.3f} |

## Per repeat (order alternates: even repeats run the provider first)

| repeat | direct tok/s | provider tok/s | ratio | direct TTFT ms | provider TTFT ms | TTFT added ms |
|---|---|---|---|---|---|---|
{rows}

The provider samples with its own loop (llama.cpp sampler chain over `Llama.eval`), not `create_completion`,
whose stream re-detokenizes all previous tokens at every step; so a ratio above 1 is expected to grow with the
answer's length. The provider's TTFT includes the hop to the worker process and back to the event loop.
"""


if __name__ == "__main__":
    asyncio.run(main())
