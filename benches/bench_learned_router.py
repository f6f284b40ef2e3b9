"""The learned router (nearest labelled examples in embedding space) next to the 270M-model classifier.

    .venv/bin/python benches/bench_learned_router.py [--limit N] [--model-limit N]

Both classify the 306 labelled requests of `benches/data/complexity_eval.jsonl` (written for this purpose
from templates; none of them is among the shipped examples) one at a time, as a route would: the learned
router embeds the request with the on-device all-MiniLM-L6-v2 (its worker process) and lets the 7 nearest of
the 120 shipped examples vote; the model classifier asks the embedded Gemma 3 270M (`classify_with`) under a
grammar that allows only the three levels, with a generous time budget so that its accuracy, not its speed,
is what is measured. Reports accuracy, how often each was confident enough to decide, per-level recall and
time per request. `--model-limit N` gives the (slow) model classifier only the first N requests, which are
in random label order: on a busy shared machine it takes seconds per request.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))

from harness import machine, percentile, report_head, table, write_result  # noqa: E402

from tiergate.classify import LEVELS, classify  # noqa: E402
from tiergate.config import ModelConfig  # noqa: E402
from tiergate.embeddings.accuracy import Scores, measure  # noqa: E402
from tiergate.embeddings.nearest import load_examples  # noqa: E402
from tiergate.providers.llama_cpp import LlamaCppProvider  # noqa: E402
from tiergate.request import Message, Request  # noqa: E402

EVAL = ROOT / "benches" / "data" / "complexity_eval.jsonl"
MIN_CONFIDENCE = 0.5


async def model_scores(labelled: list, threads: int) -> Scores:  # type: ignore[type-arg]
    provider = await LlamaCppProvider.start(
        "local", ModelConfig(provider="llama_cpp", path="embedded", threads=threads)
    )
    scores = Scores()
    try:
        for row in labelled:
            started = time.perf_counter()
            label = await classify(provider, Request(task="", messages=[Message("user", row.text)]), 30_000)
            scores.add(row.label, label, bool(label), (time.perf_counter() - started) * 1000)
    finally:
        await provider.aclose()
    return scores


def row(name: str, s: Scores) -> list[str]:
    recall = [f"{s.by_label.get(level, [0, 0])[0]}/{s.by_label.get(level, [0, 0])[1]}" for level in LEVELS]
    return [
        name,
        f"{s.correct / s.total:.1%}",
        f"{s.decided / s.total:.1%}",
        f"{s.decided_correct / max(s.decided, 1):.1%}",
        *recall,
        f"{percentile(s.latencies_ms, 50):.1f}",
        f"{percentile(s.latencies_ms, 99):.1f}",
    ]


async def main(limit: int, model_limit: int, threads: int) -> None:
    head = machine()
    labelled = load_examples(str(EVAL))[: limit or None]
    learned = await measure(labelled, "embedded", k=7, min_confidence=MIN_CONFIDENCE, threads=threads)
    model = await model_scores(labelled[: model_limit or None], threads)
    lines = report_head("bench_learned_router: nearest labelled examples vs the 270M-model classifier", head)
    lines += [f"{len(labelled)} labelled requests ({EVAL.relative_to(ROOT)}).", ""]
    header = ["classifier", "accuracy", "decided", "accuracy when decided", "trivial", "moderate", "complex"]
    rows = [
        row(f"embeddings, k=7, confidence >= {MIN_CONFIDENCE} ({learned.total} requests)", learned),
        row(f"gemma 3 270M, classify_with ({model.total} requests)", model),
    ]
    lines += table([*header, "p50 ms", "p99 ms"], rows)
    lines += [
        "",
        "accuracy: the label with the most votes (embeddings) or the model's answer, right or wrong, over",
        "every request; decided: how often the classifier's answer would be used (embeddings: confidence at",
        "or above the threshold; the model: any valid level); level columns: recall (right / labelled).",
    ]
    write_result("bench_learned_router", lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N labelled requests")
    parser.add_argument("--model-limit", type=int, default=0, help="the model classifier on the first N only")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.limit, args.model_limit, args.threads))
