"""`tiergate accuracy FILE`: how well the learned router labels a JSONL file of `{"text", "label"}` requests.

Loads the on-device embedding model (the embedded one, in its worker process), embeds the examples, then
classifies each labelled request one at a time, as a route would, and reports accuracy overall and on the
requests it was confident about, per-label recall, and the time per request (embed + vote).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tiergate.classify import LEVELS
from tiergate.config import ModelConfig
from tiergate.embeddings.nearest import Example, NearestExamples, load_examples, query_text
from tiergate.request import Message, Request


@dataclass(slots=True)
class Scores:
    total: int = 0
    correct: int = 0
    decided: int = 0  # at or above the confidence threshold
    decided_correct: int = 0
    by_label: dict[str, list[int]] = field(default_factory=dict)  # label -> [correct, total]
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, expected: str, got: str, confident: bool, ms: float) -> None:
        self.total += 1
        hit = got == expected
        self.correct += hit
        self.decided += confident
        self.decided_correct += hit and confident
        row = self.by_label.setdefault(expected, [0, 0])
        row[0] += hit
        row[1] += 1
        self.latencies_ms.append(ms)

    def lines(self) -> list[str]:
        ordered = sorted(self.latencies_ms)
        p50 = ordered[len(ordered) // 2] if ordered else 0.0
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
        out = [
            f"accuracy: {self.correct}/{self.total} = {self.correct / max(self.total, 1):.1%}",
            f"confident: {self.decided}/{self.total} = {self.decided / max(self.total, 1):.1%}, "
            f"accuracy on those {self.decided_correct / max(self.decided, 1):.1%}",
        ]
        for label in LEVELS:
            hit, n = self.by_label.get(label, [0, 0])
            out.append(f"  {label}: {hit}/{n} recalled")
        out.append(f"time per request: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        return out


async def measure(
    labelled: list[Example], examples: str, *, k: int, min_confidence: float, threads: int | None
) -> Scores:
    from tiergate.providers.onnx_embedding import OnnxEmbeddingProvider

    provider = await OnnxEmbeddingProvider.start(
        "accuracy", ModelConfig(provider="onnx", path="embedded", threads=threads)
    )
    try:
        nearest = await NearestExamples.build(provider, load_examples(examples), k)
        scores = Scores()
        for row in labelled:
            request = Request(task="", messages=[Message("user", row.text)])
            started = time.perf_counter()
            vector = (await provider.embed([query_text(request)], 0)).vectors[0]
            label, confidence = nearest.vote(vector)
            scores.add(row.label, label, confidence >= min_confidence, (time.perf_counter() - started) * 1000)
        return scores
    finally:
        await provider.aclose()
