"""The learned router's pieces: reading labelled examples, and the k-nearest vote (table-driven)."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from tiergate.embeddings.nearest import EMBEDDED, ExamplesError, NearestExamples, load_examples


def unit(angle_deg: float) -> bytes:
    a = math.radians(angle_deg)
    return struct.pack("<2f", math.cos(a), math.sin(a))


def test_the_shipped_examples_cover_every_level() -> None:
    examples = load_examples(EMBEDDED)
    assert {e.label for e in examples} == {"trivial", "moderate", "complex"}
    assert len(examples) >= 120


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", ":1: not JSON"),
        ('{"text": "hi", "label": "easy"}\n', ":1: needs a non-empty `text` and a `label`"),
        ('{"text": "ok", "label": "trivial"}\n{"text": "", "label": "trivial"}\n', ":2: needs"),
        ("\n", "no examples"),
    ],
)
def test_bad_example_files_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_text(content)
    with pytest.raises(ExamplesError, match=message):
        load_examples(str(path))


@pytest.mark.parametrize(
    ("query", "k", "label", "confidence"),
    [
        (5, 1, "trivial", 1.0),  # nearest to the trivial cluster at 0-10 degrees
        (85, 3, "complex", 1.0),
        (20, 6, "trivial", 0.70),  # all six vote, each with its similarity
    ],
)
def test_the_nearest_examples_vote(query: float, k: int, label: str, confidence: float) -> None:
    angles = [0, 5, 10, 80, 85, 90]
    labels = ["trivial"] * 3 + ["complex"] * 3
    nearest = NearestExamples(labels, [unit(a) for a in angles], k)
    got, share = nearest.vote(unit(query))
    assert got == label and share == pytest.approx(confidence, abs=0.02)
