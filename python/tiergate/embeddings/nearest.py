"""Classifying a request's complexity by its nearest labelled examples in embedding space (the learned
router; `routes.NAME.classify_examples`).

k-NN rather than centroids: the labels are broad (a "complex" request may be a proof or a system design), and
a class's mean vector sits between its clusters, while the nearest examples follow them. The `k` nearest
examples by cosine similarity (the on-device model's vectors are unit length) vote, each with its
similarity; the confidence is the winning label's share of the votes. Below `min_confidence` the request
goes on as if unclassified: the rules and the route's order decide.

The examples are embedded once, when the config loads, by the on-device embedding model the route names (on
the device only: a classified request's text never leaves it). `embedded` is the shipped set
(`data/complexity_examples.jsonl`, 40 requests per level); any JSONL file of `{"text", "label"}` works.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import orjson

from tiergate.classify import LEVELS
from tiergate.config import Config
from tiergate.embeddings.types import EmbeddingProvider
from tiergate.providers.base import ProviderError
from tiergate.request import Request

logger = logging.getLogger(__name__)

EMBEDDED = "embedded"
MAX_EXAMPLES = 10_000
MAX_QUERY_CHARS = 600  # the start of the request says enough, and stays within the model's 256 tokens
BATCH = 64


class ExamplesError(ValueError):
    """The labelled examples cannot be read or are not usable."""


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: str


def load_examples(source: str) -> list[Example]:
    """The examples of a JSONL file (or the shipped set); raises ExamplesError naming the bad line."""
    if source == EMBEDDED:
        raw = resources.files("tiergate").joinpath("data/complexity_examples.jsonl").read_text("utf-8")
        where = "the shipped examples"
    else:
        try:
            raw = Path(source).expanduser().read_text("utf-8")
        except OSError as exc:
            raise ExamplesError(f"{source}: cannot read: {exc.strerror}") from None
        where = source
    examples = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ExamplesError(f"{where}:{number}: not JSON") from None
        text, label = (row.get("text"), row.get("label")) if isinstance(row, dict) else (None, None)
        if not isinstance(text, str) or not text.strip() or label not in LEVELS:
            raise ExamplesError(f"{where}:{number}: needs a non-empty `text` and a `label` in {LEVELS}")
        examples.append(Example(text, str(label)))
        if len(examples) > MAX_EXAMPLES:
            raise ExamplesError(f"{where}: more than {MAX_EXAMPLES} examples")
    if not examples:
        raise ExamplesError(f"{where}: no examples")
    return examples


class NearestExamples:
    """The embedded examples of one route, ready to vote."""

    def __init__(self, labels: list[str], vectors: list[bytes], k: int) -> None:
        self._labels = labels
        self._vectors = [struct.unpack(f"<{len(v) // 4}f", v) for v in vectors]
        self._k = max(1, min(k, len(labels)))

    @classmethod
    async def build(cls, provider: EmbeddingProvider, examples: list[Example], k: int) -> NearestExamples:
        vectors: list[bytes] = []
        for start in range(0, len(examples), BATCH):
            batch = [e.text[:MAX_QUERY_CHARS] for e in examples[start : start + BATCH]]
            vectors += (await provider.embed(batch, 0)).vectors
        return cls([e.label for e in examples], vectors, k)

    def vote(self, vector: bytes) -> tuple[str, float]:
        """The winning label and its share of the k nearest examples' similarity."""
        query = struct.unpack(f"<{len(vector) // 4}f", vector)
        scores = sorted(
            (
                (sum(map(operator.mul, query, v)), label)
                for v, label in zip(self._vectors, self._labels, strict=True)
            ),
            reverse=True,
        )[: self._k]
        votes: dict[str, float] = {}
        for score, label in scores:
            votes[label] = votes.get(label, 0.0) + max(score, 0.0)
        total = sum(votes.values())
        label = max(votes, key=lambda name: votes[name])
        return label, (votes[label] / total if total > 0 else 0.0)


def query_text(request: Request) -> str:
    """What is embedded to classify a request: the start of its last user message (or of its prompt)."""
    users = [m.content for m in request.messages if m.role == "user"]
    return (users[-1] if users else request.prompt_text())[:MAX_QUERY_CHARS] or " "


async def classify_by_examples(
    provider: EmbeddingProvider,
    examples: NearestExamples,
    request: Request,
    *,
    min_confidence: float,
    budget_ms: float,
) -> tuple[str, str]:
    """(complexity or "", what `Decision.complexity_by` says)."""
    try:
        async with asyncio.timeout(budget_ms / 1000):
            embedded = await provider.embed([query_text(request)], 0)
    except (TimeoutError, ProviderError) as exc:
        why = "no answer in time" if isinstance(exc, TimeoutError) else exc.kind
        return "", f"embeddings ({why})"
    label, confidence = examples.vote(embedded.vectors[0])
    if confidence < min_confidence:
        return "", f"embeddings (confidence {confidence:.2f} below {min_confidence:g}: not used)"
    return label, "embeddings"


async def route_classifiers(config: Config, providers: Mapping[str, object]) -> dict[str, NearestExamples]:
    """Each route's labelled examples, embedded once (shared by routes with the same model and examples).

    Raises ExamplesError for an examples file that cannot be used. A model that cannot embed now (its worker
    is down) leaves the route without examples, said in its Decisions, rather than stopping the sidecar.
    """
    built: dict[tuple[str, str, int], NearestExamples] = {}
    out: dict[str, NearestExamples] = {}
    for name, route in config.routes.items():
        spec = route.classify_examples
        if spec is None:
            continue
        key = (spec.model, spec.examples, spec.k)
        if key not in built:
            provider = providers[spec.model]
            assert isinstance(provider, EmbeddingProvider)
            try:
                built[key] = await NearestExamples.build(provider, load_examples(spec.examples), spec.k)
            except ProviderError as exc:
                logger.warning("route %r: cannot embed its examples (%s); it classifies nothing", name, exc)
                continue
        out[name] = built[key]
    return out
